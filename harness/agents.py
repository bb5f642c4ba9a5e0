"""Helpers for tests that run a :class:`fogwire.Agent` against the harness engines."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from fogwire.agent import Agent
    from fogwire.engine import Engine, EngineContext
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
