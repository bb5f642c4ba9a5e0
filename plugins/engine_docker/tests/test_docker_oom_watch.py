"""The docker engine reports an OOM kill from the kernel log when dockerd does not.

dockerd on a loaded cgroup-v1 host sometimes never sets ``OOMKilled``: the
container's memory cgroup is gone before the shim reads its OOM eventfd. The
kernel's ``oom-kill:`` record is always written, so the engine also reads
``/dev/kmsg``. To show that path alone, a workload is killed with SIGKILL (so
dockerd has no OOM to report) and the kernel log is given the record the kernel
writes for an OOM kill in that container's cgroup: the engine must report the
workload as killed for memory, once, in inspect and in its event stream.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import pytest
from fogwire_engine_docker.engine import DockerEngine

from fogwire.engine import EngineEvent, EventKind, WorkloadSpec, WorkloadState
from harness import images

pytestmark = pytest.mark.skipif(not os.access("/dev/kmsg", os.W_OK), reason="needs a writable /dev/kmsg (root)")


@pytest.fixture
async def engine(
    docker_engine: Callable[..., AbstractAsyncContextManager[DockerEngine]],
) -> AsyncIterator[DockerEngine]:
    async with docker_engine("doom", {"oomWatch": "on"}) as started:
        yield started


def _kernel_oom_record(container_id: str) -> bytes:
    cgroup = f"/docker/{container_id}"
    return (
        f"oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset={container_id},mems_allowed=0,"
        f"oom_memcg={cgroup},task_memcg={cgroup},task=sleep,pid=1,uid=0\n"
    ).encode()


async def test_an_oom_kill_read_from_the_kernel_log_is_reported_once(
    engine: DockerEngine, harness_images: images.TestImages
) -> None:
    name = f"koom-{secrets.token_hex(3)}"
    await engine.create(WorkloadSpec(name=name, image=harness_images.ref_v1, command=("sleep", "600")))
    await engine.start_workload(name)
    events: list[EngineEvent] = []

    async def record() -> None:
        async for event in engine.events():
            if event.workload == name:
                events.append(event)

    recorder = asyncio.create_task(record())
    try:
        await asyncio.sleep(0.3)
        info = await engine.inspect(name)
        assert info is not None and info.state is WorkloadState.RUNNING
        await asyncio.to_thread(engine.client.api.kill, info.id, "KILL")
        for _ in range(100):
            info = await engine.inspect(name)
            if info is not None and info.state is WorkloadState.EXITED:
                break
            await asyncio.sleep(0.05)
        assert info is not None and info.exit_code == 137
        assert not info.oom_killed, "a plain SIGKILL is not an OOM kill"

        with open("/dev/kmsg", "wb", buffering=0) as kmsg:
            kmsg.write(_kernel_oom_record(info.id))
            kmsg.write(_kernel_oom_record(info.id))  # the kernel and dockerd may both speak: one event
        for _ in range(100):
            found = await engine.inspect(name)
            if found is not None and found.oom_killed:
                break
            await asyncio.sleep(0.05)
        assert found is not None and found.oom_killed
        for _ in range(100):
            if any(e.kind is EventKind.OOM for e in events):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert [e.kind for e in events if e.kind is EventKind.OOM] == [EventKind.OOM]
    finally:
        recorder.cancel()
        await asyncio.gather(recorder, return_exceptions=True)
