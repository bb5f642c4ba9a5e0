"""The agent end to end on every installed engine plugin, against the harness engines and registry.

Each test runs a real :class:`fogwire.Agent` (in process) on a real engine with the
busybox test images from the harness registry (pulled with credentials), and checks
the engine's actual workloads, not only what the agent reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fogwire.agent import write_documents
from fogwire.engine import Engine, WorkloadSpec, WorkloadState
from fogwire.hookspecs import hookimpl
from fogwire.model.agent_config import PluginSelection
from fogwire.payloads import DESIRED_STATE
from fogwire.services import AgentService
from fogwire.sinks import ApplyReport, ItemResult, ReloadSink, SinkContext
from fogwire.sinks import Outcome as SinkOutcome
from harness import agents, images, runtimes

ENGINES = agents.installed_engines()

SLEEP = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
"""A long-running command that stops at once on SIGTERM (busybox as PID 1 ignores it otherwise)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def documents(
    test_images: images.TestImages, microservices: list[dict[str, Any]], app: str = "app"
) -> list[dict[str, Any]]:
    """A Registry (id 3, the harness registry with credentials) and an Application."""
    return [
        test_images.registry_document(),
        {
            "apiVersion": "iofog.org/v3",
            "kind": "Application",
            "metadata": {"name": app},
            "spec": {"microservices": microservices},
        },
    ]


def microservice(name: str, image: str, command: list[str], **container: Any) -> dict[str, Any]:
    return {
        "name": name,
        "images": {"x86": image, "arm": image, "registry": 3},
        "container": {"commands": command, **container},
    }


class Env(agents.AgentEnv):
    """One test's agent set-up: paths, a unique agent id and name prefix, engine access, the test images."""

    def __init__(self, kind: str, tmp: Path, test_images: images.TestImages) -> None:
        super().__init__(kind, tmp, agent_prefix="t6", name_prefix="fw6")
        self.images = test_images


@pytest.fixture(params=ENGINES)
async def env(request: pytest.FixtureRequest, tmp_path: Path, harness_images: images.TestImages) -> AsyncIterator[Env]:
    e = Env(request.param, tmp_path, harness_images)
    yield e
    await e.cleanup()


