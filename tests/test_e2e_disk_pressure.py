"""Disk pressure: free space under the engine's storage below ``availableDiskThreshold`` prunes.

A real agent on an embedded containerd whose root is on a 128 MiB tmpfs: an image no
microservice uses is pulled, the tmpfs is filled until less than the threshold is
free, and the agent prunes that image (never the desired one) and records
``disk-pressure``; freeing the space records ``disk-pressure-cleared``.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fogwire.agent import Agent, write_documents
from fogwire.engine import RegistryAuth
from fogwire.limits import free_percent
from fogwire.model.agent_config import PluginSelection, Profile
from fogwire.paths import Paths
from fogwire.plugins import PluginHost
from harness import agents, images
from harness.cli import SLEEP

pytestmark = pytest.mark.skipif(
    "containerd" not in agents.installed_engines(), reason="needs fogwire-engine-containerd"
)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def eventually(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)
    return result


async def test_disk_pressure_prunes_unused_images_and_keeps_desired_ones(
    small_disk: Path, tmp_path: Path, harness_images: images.TestImages
) -> None:
    prefix = f"dp{uuid.uuid4().hex[:5]}"
    paths = Paths(tmp_path / "config.yaml", small_disk / "state", tmp_path / "log", tmp_path / "run")
    profile = Profile(
        container_engine="containerd",
        engine_options={"embedded": True, "namespace": prefix},
        agent_id=prefix,
        available_disk_threshold=50,
        config_source=PluginSelection("file", {"path": str(tmp_path / "desired.yaml")}),
    )
    agent = Agent(engine="containerd", profile=profile, paths=paths, plugins=PluginHost(), api_socket=False)
    agent.DISK_PRESSURE_EVERY_S = 0.3
    app = {
        "apiVersion": "iofog.org/v3",
        "kind": "Application",
        "metadata": {"name": "app"},
        "spec": {
            "microservices": [
                {
                    "name": f"{prefix}-kept",
                    "images": {"x86": harness_images.ref_v1, "arm": harness_images.ref_v1, "registry": 3},
                    "container": {"commands": ["sh", "-c", SLEEP]},
                }
            ]
        },
    }
    write_documents(tmp_path / "desired.yaml", [harness_images.registry_document(), app])

    async def events(kind: str) -> list[str]:
        store = agent.running.store
        return [e.message for e in await store.call(store.events, 200) if e.kind == kind]

    async with agents.running(agent):
        engine = agent.running.engine
        await eventually(lambda: _running(agent, f"{prefix}-kept"), "the desired microservice to run", timeout=90)
        auth = RegistryAuth(harness_images.registry, harness_images.username, harness_images.password, insecure=True)
        await engine.pull(harness_images.ref_v2, auth)
        assert await engine.image_digest(harness_images.ref_v2)
        assert not await events("disk-pressure")

        filler = small_disk / "filler"
        with filler.open("wb") as out:  # leave about a third free: under the 50 % threshold
            while free_percent(small_disk) > 35:
                out.write(b"\0" * (1 << 20))
        pressure = await eventually(lambda: events("disk-pressure"), "a disk-pressure event")
        assert "under 50%" in pressure[0] and "pruned" in pressure[0], pressure
        assert await engine.image_digest(harness_images.ref_v2) is None, "the unused image was pruned"
        assert await engine.image_digest(harness_images.ref_v1), "the desired microservice's image was kept"
        assert await _running(agent, f"{prefix}-kept")

        filler.unlink()
        cleared = await eventually(lambda: events("disk-pressure-cleared"), "disk-pressure-cleared")
        assert "over 50% again" in cleared[0]
        write_documents(
            tmp_path / "desired.yaml", [harness_images.registry_document()]
        )  # the workload goes before its embedded containerd
        await eventually(lambda: _gone(agent, f"{prefix}-kept"), "the workload's removal")


async def _running(agent: Agent, name: str) -> bool:
    actual = {w.name: w for w in await agent.running.reconciler.list_actual()}
    return name in actual and actual[name].state.value == "running"


@pytest.mark.parametrize("kind", [k for k in agents.installed_engines() if k != "containerd"])
async def test_docker_and_podman_name_the_storage_their_images_live_on(kind: str, tmp_path: Path) -> None:
    async with agents.harness_engine(kind, tmp_path, f"dp{uuid.uuid4().hex[:5]}") as engine:
        root = await engine.storage_root()
    assert root is not None and root.is_dir(), root
    assert any(root.iterdir()), f"{kind}'s storage root {root} holds its store"


async def _gone(agent: Agent, name: str) -> bool:
    return name not in {w.name for w in await agent.running.reconciler.list_actual()}
