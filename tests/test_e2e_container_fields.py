"""runAsUser and cpuSetCpus end to end, and container fields fogwire rejects rather than drops.

A microservice setting ``runAsUser`` runs as that user on every engine (what the
process really runs as is read from its own output); ``cpuSetCpus`` pins it.
A microservice setting a field fogwire can't honour here (``cdiDevices`` naming a
device no CDI spec on this host defines) is reported with its document and field path and not run,
while the good microservices of the same document are.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fogwire.engine import EngineContext, WorkloadState
from fogwire.plugins import PluginHost
from harness import agents, images, services

ENGINES = agents.installed_engines()

SHOW = "id -u; id -g; grep Cpus_allowed_list /proc/self/status; echo shown; trap 'exit 0' TERM; sleep 3600 & wait"
"""Print uid, gid and allowed CPUs, then run until SIGTERM."""


def documents(test_images: images.TestImages, microservices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        test_images.registry_document(),
        {
            "apiVersion": "iofog.org/v3",
            "kind": "Application",
            "metadata": {"name": "fields"},
            "spec": {"microservices": microservices},
        },
    ]


def microservice(name: str, image: str, **container: Any) -> dict[str, Any]:
    return {
        "name": name,
        "images": {"x86": image, "arm": image, "registry": 3},
        "container": {"commands": ["sh", "-c", SHOW], **container},
    }


class Env(agents.AgentEnv):
    """One test's agent set-up on one engine, and the test images."""

    def __init__(self, kind: str, tmp: Path, test_images: images.TestImages) -> None:
        super().__init__(kind, tmp, agent_prefix="cf", name_prefix="fwcf")
        self.images = test_images

    async def shown(self, name: str) -> list[str]:
        """uid, gid and allowed CPUs the workload ``name`` printed."""
        async with self.engine() as engine:
            deadline = time.monotonic() + 20
            while True:
                lines = [line.text async for line in engine.logs(name)]
                if "shown" in lines:
                    return [t.removeprefix("Cpus_allowed_list:").strip() for t in lines[: lines.index("shown")]]
                assert time.monotonic() < deadline, f"{name} never printed its ids: {lines}"
                await asyncio.sleep(0.2)


@pytest.fixture(params=ENGINES)
async def env(request: pytest.FixtureRequest, tmp_path: Path, harness_images: images.TestImages) -> AsyncIterator[Env]:
    e = Env(request.param, tmp_path, harness_images)
    yield e
    await e.cleanup()


