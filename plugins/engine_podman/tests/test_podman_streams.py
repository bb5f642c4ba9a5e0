"""The podman engine's event and log streams, and what closing them does to everything else.

``test_closing_streams_does_not_break_concurrent_calls`` is the regression test
for a flaky contract-suite teardown: an ``inspect`` right after an event stream
was closed failed with ``http.client.ResponseNotReady``. The stream's reader
thread, woken by the close, still held the connection that the closing side had
already put back into the shared pool, and closed it under a request another
thread had just sent on it. Before the fix it failed in 6 runs out of 6.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from fogwire_engine_podman.engine import PodmanEngine

from fogwire.engine import EngineContext, EngineEvent, EventKind, LogLine, RegistryAuth, WorkloadSpec, WorkloadState
from fogwire.errors import EngineError
from harness import images, services

ROUNDS = 100
STREAMS = 4
INSPECTS = 8

MakeEngine = Callable[[Mapping[str, Any]], Awaitable[PodmanEngine]]


@pytest.fixture
async def make_engine(
    tmp_path: Path, harness_podman: services.Podman, harness_images: images.TestImages
) -> AsyncIterator[MakeEngine]:
    """Started engines (given options) on the harness service, the test image present; emptied and closed after."""
    made: list[PodmanEngine] = []

    async def make(options: Mapping[str, Any]) -> PodmanEngine:
        agent = f"streams-{os.getpid()}-{secrets.token_hex(3)}"
        context = EngineContext(
            agent_id=agent,
            data_dir=tmp_path,
            run_dir=tmp_path,
            log_dir=tmp_path,
            url=harness_podman.url,
            options={"oomWatch": "off", **options},
        )
        engine = PodmanEngine(context)
        await engine.start()
        made.append(engine)
        if await engine.image_digest(harness_images.ref_v1) is None:
            auth = RegistryAuth(
                harness_images.registry, harness_images.username, harness_images.password, insecure=True
            )
            await engine.obtain_image(harness_images.ref_v1, auth)
        return engine

    yield make
    for engine in made:
        try:
            if engine._client is not None:  # not closed by the test
                for workload in await engine.list_managed():
                    await engine.remove(workload.name)
        finally:
            await engine.close()


async def _run(engine: PodmanEngine, image: str, name: str, script: str) -> str:
    """Create and start ``name`` running ``sh -c script``; its full name."""
    full = f"{engine.context.agent_id}-{name}"
    await engine.create(WorkloadSpec(name=full, image=image, command=("sh", "-c", script)))
    await engine.start_workload(full)
    return full


def _chain(error: BaseException) -> str:
    """``error`` and its causes, innermost last (the SDK wraps the transport's error twice)."""
    parts = []
    current: BaseException | None = error
    while current is not None:
        parts.append(repr(current))
        current = current.__cause__ or current.__context__
    return " <- ".join(parts)


async def _consume(stream: AsyncIterator[object]) -> None:
    async for _ in stream:
        pass


async def test_closing_streams_does_not_break_concurrent_calls(
    make_engine: MakeEngine, harness_images: images.TestImages
) -> None:
    engine = await make_engine({})
    script = "i=0; while true; do echo line$i; i=$((i+1)); sleep 0.05; done"
    name = await _run(engine, harness_images.ref_v1, "talker", script)
    info = await engine.inspect(name)
    assert info is not None and info.state is WorkloadState.RUNNING
    for _ in range(ROUNDS):
        streams = [asyncio.create_task(_consume(engine.events())) for _ in range(STREAMS)]
        streams += [asyncio.create_task(_consume(engine.logs(name, tail=1, follow=True))) for _ in range(STREAMS)]
        await asyncio.sleep(0.05)  # the streams' threads are connected and reading
        for task in streams:
            task.cancel()
        # calls issued the moment the streams close, as a teardown does
        results = await asyncio.gather(*(engine.inspect(name) for _ in range(INSPECTS)), return_exceptions=True)
        for task in streams:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, f"inspect failed while streams closed: {_chain(errors[0])}"
        assert all(r is not None and r.name == name for r in results)


async def test_a_followed_log_stream_outlives_the_request_timeout(
    make_engine: MakeEngine, harness_images: images.TestImages
) -> None:
    # timeout_s bounds calls, not how long a followed stream may stay quiet
    engine = await make_engine({"timeoutS": 1})
    name = await _run(engine, harness_images.ref_v1, "quiet", "echo first; sleep 3; echo second; exec sleep 3600")
    lines: list[LogLine] = []

    async def follow() -> None:
        async for line in engine.logs(name, follow=True):
            lines.append(line)
            if line.text == "second":
                return

    await asyncio.wait_for(follow(), timeout=30)
    assert [line.text for line in lines] == ["first", "second"]


async def test_close_ends_the_streams_left_open(make_engine: MakeEngine, harness_images: images.TestImages) -> None:
    engine = await make_engine({})
    name = await _run(engine, harness_images.ref_v1, "open", "echo hello; exec sleep 3600")
    events = engine.events()
    next_event = asyncio.ensure_future(anext(events))
    lines: list[str] = []

    async def follow() -> None:
        async for line in engine.logs(name, follow=True):
            lines.append(line.text)

    following = asyncio.create_task(follow())
    for _ in range(100):
        if lines:
            break
        await asyncio.sleep(0.05)
    assert lines == ["hello"]
    readers = {t for t in threading.enumerate() if t.name.startswith("fogwire-podman-")}
    for workload in await engine.list_managed():
        await engine.remove(workload.name)
    await engine.close()
    await asyncio.wait_for(following, timeout=10)  # the followed stream ended
    with pytest.raises(EngineError, match="event stream ended"):
        while True:  # the removal's events may come first
            event: EngineEvent = await asyncio.wait_for(next_event, timeout=10)
            assert event.kind in (EventKind.DIE, EventKind.START)
            next_event = asyncio.ensure_future(anext(events))
    await events.aclose()
    for thread in readers:
        thread.join(timeout=10)
        assert not thread.is_alive(), f"{thread.name} still reads after close()"