def fetch(port: int, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=2) as response:
                return str(response.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def status_of(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(m for m in status["microservices"] if m["name"] == name)


async def test_apply_replace_remove(env: Env) -> None:
    port = free_port()
    web, worker = env.name("web"), env.name("worker")
    volume = env.name("data")

    def state(message: str, with_worker: bool = True) -> list[dict[str, Any]]:
        ms = [
            microservice(
                web,
                env.images.ref_v1,
                ["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"],
                ports=[{"internal": 8080, "external": port}],
            )
        ]
        if with_worker:
            ms.append(
                microservice(
                    worker,
                    env.images.ref_v1,
                    ["sh", "-c", "trap 'exit 0' TERM; while true; do echo $MSG >> /data/out.txt; sleep 1 & wait; done"],
                    env=[{"key": "MSG", "value": message}],
                    volumes=[{"hostDestination": volume, "containerDestination": "/data", "type": "volume"}],
                )
            )
        return documents(env.images, ms)

    async with agents.running(env.agent()) as agent:
        result = await agent.apply(state("hello"))
        assert sorted((a["action"], a["name"], a["ok"]) for a in result["actions"]) == [
            ("create", web, True),
            ("create", worker, True),
        ]
        assert "fogwire busybox" in await asyncio.to_thread(fetch, port)
        first = await env.actual()
        assert {first[web].state, first[worker].state} == {WorkloadState.RUNNING}

        result = await agent.apply(state("changed"))
        assert [(a["action"], a["name"], a["ok"]) for a in result["actions"]] == [("replace", worker, True)]
        assert result["actions"][0]["reason"] == "changed: env"
        assert result["unchanged"] == [web]
        second = await env.actual()
        # (containerd's ids are the names, so compare start times and hashes too.)
        assert (second[web].id, second[web].started_at) == (first[web].id, first[web].started_at)
        assert second[worker].labels["io.fogwire.config-hash"] != first[worker].labels["io.fogwire.config-hash"]
        assert (second[worker].id, second[worker].started_at) != (first[worker].id, first[worker].started_at)
        assert second[worker].state is WorkloadState.RUNNING

        result = await agent.apply(state("changed", with_worker=False))
        assert [(a["action"], a["name"]) for a in result["actions"]] == [("remove", worker)]
        assert set(await env.actual()) == {web}

        result = await agent.apply([])
        assert [(a["action"], a["name"]) for a in result["actions"]] == [("remove", web)]
        assert await env.actual() == {}


async def test_one_bad_microservice_does_not_block_the_others(env: Env) -> None:
    good = [env.name("good1"), env.name("good2")]
    bad = env.name("bad")
    ms = [microservice(n, env.images.ref_v1, SLEEP) for n in good]
    ms.append(microservice(bad, f"{env.images.repository}-does-not-exist:1", SLEEP))
    async with agents.running(env.agent(max_failures=2)) as agent:
        result = await agent.apply(documents(env.images, ms))
        outcomes = {a["name"]: a["ok"] for a in result["actions"]}
        assert outcomes == {good[0]: True, good[1]: True, bad: False}
        actual = await env.actual()
        assert set(actual) == set(good)
        deadline = time.monotonic() + 20
        while status_of(await agent.status(), bad)["status"] != "failed":
            assert time.monotonic() < deadline, "the bad microservice was never marked failed"
            await asyncio.sleep(0.3)
        entry = status_of(await agent.status(), bad)
        assert "does-not-exist" in entry["last_error"]
        assert entry["state"] == "absent"
        assert status_of(await agent.status(), good[0])["status"] == "running"
        # A failed microservice is retried when its desired spec changes.
        ms[-1] = microservice(bad, env.images.ref_v1, SLEEP)
        result = await agent.apply(documents(env.images, ms))
        assert [(a["action"], a["name"], a["ok"]) for a in result["actions"]] == [("create", bad, True)]
        assert status_of(await agent.status(), bad)["status"] == "running"


async def test_health_gated_rollback(env: Env) -> None:
    name = env.name("svc")
    good = documents(env.images, [microservice(name, env.images.ref_v1, SLEEP)])
    broken = documents(env.images, [microservice(name, env.images.ref_v1, ["sh", "-c", "sleep 0.3; exit 3"])])
    fixed = documents(env.images, [microservice(name, env.images.ref_v2, SLEEP)])
    async with agents.running(env.agent()) as agent:
        await agent.apply(good)
        before = (await env.actual())[name]
        result = await agent.apply(broken)
        assert [(a["action"], a["ok"], a["detail"]) for a in result["actions"]] == [("replace", False, "rolled back")]
        after = (await env.actual())[name]
        assert after.state is WorkloadState.RUNNING
        assert after.labels["io.fogwire.config-hash"] == before.labels["io.fogwire.config-hash"]
        entry = status_of(await agent.status(), name)
        assert entry["status"] == "rolled_back"
        assert "exited with code 3" in entry["last_error"]
        # The rejected spec is not retried by later passes...
        again = await agent.reconcile_now()
        assert again.plan.actions == ()
        # ...but a new change is.
        result = await agent.apply(fixed)
        assert [(a["action"], a["ok"]) for a in result["actions"]] == [("replace", True)]
        final = (await env.actual())[name]
        assert final.image == env.images.ref_v2
        assert status_of(await agent.status(), name)["status"] == "running"


async def test_adoption_after_restart_recreates_nothing(env: Env) -> None:
    names = [env.name(f"a{i}") for i in range(3)]
    state = documents(env.images, [microservice(n, env.images.ref_v1, SLEEP) for n in names])
    async with agents.running(env.agent()) as agent:
        await agent.apply(state)
    before = await env.actual()
    assert set(before) == set(names)
    async with agents.running(env.agent()) as agent:
        result = await agent.reconcile_now()
        assert result.plan.actions == ()
        assert result.engine_writes == 0
        assert sorted(result.plan.unchanged) == sorted(names)
    after = await env.actual()
    assert {n: (w.id, w.started_at) for n, w in after.items()} == {n: (w.id, w.started_at) for n, w in before.items()}


async def test_offline_start_runs_the_last_applied_state(env: Env) -> None:
    names = [env.name("o1"), env.name("o2")]
    desired_file = env.paths.config_dir / "desired.yaml"
    state = documents(env.images, [microservice(n, env.images.ref_v1, SLEEP) for n in names])
    write_documents(desired_file, state)
    profile = env.profile(config_source=PluginSelection("file", {"path": str(desired_file)}))
    async with agents.running(env.agent(profile=profile)) as agent:
        await agent.reconcile_now()
        assert set(await env.actual()) == set(names)
    # The device reboots with no source: the file is gone and a workload was lost.
    desired_file.unlink()
    async with env.engine() as engine:
        await engine.remove(names[0])
    restarted = time.time()
    async with agents.running(env.agent(profile=profile)) as agent:
        await agent.reconcile_now()
        assert set(await env.actual()) == set(names)
        events = [(e["kind"], e["microservice"]) for e in (await agent.status())["events"] if e["time"] >= restarted]
        assert ("source-unavailable", None) in events
        assert ("created", names[0]) in events
        assert ("created", names[1]) not in events


@contextlib.asynccontextmanager
async def another_agents_workload(env: Env, name: str, *, started: bool) -> AsyncIterator[Engine]:
    """A workload ``name`` managed by another agent id on the same engine, removed afterwards."""
    async with env.engine(agent_id=f"other-{env.id}") as other:
        try:
            await other.obtain_image(env.images.ref_v1, _auth(env.images))
            await other.create(WorkloadSpec(name=name, image=env.images.ref_v1, command=tuple(SLEEP)))
            if started:
                await other.start_workload(name)
            yield other
        finally:
            await other.remove(name)


async def test_unmanaged_workloads_are_never_touched(env: Env) -> None:
    stranger = env.name("stranger")
    async with another_agents_workload(env, stranger, started=True) as other:
        mine = env.name("mine")
        async with agents.running(env.agent()) as agent:
            await agent.apply(documents(env.images, [microservice(mine, env.images.ref_v1, SLEEP)]))
            result = await agent.apply([])
            assert [(a["action"], a["name"]) for a in result["actions"]] == [("remove", mine)]
            # A desired microservice whose name an unmanaged container holds fails; the container stays.
            result = await agent.apply(documents(env.images, [microservice(stranger, env.images.ref_v1, SLEEP)]))
            assert [(a["action"], a["ok"]) for a in result["actions"]] == [("create", False)]
        info = await other.inspect(stranger)
        assert info is not None and info.state is WorkloadState.RUNNING
        assert info.labels.get("io.fogwire.managed") == f"other-{env.id}"


def _auth(test_images: images.TestImages) -> Any:
    from fogwire.engine import RegistryAuth

    return RegistryAuth(test_images.registry, test_images.username, test_images.password, insecure=True)


async def test_apply_reports_actions_a_pass_took_before_apply_waited(env: Env) -> None:
    """The daemon's own loop may act on an applied state before ``apply`` waits for a pass.

    Forced here, not left to timing: while ``apply`` adopts the new state, the loop is
    made to run a whole pass on it (the create, failing because an unmanaged container
    holds the name) before ``apply`` starts waiting. The report must still say so.
    """
    stranger = env.name("held")
    async with another_agents_workload(env, stranger, started=False):
        fine = env.name("fine")
        async with agents.running(env.agent()) as agent:
            await agent.reconcile_now()  # the start-up pass is over: the loop is idle
            reconciler = agent.running.reconciler
            note_desired = reconciler.note_desired

            async def a_pass_runs_first(desired: Any) -> list[str]:
                noted = await note_desired(desired)
                if desired is not agent.running.desired:  # a pass's own call, not apply adopting the state
                    return noted
                reconciler.note_desired = note_desired  # type: ignore[method-assign]
                serial = reconciler.pass_serial
                agent._wake_up(changed=True)
                while agent.last_pass is None or agent.last_pass.serial <= serial:
                    await asyncio.sleep(0.01)
                return noted

            reconciler.note_desired = a_pass_runs_first  # type: ignore[method-assign]
            result = await agent.apply(
                documents(
                    env.images,
                    [microservice(stranger, env.images.ref_v1, SLEEP), microservice(fine, env.images.ref_v1, SLEEP)],
                )
            )
            actions = {a["name"]: (a["action"], a["ok"]) for a in result["actions"]}
            assert actions == {stranger: ("create", False), fine: ("create", True)}
            assert stranger in result["deferred"]  # in backoff in the pass apply waited for
            assert result["unchanged"] == []
            assert (await env.actual())[fine].state is WorkloadState.RUNNING


class _FlakySink(ReloadSink[Any]):
    """Fails its first two applies (as a router whose management is not up yet would)."""

    name = "flaky"

    def __init__(self, context: SinkContext) -> None:
        super().__init__(context)
        self.calls: list[tuple[int, int | None]] = []

    async def apply(self, desired: Any, last_applied: Any | None) -> ApplyReport:
        self.calls.append(
            (len(desired.microservices), None if last_applied is None else len(last_applied.microservices))
        )
        if len(self.calls) <= 2:
            raise ConnectionError("management not up yet")
        return ApplyReport(self.name, (ItemResult("state", "update", SinkOutcome.APPLIED),))


class _ProbeService(AgentService):
    """Fails on its first run, then records what the agent offers it and waits."""

    name = "probe"
    runs: list[str] = []

    async def run(self) -> None:
        self.runs.append("run")
        if len(self.runs) == 1:
            raise RuntimeError("first run fails")
        await self.context.agent.add_event("probe", f"engine {self.context.agent.engine.name}")
        await asyncio.Event().wait()


class _SeamPlugin:
    """Registers the flaky sink and the probe service in-process."""

    def __init__(self) -> None:
        self.sinks: list[_FlakySink] = []

    @hookimpl
    def fogwire_register_reload_sinks(self, registry: Any) -> None:
        def make(context: SinkContext) -> _FlakySink:
            self.sinks.append(_FlakySink(context))
            return self.sinks[-1]

        registry.add("flaky", make, consumes=DESIRED_STATE)

    @hookimpl
    def fogwire_register_agent_services(self, registry: Any) -> None:
        registry.add("probe", _ProbeService)


async def test_a_failed_sink_converges_and_a_failed_service_runs_again(env: Env) -> None:
    plugin = _SeamPlugin()
    env.host.add_plugin(plugin, owner="tests")
    _ProbeService.runs = []
    profile = env.profile(reload_sinks=(PluginSelection("flaky"),), services=(PluginSelection("probe"),))
    async with agents.running(env.agent(profile=profile, sink_backoff_base_s=0.1)) as agent:
        await agent.apply(documents(env.images, [microservice(env.name("one"), env.images.ref_v1, SLEEP)]))
        deadline = time.monotonic() + 20
        while (await agent.status())["sinks"][0]["state"] != "ok":
            assert time.monotonic() < deadline, (await agent.status())["sinks"]
            await asyncio.sleep(0.05)
        sink = plugin.sinks[0]
        # Tried until it took the state; last_applied stays None until one apply succeeded.
        assert sink.calls[-1] == (1, None) and len(sink.calls) >= 3
        kinds = [e["kind"] for e in (await agent.status())["events"]]
        assert "sink-failed" in kinds and "sink-recovered" in kinds
        while "probe" not in [e["kind"] for e in (await agent.status())["events"]]:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert _ProbeService.runs == ["run", "run"]
        assert "service-failed" in [e["kind"] for e in (await agent.status())["events"]]
        await agent.apply([])
        assert sink.calls[-1] == (0, 1)  # the next change is given with what it applied


async def test_a_crash_loop_is_restarted_with_growing_delays(env: Env) -> None:
    """A workload that exits at once is restarted after 1, 2, 4, … seconds (capped), not at every pass."""
    name = env.name("crasher")
    ms = [microservice(name, env.images.ref_v1, ["sh", "-c", "sleep 0.2; exit 1"])]
    agent = env.agent(profile=env.profile(resync_seconds=1), backoff_cap_s=4.0)
    async with agents.running(agent) as running:
        await running.apply(documents(env.images, ms))
        await asyncio.sleep(12)
        events = await running.running.store.call(running.running.store.events, 200, name)
    restarts = sorted(e.time for e in events if e.kind == "restarted")
    gaps = [later - earlier for earlier, later in zip(restarts, restarts[1:], strict=False)]
    # Without a hold it restarts every pass (about every 1.2 s: 9 or more in 12 s).
    assert 3 <= len(restarts) <= 7, gaps
    assert max(gaps) >= 3.5, gaps  # the delay grew to the cap (4 s)


async def test_an_exited_workload_is_started_again_at_once_not_at_the_next_resync(env: Env) -> None:
    """The engine's exit event wakes a pass that sees the exit, even when the engine's list lags behind its event."""
    name = env.name("exits")
    ms = [microservice(name, env.images.ref_v1, ["sh", "-c", "sleep 1; exit 3"])]
    async with agents.running(env.agent(profile=env.profile(resync_seconds=120))) as running:
        await running.apply(documents(env.images, ms))
        deadline = time.monotonic() + 8
        while status_of(await running.status(refresh=False), name)["restarts"] < 1:
            assert time.monotonic() < deadline, "the exited workload waited for the resync"
            await asyncio.sleep(0.2)


async def test_a_microservice_for_another_agent_is_listed_and_never_started(env: Env) -> None:
    mine, theirs = env.name("mine"), env.name("theirs")
    ms = [
        {**microservice(mine, env.images.ref_v1, SLEEP), "agent": {"name": "edge-1"}},
        {**microservice(theirs, env.images.ref_v1, SLEEP), "agent": {"name": "edge-2"}},
    ]
    async with agents.running(env.agent(profile=env.profile(agent_name="edge-1"))) as agent:
        plan = (await agent.plan(documents(env.images, ms))).as_dict()
        assert [a["name"] for a in plan["actions"]] == [mine]
        assert plan["elsewhere"] == {theirs: "edge-2"}
        result = await agent.apply(documents(env.images, ms))
        assert [(a["action"], a["name"]) for a in result["actions"]] == [("create", mine)]
        status = await agent.status()
        assert status["elsewhere"] == {theirs: "edge-2"}
        assert {m["name"] for m in status["microservices"]} == {mine}
    assert set(await env.actual()) == {mine}


async def test_an_edgelet_manifest_runs_as_edgelet_deploy_would(env: Env) -> None:
    """``apiVersion: edgelet.iofog.org/v1`` Registry and Microservice (no id: a local one), pulled with credentials."""
    name = env.name("edgelet")
    manifests: list[dict[str, Any]] = [
        {
            "apiVersion": "edgelet.iofog.org/v1",
            "kind": "Registry",
            "spec": {
                "type": "oci",
                "url": env.images.registry,
                "private": True,
                "username": env.images.username,
                "password": env.images.password,
                "insecure": True,
            },
        },
        {
            "apiVersion": "edgelet.iofog.org/v1",
            "kind": "Microservice",
            "metadata": {"name": name, "namespace": "edgelet"},
            "spec": {
                "image": env.images.ref_v1,
                "registry": env.images.registry,
                "container": {"cmd": SLEEP, "env": [{"key": "FROM", "value": "edgelet"}]},
            },
        },
    ]
    async with agents.running(env.agent()) as agent:
        result = await agent.apply(manifests)
        assert [(a["action"], a["name"], a["ok"]) for a in result["actions"]] == [("create", name, True)]
    actual = await env.actual()
    assert actual[name].state is WorkloadState.RUNNING


async def test_a_field_the_engine_cant_honour_refuses_only_that_microservice(env: Env) -> None:
    """Annotations on docker (API 1.41 has none): refused, naming the engine and the field; the others run."""
    plain, annotated, runtime = env.name("plain"), env.name("annotated"), env.name("runtime")
    ms = [
        microservice(plain, env.images.ref_v1, SLEEP),
        microservice(annotated, env.images.ref_v1, SLEEP, annotations={"io.fogwire.test/role": "x"}, pidMode="host"),
        microservice(runtime, env.images.ref_v1, SLEEP, runtime=runtimes.NAME),
    ]
    options = runtimes.containerd_options() if env.kind == "containerd" else {}
    async with agents.running(env.agent(profile=env.profile(engine_options=options))) as agent:
        result = await agent.apply(documents(env.images, ms))
        features = type(agent.running.engine).features
        wanted = (
            {plain}
            | ({annotated} if "annotations" in features else set())
            | ({runtime} if "runtime" in features else set())
        )
        assert {a["name"] for a in result["actions"] if a["ok"]} == wanted
        for name, index, field in ((annotated, 1, "annotations"), (runtime, 2, "runtime")):
            if name not in wanted:
                problem = result["problems"][name]
                assert f"the {env.kind} engine can't honour spec.microservices[{index}].container.{field}" in problem
    assert wanted <= set(await env.actual())


async def test_a_runtime_in_the_document_runs_the_microservice_under_it(env: Env) -> None:
    """A container's ``runtime: fogwire-test-runc`` reaches the engine: the recording wrapper created the workload."""
    name = env.name("runtime")
    options = runtimes.containerd_options() if env.kind == "containerd" else {}
    async with agents.running(env.agent(profile=env.profile(engine_options=options))) as agent:
        result = await agent.apply(
            documents(env.images, [microservice(name, env.images.ref_v1, SLEEP, runtime=runtimes.NAME)])
        )
        assert [a["name"] for a in result["actions"] if a["ok"]] == [name], result
        workload = (await env.actual())[name]
        assert workload.state is WorkloadState.RUNNING
        calls = runtimes.CALLS.read_text().splitlines()
        assert any("create" in c.split() and c.split()[-1] == workload.id for c in calls), workload.id


async def test_a_volume_for_this_agent_is_copied_before_its_workload_runs(env: Env, tmp_path: Path) -> None:
    """An iofogctl Volume naming this node's agent: its folder is in place when the workload binding it starts."""
    name = env.name("vol")
    source, destination = tmp_path / "volume-src", tmp_path / "volume-dest"
    source.mkdir()
    (source / "greeting").write_text("hello from the volume\n")
    volume = {
        "apiVersion": "iofog.org/v3",
        "kind": "Volume",
        "metadata": {"name": "greetings"},
        "spec": {"source": str(source), "destination": str(destination), "agents": ["edge-1"], "permissions": "644"},
    }
    command = ["sh", "-c", "cat /cfg/greeting; " + SLEEP[2]]
    ms = microservice(
        name,
        env.images.ref_v1,
        command,
        volumes=[{"hostDestination": str(destination), "containerDestination": "/cfg", "accessMode": "ro"}],
    )
    async with agents.running(env.agent(profile=env.profile(agent_name="edge-1"))) as agent:
        result = await agent.apply([*documents(env.images, [ms]), volume])
        assert [(a["action"], a["name"]) for a in result["actions"]] == [("create", name)]
        events = [(e["kind"], e["message"]) for e in (await agent.status())["events"]]
        assert ("volume-pushed", f"Volume 'greetings': 1 files from {source} to {destination}") in events
    assert (destination / "greeting").stat().st_mode & 0o777 == 0o644
    async with env.engine() as engine:
        deadline = time.monotonic() + 20
        while "hello from the volume" not in [line.text async for line in engine.logs(name)]:
            assert time.monotonic() < deadline, "the workload never printed the volume's file"
            await asyncio.sleep(0.2)


async def test_pruning_removes_the_volume_of_a_removed_microservice_and_keeps_a_desired_ones(env: Env) -> None:
    gone, stays = env.name("vgone"), env.name("vstays")

    def with_volume(name: str) -> dict[str, Any]:
        volumes = [{"hostDestination": f"{name}-data", "containerDestination": "/data", "type": "volume"}]
        return microservice(name, env.images.ref_v1, SLEEP, volumes=volumes)

    async with agents.running(env.agent()) as agent:
        await agent.apply(documents(env.images, [with_volume(gone), with_volume(stays)]))
        await agent.apply(documents(env.images, [with_volume(stays)]))
        await agent.prune()
        pruned = [e["message"] for e in (await agent.status())["events"] if e["kind"] == "pruned"]
        assert pruned and f"{gone}-data" in pruned[0] and f"{stays}-data" not in pruned[0], pruned


async def test_cdi_devices_give_their_device_nodes_env_mounts_and_hooks(env: Env, tmp_path: Path) -> None:
    """A CDI spec exposing /dev/null under another name, with env and a mount; a hook where the engine runs hooks."""
    shared = tmp_path / "cdi-shared"
    shared.mkdir()
    (shared / "hello").write_text("from the cdi mount\n")
    marker = tmp_path / "hook-ran"
    hook = tmp_path / "cdi-hook"
    hook.write_text('#!/bin/sh\ncat > /dev/null\ntouch "$1"\n')  # the OCI state arrives on stdin
    hook.chmod(0o755)
    spec_dir = tmp_path / "cdi"
    spec_dir.mkdir()
    (spec_dir / "fogwire-test.yaml").write_text(
        yaml.safe_dump(
            {
                "cdiVersion": "0.6.0",
                "kind": "fogwire.test/null",
                "containerEdits": {"env": ["FOGWIRE_CDI_KIND=null"]},
                "devices": [
                    {
                        "name": "one",
                        "containerEdits": {
                            "deviceNodes": [{"path": "/dev/fogwire-cdi-null", "hostPath": "/dev/null"}],
                            "env": ["FOGWIRE_CDI=one"],
                            "mounts": [{"hostPath": str(shared), "containerPath": "/cdi", "options": ["ro", "bind"]}],
                        },
                    },
                    {
                        "name": "hooked",
                        "containerEdits": {
                            "hooks": [
                                {"hookName": "createRuntime", "path": str(hook), "args": [str(hook), str(marker)]}
                            ]
                        },
                    },
                ],
            }
        )
    )
    device, hooked = env.name("cdi"), env.name("cdihook")
    script = (
        "test -c /dev/fogwire-cdi-null && echo x > /dev/fogwire-cdi-null && echo char-device-ok; "
        "echo env=$FOGWIRE_CDI/$FOGWIRE_CDI_KIND; cat /cdi/hello; " + SLEEP[2]
    )
    ms = [
        microservice(device, env.images.ref_v1, ["sh", "-c", script], cdiDevices=["fogwire.test/null=one"]),
        microservice(hooked, env.images.ref_v1, SLEEP, cdiDevices=["fogwire.test/null=hooked"]),
    ]
    async with agents.running(env.agent(profile=env.profile(cdi_spec_dirs=(str(spec_dir),)))) as agent:
        result = await agent.apply(documents(env.images, ms))
        runs_hooks = "hooks" in type(agent.running.engine).features
        assert {a["name"] for a in result["actions"] if a["ok"]} == ({device, hooked} if runs_hooks else {device})
        if not runs_hooks:
            problem = result["problems"][hooked]
            assert f"the {env.kind} engine can't honour spec.microservices[1].container.cdiDevices" in problem
    async with env.engine() as engine:
        deadline = time.monotonic() + 20
        wanted = ["char-device-ok", "env=one/null", "from the cdi mount"]
        while (lines := [line.text async for line in engine.logs(device)])[:3] != wanted:
            assert time.monotonic() < deadline, lines
            await asyncio.sleep(0.2)
    assert marker.exists() == runs_hooks, "the createRuntime hook ran exactly where the engine runs hooks"
