"""The agent config operators have: edgelet's and the Java agent's keys, ``fogwire config set|switch``, SIGHUP.

A real daemon on dockerd with the ``file`` source: ``config set`` with edgelet's long
and short flag names writes the current profile (validated whole: a bad value changes
nothing, exit 2) and tells the daemon, which applies what can change live and names
what needs a restart; SIGHUP after an edit of the file does the same (``agentName``
set: the microservice for another agent goes); keys with no effect are reported once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from harness import images, services
from harness.cli import SLEEP, Cli


def _documents(test_images: images.TestImages, mine: str, theirs: str) -> list[dict[str, Any]]:
    def ms(name: str, agent: str) -> dict[str, Any]:
        return {
            "name": name,
            "agent": {"name": agent},
            "images": {"x86": test_images.ref_v1, "arm": test_images.ref_v1, "registry": 3},
            "container": {"commands": ["sh", "-c", SLEEP], "env": [{"key": "NAME", "value": name}]},
        }

    return [
        test_images.registry_document(),
        {
            "apiVersion": "iofog.org/v3",
            "kind": "Application",
            "metadata": {"name": "fleet"},
            "spec": {"microservices": [ms(mine, "edge-1"), ms(theirs, "edge-2")]},
        },
    ]


def test_config_set_switch_and_sighup(tmp_path: Path, harness_images: images.TestImages) -> None:
    url = services.start_dockerd().host
    prefix = f"cfg{uuid.uuid4().hex[:5]}"
    mine, theirs = f"{prefix}-mine", f"{prefix}-theirs"
    desired = tmp_path / "desired.yaml"
    desired.write_text(yaml.safe_dump_all(_documents(harness_images, mine, theirs)))
    config_file = tmp_path / "config.yaml"
    profile = {
        "containerEngine": "docker",
        "containerEngineUrl": url,
        "agentId": f"t16-{prefix}",
        "resyncSeconds": 1,
        "configSource": {"name": "file", "options": {"path": str(desired)}},
        "gpsMode": "auto",  # no effect on a fogwire node: accepted, reported once
        "diskConsumptionLimit": 50,  # the Java agent's name for diskLimit
    }
    other = {**profile, "containerEngine": "podman", "containerEngineUrl": services.engine_url("podman")}
    config_file.write_text(
        yaml.safe_dump({"currentProfile": "default", "profiles": {"default": profile, "other": other}})
    )
    cli = Cli(tmp_path)
    log_path = tmp_path / "daemon.log"
    log = log_path.open("wb")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "fogwire.cli", "daemon", "--rollback-grace", "1", *cli.flags],
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def running() -> set[str]:
        return {m["name"] for m in cli.json("status")["microservices"] if m["state"] == "running"}

    def eventually(check: Any, what: str, timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            assert daemon.poll() is None, log_path.read_text()[-3000:]
            try:
                result = check()
            except (AssertionError, json.JSONDecodeError):
                result = None
            if result:
                return result
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {log_path.read_text()[-2000:]}"
            time.sleep(0.3)

    try:
        eventually(lambda: running() == {mine, theirs}, "both microservices (no agentName: all run here)")
        assert "config keys accepted with no effect on a fogwire node: gpsMode" in log_path.read_text()

        # edgelet's long and short flag names; the daemon applies them live
        out = cli("config", "set", "--cf", "30").stdout
        assert "changeFrequency = 30 in profile default" in out
        out = cli("config", "set", "--pruning-frequency", "0").stdout
        assert "the daemon applied: pruningFrequency" in out
        out = cli("config", "set", "memory-limit-mib", "900").stdout
        assert "memoryLimit = 900" in out and "the daemon applied: memoryLimit" in out
        saved = yaml.safe_load(config_file.read_text())["profiles"]["default"]
        assert (saved["changeFrequency"], saved["pruningFrequency"], saved["memoryLimit"]) == (30, 0, 900)
        assert saved["diskConsumptionLimit"] == 50  # the operator's own spelling is kept in the file

        # a bad value: exit 2 naming the key, nothing written, the daemon untouched
        before = config_file.read_text()
        bad = cli("config", "set", "statusFrequency", "often", ok=False)
        assert bad.returncode == 2
        assert "profiles.default.statusFrequency" in bad.stderr
        assert cli("config", "set", "nosuchkey", "1", ok=False).returncode == 2
        assert config_file.read_text() == before

        # SIGHUP after an edit: agentName makes the other agent's microservice go
        data = yaml.safe_load(config_file.read_text())
        data["profiles"]["default"]["agentName"] = "edge-1"
        config_file.write_text(yaml.safe_dump(data))
        daemon.send_signal(signal.SIGHUP)
        eventually(lambda: running() == {mine}, "the other agent's microservice to go")
        status = cli.json("status")
        assert status["elsewhere"] == {theirs: "edge-2"}
        reloaded = [e["message"] for e in status["events"] if e["kind"] == "config-reloaded"]
        assert any("agentName" in m for m in reloaded), reloaded

        # a switch to a profile on another engine: live keys applied, the engine named as needing a restart
        switched = cli.json("config", "switch", "other")
        assert "containerEngine" in switched["daemon"]["needRestart"]
        assert yaml.safe_load(config_file.read_text())["currentProfile"] == "other"
        assert daemon.poll() is None and running() == {mine}  # still on docker until restarted
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(30)
        log.close()
        from fogwire.engine import EngineContext
        from fogwire.plugins import PluginHost

        async def remove_all() -> None:
            context = EngineContext(
                f"t16-{prefix}", tmp_path / "state" / "engine", tmp_path / "run", tmp_path / "log", url=url
            )
            engine = PluginHost().engine_factory("docker")(context)
            await engine.start()
            try:
                for workload in await engine.list_managed():
                    await engine.remove(workload.name)
            finally:
                await engine.close()

        import asyncio

        asyncio.run(remove_all())
