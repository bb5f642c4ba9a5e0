"""``annotations`` on podman reach the container."""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

import podman
from fogwire_engine_podman.engine import PodmanEngine

from fogwire.engine import EngineContext, RegistryAuth, WorkloadSpec
from harness import images, services


async def test_annotations_reach_the_container(
    tmp_path: Path,
    harness_podman: services.Podman,
    harness_images: images.TestImages,
    podman_client: podman.PodmanClient,
) -> None:
    agent = f"an-{os.getpid()}-{secrets.token_hex(3)}"
    context = EngineContext(
        agent_id=agent, data_dir=tmp_path, run_dir=tmp_path, log_dir=tmp_path, url=harness_podman.url
    )
    engine = PodmanEngine(context)
    await engine.start()
    name = f"{agent}-annotated"
    try:
        auth = RegistryAuth(harness_images.registry, harness_images.username, harness_images.password, insecure=True)
        await engine.obtain_image(harness_images.ref_v1, auth)
        spec = WorkloadSpec(
            name=name,
            image=harness_images.ref_v1,
            command=("sleep", "30"),
            annotations={"io.fogwire.test/role": "sensor"},
        )
        await engine.create(spec)
        inspected = await asyncio.to_thread(lambda: podman_client.containers.get(name).attrs)
        assert inspected["Config"]["Annotations"]["io.fogwire.test/role"] == "sensor"
    finally:
        await engine.remove(name)
        await engine.close()
