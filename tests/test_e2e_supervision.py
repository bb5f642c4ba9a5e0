"""Pruning and the watchdog, on real engines.

Pruning runs on containerd in a namespace of its own, so it can't remove images
other tests (sharing the harness engines) are using.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

from fogwire.agent import Agent
from fogwire.engine import EngineContext, RegistryAuth, WorkloadInfo
from fogwire.model.agent_config import Profile
from fogwire.paths import Paths
from fogwire.plugins import PluginHost
from fogwire.sinks import ApplyReport, ItemResult, Outcome, ReloadSink, SinkContext
from harness import images, services

SLEEP = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]


def app(test_images: images.TestImages, name: str) -> list[dict[str, Any]]:
    return [
        test_images.registry_document(),
        {
            "apiVersion": "iofog.org/v3",
            "kind": "Microservice",
            "metadata": {"name": name},
            "spec": {
                "images": {"x86": test_images.ref_v1, "arm": test_images.ref_v1, "registry": 3},
                "container": {"commands": SLEEP},
            },
        },
    ]


async def test_prune_keeps_desired_images_and_removes_the_rest(
    tmp_path: Path, harness_images: images.TestImages
) -> None:
    url = services.start_containerd().url
    tag = uuid.uuid4().hex[:6]
    profile = Profile(
        container_engine="containerd",
        container_engine_url=url,
        agent_id=f"t6-prune-{tag}",
        engine_options={"namespace": f"fw6-prune-{tag}"},
    )
    paths = Paths(tmp_path / "c.yaml", tmp_path / "state", tmp_path / "log", tmp_path / "run")
    agent = Agent(engine="containerd", profile=profile, paths=paths, api_socket=False)
    task = asyncio.create_task(agent.run())
    await agent.started.wait()
    try:
        assert agent.engine is not None
        auth = RegistryAuth(harness_images.registry, harness_images.username, harness_images.password, insecure=True)
        await agent.engine.obtain_image(harness_images.ref_v2, auth)  # present, but nothing wants it
        await agent.apply(app(harness_images, f"fw6{tag}-keep"))
        removed = await agent.prune()
        assert harness_images.ref_v2 in removed
        assert harness_images.ref_v1 not in removed
        assert await agent.engine.image_digest(harness_images.ref_v2) is None
        assert await agent.engine.image_digest(harness_images.ref_v1) is not None
        assert any(e["kind"] == "pruned" for e in (await agent.status())["events"])
        await agent.apply([])
    finally:
        agent.stop()
        await task


async def test_watchdog_restarts_a_stuck_reconcile_loop(tmp_path: Path, harness_images: images.TestImages) -> None:
    url = services.start_dockerd().host
    tag = uuid.uuid4().hex[:6]
    paths = Paths(tmp_path / "c.yaml", tmp_path / "state", tmp_path / "log", tmp_path / "run")
    context = EngineContext(f"t6-wd-{tag}", paths.state_dir / "engine", paths.run_dir, paths.log_dir, url=url)
    engine = PluginHost().engine_factory("docker")(context)
    # Fault injection on a real engine: its first listing never returns, as a hung engine call would.
    real_list = engine.list_managed
    calls = 0

    async def list_managed() -> list[WorkloadInfo]:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.Event().wait()
        return await real_list()

    engine.list_managed = list_managed  # type: ignore[method-assign]
    profile = Profile(container_engine="docker", agent_id=f"t6-wd-{tag}", watchdog_enabled=True)
    agent = Agent(engine=engine, profile=profile, paths=paths, api_socket=False, stuck_after_s=1.0)
    task = asyncio.create_task(agent.run())
    await agent.started.wait()
    try:
        name = f"fw6{tag}-wd"
        result = await asyncio.wait_for(agent.apply(app(harness_images, name)), 30)
        assert [(a["action"], a["ok"]) for a in result["actions"]] == [("create", True)]
        events = [e["kind"] for e in (await agent.status())["events"]]
        assert "watchdog" in events
        assert calls >= 2
        await agent.apply([])
    finally:
        agent.stop()
        await task


class RecordingSink(ReloadSink):
    """A sink that keeps what it was given (a real sink, in process)."""

    name = "recording"

    def __init__(self) -> None:
        super().__init__(SinkContext(Path("/nonexistent"), Path("/nonexistent")))
        self.calls: list[tuple[Any, Any]] = []

    async def apply(self, desired: Any, last_applied: Any | None) -> ApplyReport:
        self.calls.append((desired, last_applied))
        return ApplyReport(self.name, (ItemResult("state", "update", Outcome.APPLIED),))


class BrokenSink(RecordingSink):
    """A sink that fails (first) and one that hangs (second): neither may stop the others."""

    name = "broken"

    async def apply(self, desired: Any, last_applied: Any | None) -> ApplyReport:
        if not self.calls:
            self.calls.append((desired, last_applied))
            raise RuntimeError("sink exploded")
        self.calls.append((desired, last_applied))
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_reload_sinks_get_each_desired_state_in_their_own_try(
    tmp_path: Path, harness_images: images.TestImages
) -> None:
    url = services.start_dockerd().host
    tag = uuid.uuid4().hex[:6]
    paths = Paths(tmp_path / "c.yaml", tmp_path / "state", tmp_path / "log", tmp_path / "run")
    profile = Profile(container_engine="docker", container_engine_url=url, agent_id=f"t6-sink-{tag}")
    broken, recording = BrokenSink(), RecordingSink()
    agent = Agent(
        engine="docker",
        profile=profile,
        paths=paths,
        api_socket=False,
        sinks=[broken, "log", recording],
        sink_timeout_s=1.0,
    )
    task = asyncio.create_task(agent.run())
    await agent.started.wait()
    try:
        name = f"fw6{tag}-sink"
        await agent.apply(app(harness_images, name))
        await agent.apply([])
        desired_states = [d for d, _ in recording.calls]
        assert [sorted(d.microservices) for d in desired_states[-2:]] == [[name], []]
        assert recording.calls[-1][1] is desired_states[-2]
        # The broken sink failed, so after its backoff it is tried again, with the newest
        # state and nothing as last applied (it never applied one); that try hangs and times out.
        deadline = time.monotonic() + 15

        async def failures() -> list[str]:
            return [e["message"] for e in (await agent.status())["events"] if e["kind"] == "sink-failed"]

        while not any(m.startswith("broken: timed out after 1s") for m in await failures()):
            assert time.monotonic() < deadline, await failures()
            await asyncio.sleep(0.05)
        assert any(m.startswith("broken: sink exploded") for m in await failures())
        assert len(broken.calls) >= 2
        assert sorted(broken.calls[1][0].microservices) == [] and broken.calls[1][1] is None
        sinks = {s["name"]: s for s in (await agent.status())["sinks"]}
        assert sinks["broken"]["state"] == "retrying" and sinks["broken"]["failures"] >= 2
        assert sinks["recording"]["state"] == "ok" and sinks["log"]["state"] == "ok"
    finally:
        agent.stop()
        await task
