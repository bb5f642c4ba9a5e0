"""Helpers shared by the pot tests (a uniquely named module: every plugin's tests share one session)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from fogwire_config_pot.source import LocalApiSource

IDENTITY = "router-ms-uuid"

FAST = {
    "backoff_initial": 0.02,
    "backoff_max": 0.1,
    "retry_delay": 0.01,
    "startup_timeout": 2,
    "request_timeout": 2,
    "handshake_timeout": 2,
    "min_interval": 0,
}
"""Options that keep retries and backoff in the tens of milliseconds."""

SourceMaker = Callable[..., LocalApiSource]


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` the way a rotating writer does: a temporary file renamed over it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
