"""The daemon's bundle watch: a microservice waiting for an image starts once a bundle brings it.

Real agent, real docker engine (harness dockerd), a real bundle created from the
harness registry. The microservice uses registry ``local`` (never pull), so until the
bundle lands it fails with "not present locally"; after the bundle is dropped into
``bundle-watch`` service it must run without any change to the desired state.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from fogwire_bundle.archive import Format
from fogwire_bundle.create import create_bundle
from fogwire_bundle.registry import Credentials, RegistryClient

from fogwire.agent import Agent, write_documents
from fogwire.engine import EngineContext, WorkloadState
from fogwire.model.agent_config import PluginSelection, Profile
from fogwire.paths import Paths
from fogwire.plugins import PluginHost
from harness import images, services


async def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.3)


async def test_microservice_waiting_for_an_image_starts_when_a_bundle_lands(
    tmp_path: Path, harness_images: images.TestImages
) -> None:
    run_id = uuid.uuid4().hex[:8]
    reference = f"{harness_images.registry}/bundle-wait-{run_id}/busybox:1"
    creds = f"{harness_images.username}:{harness_images.password}"
    copied = subprocess.run(
        ["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
         "--src-creds", creds, "--dest-creds", creds, f"docker://{harness_images.repository}:1", f"docker://{reference}"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert copied.returncode == 0, copied.stderr

    def client(server: str) -> RegistryClient:
        return RegistryClient(server, Credentials(harness_images.username, harness_images.password), insecure=True)

    bundle = create_bundle(tmp_path / "made" / f"wait-{run_id}.tar", [reference], client, fmt=Format.TAR).path

    drop = tmp_path / "drop"
    desired_file = tmp_path / "desired.yaml"
    name = f"fwbw{run_id}"
    write_documents(
        desired_file,
        [
            {
                "apiVersion": "iofog.org/v3",
                "kind": "Microservice",
                "metadata": {"name": name},
                "spec": {
                    "images": {"x86": reference, "arm": reference, "registry": "local"},
                    "container": {"commands": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]},
                },
            }
        ],
    )
    dockerd = services.start_dockerd().host
    agent_id = f"bw-{run_id}"
    paths = Paths(tmp_path / "config.yaml", tmp_path / "state", tmp_path / "log", tmp_path / "run")
    profile = Profile(
        container_engine="docker",
        container_engine_url=dockerd,
        agent_id=agent_id,
        config_source=PluginSelection("file", {"path": str(desired_file), "poll_interval": 0.2}),
        services=(PluginSelection("bundle-watch", {"dir": str(drop)}),),
    )
    host = PluginHost()
    agent = Agent(profile=profile, paths=paths, plugins=host, api_socket=False, backoff_cap_s=30.0)
    engine = host.engine_factory("docker")(
        EngineContext(
            agent_id=agent_id, data_dir=tmp_path / "e", run_dir=tmp_path / "r", log_dir=tmp_path / "l", url=dockerd
        )
    )
    await engine.start()
    task = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(agent.started.wait(), 60)

        async def failing() -> bool:
            status = await agent.status(refresh=False)
            entry = next((m for m in status["microservices"] if m["name"] == name), None)
            return bool(entry and entry.get("last_error") and "not present locally" in entry["last_error"])

        await wait_for(failing, 30, "the microservice to fail for want of its image")
        assert await engine.list_managed() == []

        drop.mkdir(exist_ok=True)
        (drop / f"{bundle.name}.partial").write_bytes(bundle.read_bytes())
        (drop / f"{bundle.name}.partial").rename(drop / bundle.name)

        async def running() -> bool:
            info = await engine.inspect(name)
            return info is not None and info.state is WorkloadState.RUNNING

        await wait_for(running, 60, "the microservice to run once the bundle landed")
        assert (drop / "done" / bundle.name).exists()
    finally:
        agent.stop()
        await asyncio.wait_for(task, 60)
        for workload in await engine.list_managed():
            await engine.remove(workload.name)
        subprocess.run(["docker", "-H", dockerd, "rmi", "-f", reference], capture_output=True, check=False)
        await engine.close()
