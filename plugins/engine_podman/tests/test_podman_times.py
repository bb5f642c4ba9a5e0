"""A workload's start and finish times are the same whichever way the engine reads them.

Podman's container list gives ``StartedAt`` in whole seconds, its inspect with
nanoseconds, and the engine's event cache was refreshed from either: a workload
could report ``12:00:01`` from one ``list_managed`` and ``12:00:01.719452`` from the
next, and an agent comparing them saw a restart that never happened.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from fogwire_engine_podman.engine import PodmanEngine

from fogwire.engine import EngineContext, RegistryAuth, WorkloadSpec, WorkloadState
from harness import images, services

SLEEP = ("sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait")


def _engine(tmp_path: Path, url: str, agent_id: str) -> PodmanEngine:
    context = EngineContext(
        agent_id, tmp_path / "d", tmp_path / "r", tmp_path / "l", url=url, options={"oomWatch": "off"}
    )
    return PodmanEngine(context)


async def test_list_and_inspect_agree_on_started_at(
    tmp_path: Path, harness_podman: services.Podman, harness_images: images.TestImages
) -> None:
    agent_id = f"times-{uuid.uuid4().hex[:6]}"
    name = f"{agent_id}-w"
    engine = _engine(tmp_path, harness_podman.url, agent_id)
    await engine.start()
    try:
        auth = RegistryAuth(harness_images.registry, harness_images.username, harness_images.password, insecure=True)
        await engine.obtain_image(harness_images.ref_v1, auth)
        await engine.create(WorkloadSpec(name=name, image=harness_images.ref_v1, command=SLEEP))
        await engine.start_workload(name)
        inspected = await engine.inspect(name)
        assert inspected is not None and inspected.state is WorkloadState.RUNNING
        fresh = _engine(tmp_path / "fresh", harness_podman.url, agent_id)  # lists before any event refresh
        await fresh.start()
        try:
            listed = {w.name: w for w in await fresh.list_managed()}[name]
        finally:
            await fresh.close()
        assert inspected.started_at is not None
        assert listed.started_at == inspected.started_at
        assert inspected.started_at.microsecond == 0
        again = {w.name: w for w in await engine.list_managed()}[name]
        assert again.started_at == inspected.started_at
    finally:
        await engine.remove(name)
        await engine.close()
