"""A chatty workload's log is rotated (bounded on disk), and tail and follow read across rotations."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from fogwire_engine_containerd.engine import ContainerdEngine

from fogwire.engine import WorkloadSpec
from fogwire.testing import ContractRegistry

LINES = 2500
MAX_BYTES = 32 * 1024
#: one line a millisecond or slower, so a follower polling every 0.1 s sees every rotation
CHATTY = f"i=0; while [ $i -lt {LINES} ]; do echo line-$i; i=$((i+1)); usleep 1000; done"


@pytest.fixture
async def rotating_engine(harness_engine: Callable[..., Any]) -> AsyncIterator[ContainerdEngine]:
    async with harness_engine("logs", logMaxBytes=MAX_BYTES, logMaxFiles=3) as engine:
        yield engine


async def test_a_chatty_workload_is_followed_across_rotations_and_bounded_on_disk(
    rotating_engine: ContainerdEngine, fogwire_registry: ContractRegistry
) -> None:
    engine = rotating_engine
    name = f"chatty-{secrets.token_hex(3)}"
    await engine.create(WorkloadSpec(name=name, image=fogwire_registry.image, command=("sh", "-c", CHATTY)))
    await engine.start_workload(name)

    followed = [line.text async for line in engine.logs(name, follow=True)]  # ends when the workload exits

    assert followed == [f"line-{i}" for i in range(LINES)], "the follower lost or repeated lines at a rotation"
    logs_dir = engine.context.log_dir / "workloads"
    files = sorted(p.name for p in logs_dir.iterdir() if p.name.startswith(name))
    assert files == [f"{name}.log", f"{name}.log.1", f"{name}.log.2"]
    assert sum((logs_dir / f).stat().st_size for f in files) < 3 * MAX_BYTES + 4096
    tail = [line.text async for line in engine.logs(name, tail=3)]
    assert tail == [f"line-{LINES - 3}", f"line-{LINES - 2}", f"line-{LINES - 1}"]
    kept = [line.text async for line in engine.logs(name)]
    assert kept == [f"line-{i}" for i in range(LINES - len(kept), LINES)], "all kept lines, in order"
    assert len(kept) < LINES, "the oldest lines were rotated away"

    await engine.remove(name)
    assert not [p for p in logs_dir.iterdir() if p.name.startswith(name)], "remove deletes the rotated files too"
