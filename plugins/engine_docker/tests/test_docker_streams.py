"""Closing the docker engine's event and log streams never breaks calls made at the same moment.

The podman plugin had this race (``plugins/engine_podman/tests/test_podman_streams.py``):
a stream closed from the event loop while its reader thread was still inside urllib3
put the connection back into the shared pool, and the reader then closed it under
another thread's request. Docker's SDK streams over the same kind of pool, so the
same stress runs here: streams opened and cancelled over and over, with inspects
issued the moment they close.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from fogwire_engine_docker.engine import DockerEngine

from fogwire.engine import WorkloadSpec, WorkloadState
from harness import images

ROUNDS = 60
STREAMS = 4
INSPECTS = 8


@pytest.fixture
async def engine(
    docker_engine: Callable[..., AbstractAsyncContextManager[DockerEngine]],
) -> AsyncIterator[DockerEngine]:
    async with docker_engine("dstreams") as started:
        yield started


async def _consume(stream: AsyncIterator[Any]) -> None:
    async for _ in stream:
        pass


def _chain(error: BaseException) -> str:
    parts = []
    current: BaseException | None = error
    while current is not None:
        parts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return " <- ".join(parts)


async def test_closing_streams_does_not_break_concurrent_calls(
    engine: DockerEngine, harness_images: images.TestImages
) -> None:
    name = f"{engine.context.agent_id}-talker"
    script = "i=0; while true; do echo line$i; i=$((i+1)); sleep 0.05; done"
    await engine.create(WorkloadSpec(name=name, image=harness_images.ref_v1, command=("sh", "-c", script)))
    await engine.start_workload(name)
    info = await engine.inspect(name)
    assert info is not None and info.state is WorkloadState.RUNNING
    for _ in range(ROUNDS):
        streams = [asyncio.create_task(_consume(engine.events())) for _ in range(STREAMS)]
        streams += [asyncio.create_task(_consume(engine.logs(name, tail=1, follow=True))) for _ in range(STREAMS)]
        await asyncio.sleep(0.05)  # the streams' threads are connected and reading
        for task in streams:
            task.cancel()
        results = await asyncio.gather(*(engine.inspect(name) for _ in range(INSPECTS)), return_exceptions=True)
        for task in streams:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, f"inspect failed while streams closed: {_chain(errors[0])}"
        assert all(r is not None and r.name == name for r in results)
