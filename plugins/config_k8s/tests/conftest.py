"""Fixtures: a source maker and a running watcher."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from fogwire_config_k8s.source import MountedFileSource
from k8slib import FAST, SourceMaker, Watch

from fogwire.sources import SourceContext


@pytest.fixture
def make_source() -> SourceMaker:
    """Build a source for ``path`` with quick test options (overridable)."""

    def make(path: Path, environ: dict[str, str] | None = None, **options: Any) -> MountedFileSource:
        opts = {**FAST, "path": str(path), **options}
        return MountedFileSource(SourceContext(path.parent, path.parent, opts, environ or {}))

    return make


@pytest.fixture
async def watching() -> AsyncIterator[Callable[[MountedFileSource], Any]]:
    """Start watches on sources; all stopped at teardown."""
    started: list[Watch] = []

    async def start(source: MountedFileSource) -> Watch:
        watch = Watch(source)
        await watch.start()
        started.append(watch)
        return watch

    yield start
    for watch in started:
        await watch.stop()
