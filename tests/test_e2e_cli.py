"""``fogwire daemon`` as a process, driven by the CLI over its control socket.

Covers: READY/WATCHDOG/STOPPING over a real ``$NOTIFY_SOCKET`` datagram socket;
the socket's mode; ``apply`` (a bad file changes nothing), ``plan`` with reasons,
``status --json``, ``logs``, ``delete``; SIGTERM stops cleanly and leaves the
workloads running, and ``apply`` without a daemon writes the watched file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from fogwire.engine import EngineContext, WorkloadState
from fogwire.plugins import PluginHost
from harness import images, services
from harness.cli import Cli, app


def test_daemon_and_cli(tmp_path: Path, harness_images: images.TestImages) -> None:
    url = services.start_dockerd().host
    prefix = f"cli{uuid.uuid4().hex[:5]}"
    agent_id = f"t6-{prefix}"
    a, b = f"{prefix}-a", f"{prefix}-b"
    desired_file = tmp_path / "desired.yaml"
    config = {
        "profiles": {
            "default": {
                "containerEngine": "docker",
                "containerEngineUrl": url,
                "agentId": agent_id,
                "watchdogEnabled": True,
                "configSource": {"name": "file", "options": {"path": str(desired_file)}},
            }
        }
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    cli = Cli(tmp_path)
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(30)
    env = {**os.environ, "PYTHONFAULTHANDLER": "1", "NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "1000000"}
    log = (tmp_path / "daemon.log").open("wb")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "fogwire.cli", "daemon", "--rollback-grace", "1", *cli.flags],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def engine() -> Any:
        context = EngineContext(agent_id, tmp_path / "state" / "engine", tmp_path / "run", tmp_path / "log", url=url)
        return PluginHost().engine_factory("docker")(context)

    try:
        assert notify.recv(100) == b"READY=1"
        assert notify.recv(100) == b"WATCHDOG=1"
        # From here on nobody reads the notify socket: its queue fills and must not block the daemon.
        sock = tmp_path / "run" / "fogwire.sock"
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "state" / "state.db").stat().st_mode) == 0o600

        # A bad file is rejected whole, with the problem, and changes nothing.
        bad = app(harness_images, [a])
        bad[1]["spec"]["microservices"][0]["container"]["ports"] = [{"internal": 80, "external": 99999}]
        proc = cli("apply", "-f", cli.write("bad.yaml", bad), ok=False)
        assert proc.returncode == 2
        assert "ports[0].external" in proc.stderr
        assert not desired_file.exists()

        good = cli.write("good.yaml", app(harness_images, [a, b]))
        plan = json.loads(cli("plan", "-f", good, "--json").stdout)
        assert sorted((x["action"], x["name"]) for x in plan["actions"]) == [("create", a), ("create", b)]
        out = cli("apply", "-f", good).stdout
        assert f"create   {a}" in out
        assert list(yaml.safe_load_all(desired_file.read_text())) == list(yaml.safe_load_all(Path(good).read_text()))

        changed = cli.write("changed.yaml", app(harness_images, [a, b], value="2"))
        plan = json.loads(cli("plan", "-f", changed, "--json").stdout)
        assert sorted((x["action"], x["name"], x["reason"]) for x in plan["actions"]) == [
            ("replace", a, "changed: env"),
            ("replace", b, "changed: env"),
        ]
        status = json.loads(cli("status", "--json").stdout)
        assert status["daemon"] == "running"
        assert {m["name"]: (m["status"], m["state"]) for m in status["microservices"]} == {
            a: ("running", "running"),
            b: ("running", "running"),
        }
        assert f"{a}  yes" in cli("status").stdout

        deadline = time.monotonic() + 15
        while f"started {a}-1" not in cli("logs", a).stdout:
            assert time.monotonic() < deadline
            time.sleep(0.3)

        out = cli("delete", b).stdout
        assert f"remove   {b}" in out
        names = {w.name for w in asyncio.run(_list(engine()))}
        assert names == {a}

        notify.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while notify.recv(100):
                pass
        notify.settimeout(10)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
        while notify.recv(100) != b"STOPPING=1":  # WATCHDOG=1 may come first; a timeout fails the test
            pass
        assert not sock.exists()
        workloads = asyncio.run(_list(engine()))
        assert [(w.name, w.state) for w in workloads] == [(a, WorkloadState.RUNNING)]

        # No daemon: apply writes the watched file; status reads the engine directly.
        out = cli("apply", "-f", changed).stdout
        assert "no daemon running" in out
        assert list(yaml.safe_load_all(desired_file.read_text())) == list(yaml.safe_load_all(Path(changed).read_text()))
        status = json.loads(cli("status", "--json").stdout)
        assert status["daemon"] == "not running"
        assert [m["name"] for m in status["microservices"] if m["state"] == "running"] == [a]
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGABRT)  # with PYTHONFAULTHANDLER set, the log shows where it hung
            time.sleep(1)
            daemon.kill()
            daemon.wait()
        notify.close()
        log.close()
        asyncio.run(_remove_all(engine()))


async def _list(engine: Any) -> list[Any]:
    await engine.start()
    try:
        return list(await engine.list_managed())
    finally:
        await engine.close()


async def _remove_all(engine: Any) -> None:
    await engine.start()
    try:
        for w in await engine.list_managed():
            await engine.remove(w.name)
    finally:
        await engine.close()
