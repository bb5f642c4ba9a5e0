"""The engine class of ``fogwire-kind-name``; the only module that imports the SDK.

Every method is a coroutine; wrap each blocking SDK call in ``asyncio.to_thread``.
Only workloads carrying ``self.managed_labels`` are ever listed, inspected or removed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from pathlib import Path

from fogwire.engine import (
    Engine,
    EngineContext,
    EngineEvent,
    LoadResult,
    LogLine,
    PruneResult,
    RegistryAuth,
    WorkloadInfo,
    WorkloadSpec,
)

# import acme_sdk  # the SDK: imported here, never in plugin.py


class NameEngine(Engine):
    """Drives <what> for fogwire. Replace each ``NotImplementedError`` with the SDK calls."""

    name = "name"

    def __init__(self, context: EngineContext) -> None:
        super().__init__(context)
        self.url = context.url  # containerEngineUrl; None means the SDK's default

    async def pull(self, reference: str, auth: RegistryAuth | None = None) -> str | None:
        """Pull ``reference`` with ``auth``; return its digest."""
        raise NotImplementedError

    async def image_digest(self, reference: str) -> str | None:
        """The digest of a local image, or ``None`` if it is absent."""
        raise NotImplementedError

    async def load_image_archive(self, path: Path) -> LoadResult:
        """Load a docker-archive or OCI-layout tarball."""
        raise NotImplementedError

    async def create(self, spec: WorkloadSpec) -> WorkloadInfo:
        """Create (not start) a workload carrying the managed labels."""
        raise NotImplementedError

    async def start_workload(self, name: str) -> None:
        """Start a created or stopped workload."""
        raise NotImplementedError

    async def stop(self, name: str, timeout_s: float = 10.0) -> None:
        """Stop a workload, killing it after ``timeout_s``."""
        raise NotImplementedError

    async def remove(self, name: str) -> None:
        """Remove a managed workload."""
        raise NotImplementedError

    async def inspect(self, name: str) -> WorkloadInfo | None:
        """A managed workload's state, or ``None``."""
        raise NotImplementedError

    async def list_managed(self) -> list[WorkloadInfo]:
        """Every workload carrying this agent's managed label, and nothing else."""
        raise NotImplementedError

    def logs(self, name: str, *, tail: int | None = None, follow: bool = False) -> AsyncIterator[LogLine]:
        """A workload's output lines."""
        raise NotImplementedError

    def events(self) -> AsyncIterator[EngineEvent]:
        """Start/die/oom/health events of managed workloads."""
        raise NotImplementedError

    async def prune_images(self, keep: Collection[str] = ()) -> PruneResult:
        """Remove images no workload uses, except ``keep``."""
        raise NotImplementedError