def status_of(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(m for m in status["microservices"] if m["name"] == name)


async def test_run_as_user_and_cpuset_and_unsupported_fields(env: Env) -> None:
    uid, named, plain, bad = env.name("uid"), env.name("named"), env.name("plain"), env.name("bad")
    image = env.images.ref_v1
    ms = [
        microservice(uid, image, runAsUser="65534:65534", cpuSetCpus="0"),
        microservice(named, image, runAsUser="nobody"),
        microservice(plain, image, pidMode="", annotations={}, cdiDevices=[]),  # empty values are fine
        microservice(bad, image, runAsUser="65534", cdiDevices=["nvidia.com/gpu=all"]),
    ]
    async with agents.running(env.agent()) as agent:
        result = await agent.apply(documents(env.images, ms))
        assert sorted((a["action"], a["name"], a["ok"]) for a in result["actions"]) == sorted(
            ("create", n, True) for n in (uid, named, plain)
        )
        assert list(result["problems"]) == [bad]
        message = result["problems"][bad]
        assert message.startswith(
            "apply:DOC#2: spec.microservices[3].container.cdiDevices: no CDI device 'nvidia.com/gpu=all'"
        )
        actual = await env.actual()
        assert set(actual) == {uid, named, plain}
        assert {w.state for w in actual.values()} == {WorkloadState.RUNNING}
        assert await env.shown(uid) == ["65534", "65534", "0"]
        assert (await env.shown(named))[:2] == ["65534", "65534"]
        assert (await env.shown(plain))[:2] == ["0", "0"]
        entry = status_of(await agent.status(), bad)
        assert entry["status"] == "unresolvable"
        assert "container.cdiDevices" in entry["last_error"]

        # A changed runAsUser replaces the workload; fixing the bad one creates it.
        ms[1] = microservice(named, image, runAsUser="0:65534")
        ms[3] = microservice(bad, image, runAsUser="65534")
        result = await agent.apply(documents(env.images, ms))
        assert sorted((a["action"], a["name"], a["ok"], a["reason"]) for a in result["actions"]) == sorted(
            [("replace", named, True, "changed: user"), ("create", bad, True, "no workload yet")]
        )
        assert result["problems"] == {}
        assert (await env.shown(named))[:2] == ["0", "65534"]
        assert (await env.shown(bad))[:2] == ["65534", "65534"]


async def test_a_field_set_on_a_running_microservice_leaves_its_workload_alone(env: Env) -> None:
    name = env.name("svc")
    good = documents(env.images, [microservice(name, env.images.ref_v1)])
    tagged = documents(env.images, [microservice(name, env.images.ref_v1, platform="linux/arm64")])
    async with agents.running(env.agent()) as agent:
        await agent.apply(good)
        before = (await env.actual())[name]
        result = await agent.apply(tagged)
        assert result["actions"] == []
        assert (
            "spec.microservices[0].container.platform: fogwire doesn't support platform" in (result["problems"][name])
        )
        after = (await env.actual())[name]
        assert (after.id, after.started_at, after.state) == (before.id, before.started_at, WorkloadState.RUNNING)


def test_cli_plan_and_apply_through_the_daemon_report_the_bad_microservice(
    tmp_path: Path, harness_images: images.TestImages
) -> None:
    url = services.start_dockerd().host
    prefix = f"cfcli{uuid.uuid4().hex[:5]}"
    agent_id = f"t6-{prefix}"
    good, bad = f"{prefix}-good", f"{prefix}-bad"
    config = {"profiles": {"default": {"containerEngine": "docker", "containerEngineUrl": url, "agentId": agent_id}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    flags = [
        "--config", str(tmp_path / "config.yaml"), "--state-dir", str(tmp_path / "state"),
        "--run-dir", str(tmp_path / "run"), "--log-dir", str(tmp_path / "log"),
    ]  # fmt: skip
    app = tmp_path / "app.yaml"
    ms = [
        microservice(good, harness_images.ref_v1),
        microservice(bad, harness_images.ref_v1, cdiDevices=["nvidia.com/gpu=all"]),
    ]
    app.write_text(yaml.safe_dump_all(documents(harness_images, ms)))
    where = f"{app}:DOC#2: spec.microservices[1].container.cdiDevices: no CDI device 'nvidia.com/gpu=all'"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "fogwire.cli", *args, *flags], capture_output=True, text=True, timeout=120
        )

    log = (tmp_path / "daemon.log").open("wb")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "fogwire.cli", "daemon", "--rollback-grace", "1", *flags],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        sock = tmp_path / "run" / "fogwire.sock"
        deadline = time.monotonic() + 60
        while not _answers(sock):
            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()
            assert time.monotonic() < deadline, "the daemon never opened its socket"
            time.sleep(0.2)
        plan = cli("plan", "-f", str(app), "--json")
        assert plan.returncode == 0, plan.stderr
        planned = json.loads(plan.stdout)
        assert [(a["action"], a["name"]) for a in planned["actions"]] == [("create", good)]
        assert planned["problems"][bad].startswith(where)
        applied = cli("apply", "-f", str(app))
        assert applied.returncode == 1, applied.stdout + applied.stderr
        lines = applied.stdout.splitlines()
        assert any(line.split()[:3] == ["create", good, "ok"] for line in lines), lines
        assert any(line.split()[:3] == ["skip", bad, "ERROR"] and where in line for line in lines), lines
        status = json.loads(cli("status", "--json").stdout)
        states = {m["name"]: m["status"] for m in status["microservices"]}
        assert (states[good], states[bad]) == ("running", "unresolvable")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        log.close()
        _remove_all(url, agent_id, tmp_path)


def _answers(path: Path) -> bool:
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def _remove_all(url: str, agent_id: str, tmp: Path) -> None:
    async def remove() -> None:
        context = EngineContext(agent_id, tmp / "state" / "engine", tmp / "run", tmp / "log", url=url)
        engine = PluginHost().engine_factory("docker")(context)
        await engine.start()
        try:
            for w in await engine.list_managed():
                await engine.remove(w.name)
        finally:
            await engine.close()

    asyncio.run(remove())
