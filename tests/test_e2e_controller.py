"""A fogwire node managed by a controller, end to end on every installed engine.

An operator at work on the stand-in controller's user side: a node is created and
provisioned, two microservices are deployed and run (and are reported RUNNING), an
env var changes (the workload is replaced), one is deleted (removed), one with an
image that does not exist is reported FAILED with the reason, and the registry
password the controller hands out never shows in the agent's status or logs.
The agent is a real :class:`fogwire.Agent` on a real engine; the stand-in follows
``controller-agent-api.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest
import yaml
from fogwire_config_controller import credentials
from fogwire_config_controller.client import ControllerClient
from fogwire_config_controller.testing import StandInController

from fogwire.agent import Agent
from fogwire.engine import WorkloadState
from fogwire.model.agent_config import PluginSelection
from harness import agents, images

ENGINES = agents.installed_engines()
SLEEP = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
T = TypeVar("T")


async def eventually(
    check: Callable[[], Any], what: str, timeout: float = 60.0, seen: Callable[[], Any] | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            shown = f"; last seen: {seen()}" if seen is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{shown}")
        await asyncio.sleep(0.2)


def add_harness_registry(controller: StandInController, test_images: images.TestImages) -> int:
    """The harness registry (plain http, with credentials) as a user registry at the controller; its id."""
    return controller.add_registry(f"http://{test_images.registry}", test_images.username, test_images.password)


class Node(agents.AgentEnv):
    """One test's node: paths, agent id, the stand-in, engine access."""

    agent_defaults = {**agents.AgentEnv.agent_defaults, "rollback_grace_s": 1.0}

    def __init__(self, kind: str, tmp: Path, controller: StandInController) -> None:
        super().__init__(kind, tmp, agent_prefix="t14", name_prefix="fw14")
        self.controller = controller
        self.uuid = ""

    async def provision(self) -> str:
        self.uuid = self.controller.create_node(self.agent_id)
        key = self.controller.provisioning_key(self.uuid)
        client = ControllerClient(self.controller.url)
        answer = (await client.request("POST", "agent/provision", {"key": key, "type": 1}, authenticated=False)).data
        self.paths.ensure()
        credentials.save(self.paths.state_dir, credentials.Credentials.from_answer(client.base, answer, 1))
        return self.uuid

    def write_config(self) -> None:
        """The agent config file ``fogwire daemon`` and the CLI read: this engine, the controller source."""
        self.paths.ensure()
        profile = {
            "containerEngine": self.kind,
            "containerEngineUrl": self.url,
            "agentId": self.agent_id,
            "controllerUrl": self.controller.url,
            "configSource": {"name": "controller"},
            "changeFrequency": 1,
            "statusFrequency": 1,
            "pruningFrequency": 0,
        }
        self.paths.config_file.write_text(
            yaml.safe_dump({"currentProfile": "default", "profiles": {"default": profile}})
        )

    def flags(self) -> list[str]:
        """The CLI's path flags for this node."""
        paths = self.paths
        return [
            "--config",
            str(paths.config_file),
            "--state-dir",
            str(paths.state_dir),
            "--run-dir",
            str(paths.run_dir),
            "--log-dir",
            str(paths.log_dir),
        ]

    async def daemon(self, log: Path) -> asyncio.subprocess.Process:
        """``fogwire daemon`` for this node, its output appended to ``log``; returns once its socket is up."""
        with log.open("ab") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "fogwire.cli", *self.flags(), "daemon", stdout=out, stderr=out
            )
        socket_path = self.paths.run_dir / "fogwire.sock"
        deadline = time.monotonic() + 60
        while not socket_path.exists():
            if process.returncode is not None or time.monotonic() > deadline:
                raise AssertionError(f"the daemon did not start: {log.read_text()[-3000:]}")
            await asyncio.sleep(0.1)
        return process

    def agent_with_socket(self) -> Agent:
        """The agent as ``fogwire daemon`` runs it from the config file, serving the CLI socket."""
        from fogwire.config import load_agent_config

        return Agent.from_config(
            load_agent_config(self.paths.config_file), self.paths, plugins=self.host, rollback_grace_s=1.0
        )

    def agent(self, status_frequency: int = 1, services: list[tuple[str, dict[str, Any]]] | None = None) -> Agent:
        """An agent on the stand-in controller, polling every second."""
        profile = self.profile(
            controller_url=self.controller.url,
            config_source=PluginSelection("controller"),
            change_frequency=1,
            status_frequency=status_frequency,
        )
        return super().agent(profile=profile, services=services or [])

    def reported(self, ms: str) -> dict[str, Any] | None:
        return self.controller.reported(self.uuid)["microservices"].get(ms)


