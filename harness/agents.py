"""Helpers for tests that run a :class:`fogwire.Agent` against the harness engines."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from fogwire.agent import Agent
    from fogwire.engine import Engine, EngineContext, WorkloadInfo
    from fogwire.model.agent_config import Profile
    from fogwire.paths import Paths

HARNESS_ENGINES = ("containerd", "docker", "podman")


def installed_engines() -> list[str]:
    """The harness engines whose fogwire plugin is installed, sorted (the parameters of e2e tests)."""
    found = {ep.name for ep in importlib.metadata.entry_points(group="fogwire.engines")}
    return sorted(found & set(HARNESS_ENGINES))


@contextlib.asynccontextmanager
async def running(agent: Agent, timeout_s: float = 60.0) -> AsyncIterator[Agent]:
    """Run ``agent`` in a task until the block ends; fail at once if it dies while starting."""
    task = asyncio.create_task(agent.run())
    started = asyncio.create_task(agent.started.wait())
    done, _ = await asyncio.wait({task, started}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        started.cancel()
        task.result()
    try:
        yield agent
    finally:
        agent.stop()
        await asyncio.wait_for(task, timeout_s)


@contextlib.asynccontextmanager
async def harness_engine(
    kind: str, base: Path, agent_id: str, options: Mapping[str, Any] | None = None
) -> AsyncIterator[Engine]:
    """A started engine plugin ``kind`` on the harness service, its dirs under ``base``; closed at the end.

    ``options`` are the engine's options (``engineOptions``).
    """
    from fogwire.engine import EngineContext
    from harness import services

    context = EngineContext(
        agent_id=agent_id,
        data_dir=base / "data",
        run_dir=base / "run",
        log_dir=base / "log",
        url=services.engine_url(kind),
        options=dict(options or {}),
    )
    async with _started(kind, context) as engine:
        yield engine


@contextlib.asynccontextmanager
async def agents_engine(kind: str, paths: Paths, agent_id: str) -> AsyncIterator[Engine]:
    """The engine an agent with ``paths`` and ``agent_id`` runs on the harness service, started; closed at the end.

    Its directories are the agent's own (data under ``state_dir/engine``, as
    :class:`fogwire.Agent` makes them), so a test sees what the agent's engine holds.
    """
    from fogwire.engine import EngineContext
    from harness import services

    context = EngineContext(
        agent_id=agent_id,
        data_dir=paths.state_dir / "engine",
        run_dir=paths.run_dir,
        log_dir=paths.log_dir,
        url=services.engine_url(kind),
    )
    async with _started(kind, context) as engine:
        yield engine


@contextlib.asynccontextmanager
async def _started(kind: str, context: EngineContext) -> AsyncIterator[Engine]:
    from fogwire.plugins import PluginHost

    engine = PluginHost().engine_factory(kind)(context)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.close()


class AgentEnv:
    """One test's agent set-up on one harness engine: its own paths, a unique agent id and workload-name prefix.

    Each e2e module subclasses it with what its tests add (images, documents).
    ``agent_prefix`` and ``name_prefix`` tell a module's agents and workloads
    apart on the engines every test shares.
    """

    agent_defaults: Mapping[str, Any] = {"rollback_grace_s": 1.5, "backoff_cap_s": 1.0, "api_socket": False}
    """Keyword arguments every agent of the set-up gets unless a test gives its own."""

    def __init__(self, kind: str, tmp: Path, *, agent_prefix: str, name_prefix: str) -> None:
        from fogwire.paths import Paths
        from fogwire.plugins import PluginHost
        from harness import services

        self.kind = kind
        self.url = services.engine_url(kind)
        self.id = uuid.uuid4().hex[:6]
        self.agent_id = f"{agent_prefix}-{self.id}"
        self.name_prefix = f"{name_prefix}{self.id}"
        self.paths = Paths(tmp / "config.yaml", tmp / "state", tmp / "log", tmp / "run")
        self.host = PluginHost()

    def name(self, short: str) -> str:
        """A workload name unique to this set-up."""
        return f"{self.name_prefix}-{short}"

    def profile(self, **changes: Any) -> Profile:
        """The agent's profile: this engine and agent id, with ``changes``."""
        from fogwire.model.agent_config import Profile

        return Profile(container_engine=self.kind, container_engine_url=self.url, agent_id=self.agent_id, **changes)

    def agent(self, **kwargs: Any) -> Agent:
        """An agent of this set-up (``profile=`` replaces :meth:`profile`'s; other keywords go to ``Agent``)."""
        from fogwire.agent import Agent

        profile = kwargs.pop("profile", None) or self.profile()
        return Agent(
            engine=self.kind, profile=profile, paths=self.paths, plugins=self.host, **{**self.agent_defaults, **kwargs}
        )

    def engine(self, agent_id: str | None = None) -> contextlib.AbstractAsyncContextManager[Engine]:
        """The agent's engine (or another agent id's, on the same directories), started; closed at the end."""
        return agents_engine(self.kind, self.paths, agent_id or self.agent_id)

    async def actual(self) -> dict[str, WorkloadInfo]:
        """The workloads the agent's engine manages, by name."""
        async with self.engine() as engine:
            return {w.name: w for w in await engine.list_managed()}

    async def cleanup(self) -> None:
        """Remove every workload the agent's engine manages."""
        async with self.engine() as engine:
            for w in await engine.list_managed():
                await engine.remove(w.name)
