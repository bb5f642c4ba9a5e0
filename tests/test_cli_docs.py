"""docs/cli.md's reference part is what the parsers say (regenerate with ``make docs``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_cli_reference_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "cli_docs.py"), "--check"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_every_command_is_in_the_reference() -> None:
    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    for name in ("plugins", "validate", "daemon", "apply", "plan", "status", "logs", "delete", "router", "bundle"):
        assert f"### `fogwire {name}`" in text, name