@contextlib.asynccontextmanager
async def node_on(kind: str, tmp: Path, auth: Literal["legacy", "jwt"] = "legacy") -> AsyncIterator[Node]:
    """A node on engine ``kind`` and a running stand-in controller; its workloads and the stand-in go after."""
    controller = StandInController(auth=auth)
    await controller.start()
    node = Node(kind, tmp, controller)
    try:
        yield node
    finally:
        await node.cleanup()
        await controller.close()


@pytest.fixture(params=ENGINES)
async def node(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Node]:
    # both auth generations run: the token one on the first engine, EdDSA JWTs on the others
    async with node_on(request.param, tmp_path, "legacy" if request.param == ENGINES[0] else "jwt") as n:
        yield n


async def test_an_operator_manages_a_node_through_the_controller(
    node: Node, harness_images: images.TestImages, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    controller = node.controller
    await node.provision()
    registry = add_harness_registry(controller, harness_images)
    web = controller.deploy(
        node.uuid,
        x86=harness_images.ref_v1,
        arm=harness_images.ref_v1,
        registry_id=registry,
        cmd=SLEEP,
        env=[{"key": "GREETING", "value": "hello"}],
        config={"greeting": "hello"},
    )
    worker = controller.deploy(
        node.uuid, x86=harness_images.ref_v1, arm=harness_images.ref_v1, registry_id=registry, cmd=SLEEP
    )

    async with agents.running(node.agent()) as agent:

        async def both_running() -> bool:
            actual = await node.actual()
            reported = [node.reported(web), node.reported(worker)]
            return {actual.get(web) and actual[web].state, actual.get(worker) and actual[worker].state} == {
                WorkloadState.RUNNING
            } and all(r is not None and r["status"] == "RUNNING" for r in reported)

        await eventually(
            both_running,
            "both microservices to run and be reported RUNNING",
            seen=lambda: (controller.reported(node.uuid), controller.requests[-5:]),
        )
        first = await node.actual()
        assert controller.pending_changes(node.uuid) == [], "every change was acknowledged"

        async def measured() -> bool:
            entries = [node.reported(web), node.reported(worker)]
            return all(e is not None and e["memoryUsage"] > 0 and e["cpuUsage"] >= 0 for e in entries)

        await eventually(measured, "each running microservice's memory in the report")
        entry = node.reported(web)
        assert entry is not None and entry["containerId"] and entry["startTime"] > 0
        status = controller.reported(node.uuid)
        assert status["daemonStatus"] == "RUNNING" and status["lastStatusTime"] > 0

        controller.update(web, env=[{"key": "GREETING", "value": "changed"}])

        async def replaced() -> bool:
            w = (await node.actual()).get(web)
            return (
                w is not None
                and w.state is WorkloadState.RUNNING
                and w.labels["io.fogwire.config-hash"] != first[web].labels["io.fogwire.config-hash"]
            )

        await eventually(replaced, "the changed microservice to be replaced")

        controller.delete(worker)

        async def removed() -> bool:
            return worker not in await node.actual()

        await eventually(removed, "the deleted microservice to be removed")

        broken = controller.deploy(
            node.uuid, x86=f"{harness_images.registry}/fogwire/nothing-here:1", registry_id=registry, cmd=SLEEP
        )

        async def failed() -> dict[str, Any] | None:
            entry = node.reported(broken)
            return entry if entry is not None and entry["status"] == "FAILED" and entry["errorMessage"] else None

        entry = await eventually(failed, "the broken microservice to be reported FAILED with its reason")
        assert "nothing-here" in entry["errorMessage"]
        assert node.reported(web) is not None and node.reported(web)["status"] == "RUNNING"

        shown = json.dumps(await agent.status())
        assert harness_images.password not in shown
    assert harness_images.password not in caplog.text


async def _fogwire(node: Node, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fogwire.cli",
        *node.flags(),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


@pytest.mark.parametrize("kind", ENGINES)
async def test_provision_and_deprovision_from_the_cli(
    kind: str, tmp_path: Path, harness_images: images.TestImages
) -> None:
    async with node_on(kind, tmp_path, "jwt") as node:
        controller = node.controller
        node.write_config()
        node.uuid = controller.create_node("cli-node")
        code, _, err = await _fogwire(node, "provision", "nokey123")
        assert code == 4 and "Invalid Provisioning Key" in err
        code, out, _ = await _fogwire(node, "provision", controller.provisioning_key(node.uuid))
        assert code == 0 and node.uuid in out
        stored = credentials.load(node.paths.state_dir)
        assert stored is not None and stored.secret not in out
        assert oct(credentials.credentials_path(node.paths.state_dir).stat().st_mode & 0o777) == "0o600"
        registry = add_harness_registry(controller, harness_images)
        ms = controller.deploy(node.uuid, x86=harness_images.ref_v1, registry_id=registry, cmd=SLEEP)
        async with agents.running(node.agent_with_socket()):

            async def running() -> bool:
                w = (await node.actual()).get(ms)
                return w is not None and w.state is WorkloadState.RUNNING

            await eventually(running, "the microservice to run")
            code, out, err = await _fogwire(node, "deprovision")
            assert code == 0, err
            assert "the controller at" in out and "was told" in out
            assert await node.actual() == {}
            assert credentials.load(node.paths.state_dir) is None
            assert controller.nodes[node.uuid].deprovisioned


@pytest.mark.parametrize("kind", ENGINES[:1])
async def test_a_running_daemon_picks_up_a_provisioning_without_a_restart(
    kind: str, tmp_path: Path, harness_images: images.TestImages
) -> None:
    async with node_on(kind, tmp_path, "legacy") as node:
        controller = node.controller
        async with agents.running(node.agent()):
            await asyncio.sleep(1.5)  # running, not provisioned: nothing to do
            await node.provision()
            registry = add_harness_registry(controller, harness_images)
            ms = controller.deploy(node.uuid, x86=harness_images.ref_v1, registry_id=registry, cmd=SLEEP)

            async def running() -> bool:
                w = (await node.actual()).get(ms)
                reported = node.reported(ms) if controller.nodes[node.uuid].status else None
                return w is not None and w.state is WorkloadState.RUNNING and bool(reported)

            await eventually(running, "the microservice of the new provisioning to run and be reported")


@pytest.mark.parametrize("kind", ENGINES)
async def test_kill_9_between_fetch_and_ack_then_a_reboot_without_network(
    kind: str, tmp_path: Path, harness_images: images.TestImages
) -> None:
    async with node_on(kind, tmp_path, "legacy") as node:
        controller = node.controller
        log = tmp_path / "daemon.log"
        daemon: asyncio.subprocess.Process | None = None
        try:
            node.write_config()
            await node.provision()
            registry = add_harness_registry(controller, harness_images)
            env = [{"key": "ROUND", "value": "1"}]
            a = controller.deploy(node.uuid, x86=harness_images.ref_v1, registry_id=registry, cmd=SLEEP, env=env)
            b = controller.deploy(node.uuid, x86=harness_images.ref_v1, registry_id=registry, cmd=SLEEP)

            async def running(names: list[str]) -> dict[str, Any] | None:
                actual = await node.actual()
                ok = all(n in actual and actual[n].state is WorkloadState.RUNNING for n in names)
                return actual if ok else None

            daemon = await node.daemon(log)
            first = await eventually(lambda: running([a, b]), "both to run", seen=lambda: log.read_text()[-2000:])

            # The change is fetched and kept, the ack hangs: kill -9 lands between fetch and ack.
            controller.slow("PATCH", "config/changes", 60)
            acks_before = controller.requests.count(("PATCH", "config/changes"))
            controller.update(a, env=[{"key": "ROUND", "value": "2"}])
            c = controller.deploy(node.uuid, x86=harness_images.ref_v1, registry_id=registry, cmd=SLEEP)

            async def ack_sent() -> bool:
                return controller.requests.count(("PATCH", "config/changes")) > acks_before

            await eventually(ack_sent, "the daemon to take the change and send its ack")
            daemon.kill()
            await daemon.wait()
            assert controller.pending_changes(node.uuid), "the change was not acknowledged before the kill"
            controller.slow("PATCH", "config/changes", 0)

            daemon = await node.daemon(log)

            async def converged() -> dict[str, Any] | None:
                actual = await running([a, b, c])
                if actual is None or controller.pending_changes(node.uuid):
                    return None
                changed = actual[a].labels["io.fogwire.config-hash"] != first[a].labels["io.fogwire.config-hash"]
                return actual if changed else None

            await eventually(converged, "the restarted daemon to converge", seen=lambda: log.read_text()[-2000:])

            # A replace the kill interrupted is finished once (a rebuild it carried is redone: the reconciler
            # can't know the pull completed); then the node is quiet: several polls and passes do nothing.
            async def stable() -> dict[str, Any] | None:
                before = await converged()
                await asyncio.sleep(3)
                after = await converged()
                same = before and after and {n: w.id for n, w in before.items()} == {n: w.id for n, w in after.items()}
                return after if same else None

            settled = await eventually(stable, "the node to settle", seen=lambda: log.read_text()[-2000:])
            # b was never touched (containerd's ids are the names, so its start time tells; the engine refines a
            # start time by a few ms when the start event arrives, a restart would be seconds later)
            assert settled[b].id == first[b].id
            then, now = first[b].started_at, settled[b].started_at
            assert then is None or now is None or abs((now - then).total_seconds()) < 1, "b was left alone"
            await asyncio.sleep(4)
            again = await node.actual()
            assert {n: (w.id, w.started_at) for n, w in again.items()} == {
                n: (w.id, w.started_at) for n, w in settled.items()
            }, f"a={a} b={b} c={c}; daemon log: {log.read_text()[-4000:]}"
            daemon.terminate()
            await daemon.wait()

            # A reboot without network: the containers are gone, the controller is unreachable.
            await node.cleanup()
            await controller.stop()
            daemon = await node.daemon(log)
            back = await eventually(lambda: running([a, b, c]), "the workloads back from the state last fetched")
            assert back[a].labels["io.fogwire.config-hash"] == settled[a].labels["io.fogwire.config-hash"]
        finally:
            if daemon is not None and daemon.returncode is None:
                daemon.terminate()
                await daemon.wait()


@pytest.mark.parametrize("kind", ENGINES[:1])
async def test_controller_commands_prune_and_the_unsupported_ones(
    kind: str, tmp_path: Path, harness_images: images.TestImages
) -> None:
    async with node_on(kind, tmp_path, "legacy") as node:
        controller = node.controller
        await node.provision()
        async with agents.running(node.agent()) as agent:
            await eventually(lambda: asyncio.sleep(0, not controller.pending_changes(node.uuid)), "the first ack")
            controller.command(node.uuid, "prune")
            controller.command(node.uuid, "reboot")
            controller.command(node.uuid, "tunnel")

            async def recorded() -> list[str] | None:
                events = [f"{e['kind']}: {e['message']}" for e in (await agent.status())["events"]]
                wanted = ("controller-prune", "reboot asked", "tunnel asked")
                return events if all(any(w in e for e in events) for w in wanted) else None

            events = await eventually(recorded, "the prune and the notices", seen=lambda: controller.requests[-5:])
            assert any("not supported" in e and "reboot" in e for e in events)
            await eventually(lambda: asyncio.sleep(0, not controller.pending_changes(node.uuid)), "the ack")


@pytest.mark.parametrize("kind", ENGINES[:1])
async def test_deprovision_without_a_daemon_and_with_the_controller_down(
    kind: str, tmp_path: Path, harness_images: images.TestImages
) -> None:
    async with node_on(kind, tmp_path, "legacy") as node:
        controller = node.controller
        node.write_config()
        node.uuid = controller.create_node("arm-node")
        code, out, err = await _fogwire(node, "provision", "--type", "arm", controller.provisioning_key(node.uuid))
        assert code == 0, err
        assert controller.nodes[node.uuid].fog_type == 2 and "fog type 2" in out
        registry = add_harness_registry(controller, harness_images)
        ms = controller.deploy(node.uuid, arm=harness_images.ref_v1, registry_id=registry, cmd=SLEEP)
        async with agents.running(node.agent()):

            async def running() -> bool:
                w = (await node.actual()).get(ms)
                return w is not None and w.state is WorkloadState.RUNNING

            await eventually(running, "the arm image's microservice to run")
        await controller.stop()
        code, out, err = await _fogwire(node, "deprovision")
        assert code == 0, err
        assert "could not be told" in out and "deprovisioned locally" in out
        assert await node.actual() == {}
        assert credentials.load(node.paths.state_dir) is None


@pytest.mark.parametrize("kind", ENGINES[:1])
async def test_a_status_change_is_reported_at_once_not_a_period_later(
    kind: str, tmp_path: Path, harness_images: images.TestImages
) -> None:
    async with node_on(kind, tmp_path, "legacy") as node:
        controller = node.controller
        await node.provision()
        registry = add_harness_registry(controller, harness_images)
        ms = controller.deploy(node.uuid, x86=harness_images.ref_v1, registry_id=registry, cmd=SLEEP)
        async with agents.running(node.agent(status_frequency=60)):

            async def running() -> bool:
                entry = node.reported(ms) if controller.nodes[node.uuid].status else None
                return entry is not None and entry["status"] == "RUNNING"

            await eventually(running, "RUNNING reported")
            reports = controller.nodes[node.uuid].statuses_received
            broken = controller.deploy(
                node.uuid, x86=f"{harness_images.registry}/fogwire/nothing-here:1", registry_id=registry, cmd=SLEEP
            )

            async def failed() -> bool:
                entry = node.reported(broken)
                return entry is not None and entry["status"] == "FAILED"

            # a period is 60 s here: the FAILED status must not wait for it
            await eventually(failed, "the failure reported", timeout=20)
            assert controller.nodes[node.uuid].statuses_received - reports < 10


async def test_a_config_only_change_at_the_controller_reaches_the_workload_without_a_restart(
    tmp_path: Path, harness_images: images.TestImages
) -> None:
    """The controller flags no rebuild for a ``config`` change: the device API signals the workload, which re-reads."""
    import ssl

    import aiohttp

    from fogwire.testing.contract import free_port

    port = free_port()
    async with node_on("docker", tmp_path) as node:
        controller = node.controller
        await node.provision()
        registry = add_harness_registry(controller, harness_images)
        web = controller.deploy(
            node.uuid,
            x86=harness_images.ref_v1,
            arm=harness_images.ref_v1,
            registry_id=registry,
            cmd=SLEEP,
            config={"greeting": "hello"},
        )
        options = {"port": port, "ackTimeoutSeconds": 1.0}
        async with agents.running(node.agent(services=[("device-api", options)])):

            async def running() -> Any:
                w = (await node.actual()).get(web)
                return w if w is not None and w.state is WorkloadState.RUNNING else None

            before = await eventually(running, "the microservice to run")
            projected = node.paths.state_dir / "device-api" / "serviceaccounts" / web
            context = ssl.create_default_context(cafile=str(projected / "ca.crt"))
            headers = {"Authorization": f"Bearer {(projected / 'token').read_text()}"}
            url = f"https://127.0.0.1:{port}/v1/microservices"
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{url}/config", headers=headers, ssl=context) as response:
                    assert (await response.json())["data"]["config"] == {"greeting": "hello"}
                async with http.ws_connect(f"{url}/control", headers=headers, ssl=context) as control:
                    await asyncio.sleep(0.3)
                    controller.update(web, config={"greeting": "bonjour"})
                    message = await control.receive(timeout=15)
                    assert (message.type, message.data) == (aiohttp.WSMsgType.BINARY, b"\x0c")
                    await control.send_bytes(b"\x0b")
                async with http.get(f"{url}/config", headers=headers, ssl=context) as response:
                    assert (await response.json())["data"]["config"] == {"greeting": "bonjour"}
                async with http.get(f"https://127.0.0.1:{port}/metrics", ssl=context) as response:
                    metrics = await response.text()
                assert 'fogwire_source_polls_total{source="controller",result="changed"}' in metrics
                assert 'fogwire_source_updates_total{result="applied"}' in metrics
            after = (await node.actual())[web]
            assert (after.id, after.started_at) == (before.id, before.started_at), "no restart, no new container"
            assert controller.pending_changes(node.uuid) == []
