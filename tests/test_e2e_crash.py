"""The crash test: ``kill -9`` the daemon at 20 random moments of a 10-microservice apply.

The daemon runs as a real process (``python -m fogwire.cli daemon``) on the docker
engine with the ``file`` source. Between kills the desired state changes now and
then, so creations, replacements (with their health gate) and removals are all cut
short at some point. At the end one more daemon must converge: exactly the desired
workloads, each once, with the desired spec, and the stored desired state equal
to the file.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from fogwire.agent import write_documents
from fogwire.api.client import ApiClient
from fogwire.convert import make_converter
from fogwire.engine import NAME_LABEL, EngineContext, WorkloadState
from fogwire.model.agent_config import Profile
from fogwire.model.desired import assemble
from fogwire.plugins import PluginHost
from fogwire.resolve import CONFIG_HASH_LABEL, device_arch, resolve
from fogwire.store import Store
from harness import images, services

SLEEP = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]


def desired(test_images: images.TestImages, prefix: str, round_: int, count: int) -> list[dict[str, Any]]:
    microservices = []
    for i in range(count):
        env = [{"key": "ROUND", "value": str(round_ if i % 2 == 0 else 0)}]
        microservices.append(
            {
                "name": f"{prefix}-{i}",
                "images": {"x86": test_images.ref_v1, "arm": test_images.ref_v1, "registry": 3},
                "container": {"commands": SLEEP, "env": env},
            }
        )
    return [
        test_images.registry_document(),
        {
            "apiVersion": "iofog.org/v3",
            "kind": "Application",
            "metadata": {"name": prefix},
            "spec": {"microservices": microservices},
        },
    ]


def start_daemon(tmp: Path, log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable, "-m", "fogwire.cli", "daemon", "--rollback-grace", "1",
            "--config", str(tmp / "config.yaml"), "--state-dir", str(tmp / "state"),
            "--run-dir", str(tmp / "run"), "--log-dir", str(tmp / "log"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip


async def managed(url: str, agent_id: str, tmp: Path) -> list[Any]:
    context = EngineContext(agent_id, tmp / "state" / "engine", tmp / "run", tmp / "log", url=url)
    engine = PluginHost().engine_factory("docker")(context)
    await engine.start()
    try:
        return await engine.list_managed()
    finally:
        await engine.close()


async def remove_all(url: str, agent_id: str, tmp: Path) -> None:
    context = EngineContext(agent_id, tmp / "state" / "engine", tmp / "run", tmp / "log", url=url)
    engine = PluginHost().engine_factory("docker")(context)
    await engine.start()
    try:
        for w in await engine.list_managed():
            await engine.remove(w.name)
    finally:
        await engine.close()


def test_kill_9_at_random_moments_then_converge(tmp_path: Path, harness_images: images.TestImages) -> None:
    rng = random.Random(int(os.environ.get("FOGWIRE_CRASH_SEED", str(time.time_ns()))))
    url = services.start_dockerd().host
    prefix = f"crash{uuid.uuid4().hex[:5]}"
    agent_id = f"t6-{prefix}"
    desired_file = tmp_path / "desired.yaml"
    config = {
        "currentProfile": "default",
        "profiles": {
            "default": {
                "containerEngine": "docker",
                "containerEngineUrl": url,
                "agentId": agent_id,
                "pruningFrequency": 0,
                "resyncSeconds": 5,
                "configSource": {"name": "file", "options": {"path": str(desired_file), "poll_interval": 0.2}},
            }
        },
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    count = 10
    round_ = 1
    documents = desired(harness_images, prefix, round_, count)
    write_documents(desired_file, documents)
    log_path = tmp_path / "daemon.log"
    try:
        with log_path.open("ab") as log:
            for kill in range(20):
                if kill % 4 == 3:
                    # Change half the microservices (and drop or restore the last one) mid-way.
                    round_ += 1
                    documents = desired(harness_images, prefix, round_, count - (round_ % 2))
                    write_documents(desired_file, documents)
                proc = start_daemon(tmp_path, log)
                time.sleep(rng.uniform(0.4, 3.0))
                assert proc.poll() is None, f"daemon exited early; see {log_path}:\n{log_path.read_text()[-3000:]}"
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
            # Final desired state: all ten, a last change.
            round_ += 1
            documents = desired(harness_images, prefix, round_, count)
            write_documents(desired_file, documents)
            proc = start_daemon(tmp_path, log)
            try:
                client = ApiClient(tmp_path / "run" / "fogwire.sock", tmp_path / "api-token", timeout=60)
                state = assemble(make_converter(), documents, str(desired_file))
                log_mib = int(Profile().workload_log_size)  # the daemon's default log bound is in its hashes
                want = {
                    n: resolve(ms, state, device_arch(), default_log_mib=log_mib).config_hash
                    for n, ms in state.microservices.items()
                }
                deadline = time.monotonic() + 90
                while True:
                    assert proc.poll() is None, log_path.read_text()[-3000:]
                    if client.available():
                        status = client.request("GET", "/v1/system/status")
                        running = {
                            m["name"]: m["config_hash"]
                            for m in status["microservices"]
                            if m["state"] == "running" and m["desired"]
                        }
                        extra = [
                            m["name"] for m in status["microservices"] if not m["desired"] and m["state"] != "absent"
                        ]
                        if running == want and not extra:
                            break
                    assert time.monotonic() < deadline, (
                        f"no convergence: {status if client.available() else 'no socket'}"
                    )
                    time.sleep(0.3)
            finally:
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(30) == 0
        workloads = asyncio.run(managed(url, agent_id, tmp_path))
        names = [w.name for w in workloads]
        assert sorted(names) == sorted(want), "orphaned or missing managed workloads"
        assert len(names) == len(set(names)) == len({w.labels.get(NAME_LABEL, w.name) for w in workloads}), "duplicates"
        assert all(w.state is WorkloadState.RUNNING for w in workloads)
        assert {w.name: w.labels[CONFIG_HASH_LABEL] for w in workloads} == want
        store = Store.open(tmp_path / "state" / "state.db")
        applied = store.load_applied()
        store.close()
        assert applied is not None and applied.documents == list(yaml.safe_load_all(desired_file.read_text()))
    finally:
        asyncio.run(remove_all(url, agent_id, tmp_path))
