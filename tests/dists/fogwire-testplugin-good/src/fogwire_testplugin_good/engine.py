"""An engine class that loads and constructs but runs nothing: for plugin-loading tests only."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from pathlib import Path

from fogwire.engine import (
    Engine,
    EngineEvent,
    LoadResult,
    LogLine,
    PruneResult,
    RegistryAuth,
    WorkloadInfo,
    WorkloadSpec,
)


class TestEngine(Engine):
    """Subclasses :class:`fogwire.engine.Engine`; every operation raises ``NotImplementedError``."""

    name = "testengine"

    async def pull(self, reference: str, auth: RegistryAuth | None = None) -> str | None:
        """Not implemented."""
        raise NotImplementedError

    async def image_digest(self, reference: str) -> str | None:
        """Not implemented."""
        raise NotImplementedError

    async def load_image_archive(self, path: Path) -> LoadResult:
        """Not implemented."""
        raise NotImplementedError

    async def create(self, spec: WorkloadSpec) -> WorkloadInfo:
        """Not implemented."""
        raise NotImplementedError

    async def start_workload(self, name: str) -> None:
        """Not implemented."""
        raise NotImplementedError

    async def stop(self, name: str, timeout_s: float = 10.0) -> None:
        """Not implemented."""
        raise NotImplementedError

    async def remove(self, name: str) -> None:
        """Not implemented."""
        raise NotImplementedError

    async def inspect(self, name: str) -> WorkloadInfo | None:
        """Not implemented."""
        raise NotImplementedError

    async def list_managed(self) -> list[WorkloadInfo]:
        """Not implemented."""
        raise NotImplementedError

    def logs(self, name: str, *, tail: int | None = None, follow: bool = False) -> AsyncIterator[LogLine]:
        """Not implemented."""
        raise NotImplementedError

    def events(self) -> AsyncIterator[EngineEvent]:
        """Not implemented."""
        raise NotImplementedError

    async def prune_images(self, keep: Collection[str] = ()) -> PruneResult:
        """Not implemented."""
        raise NotImplementedError
