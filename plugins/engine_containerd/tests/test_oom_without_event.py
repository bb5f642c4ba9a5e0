"""An OOM kill is reported even when containerd sends no ``TaskOOM`` event.

The shim starts watching a task's cgroup for OOM only after the task has
started; a workload that passes its memory limit at once can be killed before
that, and then only its exit (137) arrives. The plugin then reads the cgroup's
own OOM counter. Here ``TaskOOM`` events are dropped on purpose to make that
race certain; the workload and the kernel's OOM kill are real.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fogwire_engine_containerd.engine import ContainerdEngine

from fogwire.engine import EventKind, WorkloadSpec, WorkloadState
from fogwire.testing import ContractRegistry
from fogwire.testing.contract import EventRecorder, eventually, unique, wait_state


async def test_an_oom_kill_without_its_event_is_read_from_the_cgroup(
    harness_engine: Callable[..., Any], fogwire_registry: ContractRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with harness_engine("oom") as engine:
        assert isinstance(engine, ContainerdEngine)
        dispatch = engine.task_events.dispatch

        def without_oom_events(envelope: Any) -> None:
            if not envelope.event.type_url.endswith("TaskOOM"):  # the OOM can only come from the cgroup now
                dispatch(envelope)

        monkeypatch.setattr(engine.task_events, "dispatch", without_oom_events)
        name = unique("oomcg")
        async with EventRecorder(engine) as recorder:
            await engine.create(
                WorkloadSpec(
                    name=name,
                    image=fogwire_registry.image,
                    command=("dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"),
                    memory_limit_mib=16,
                )
            )
            await engine.start_workload(name)
            info = await wait_state(engine, name, WorkloadState.EXITED, WorkloadState.DEAD)
            assert info.exit_code == 137

            async def oom_killed() -> bool | None:
                found = await engine.inspect(name)
                return True if found is not None and found.oom_killed else None

            await eventually(oom_killed, f"{name} to be reported as killed for memory", timeout=30)
            await recorder.wait(f"an oom event of {name}", lambda e: e.kind is EventKind.OOM and e.workload == name)
