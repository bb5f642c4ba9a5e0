"""Helpers for tests that run a :class:`fogwire.Agent` against the harness engines."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fogwire.agent import Agent

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
