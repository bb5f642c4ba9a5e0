"""Pruning removes an unused image however many names it has."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from pathlib import Path

import podman
import podman.errors
from fogwire_engine_podman.engine import PodmanEngine

from fogwire.engine import EngineContext, RegistryAuth, WorkloadSpec
from harness import images, services


async def test_prune_removes_an_unused_image_with_several_tags(
    tmp_path: Path,
    harness_podman: services.Podman,
    harness_images: images.TestImages,
    podman_client: podman.PodmanClient,
) -> None:
    # podman refuses to delete such an image by id without force; it was left behind
    agent = f"prune-{os.getpid()}-{secrets.token_hex(3)}"
    context = EngineContext(
        agent_id=agent, data_dir=tmp_path, run_dir=tmp_path, log_dir=tmp_path, url=harness_podman.url
    )
    engine = PodmanEngine(context)
    await engine.start()
    try:
        auth = RegistryAuth(harness_images.registry, harness_images.username, harness_images.password, insecure=True)
        await engine.obtain_image(harness_images.ref_v1, auth)
        await engine.obtain_image(harness_images.ref_v2, auth)
        repository = f"{harness_images.registry}/{agent}/extra"
        tagged = await asyncio.to_thread(podman_client.images.get(harness_images.ref_v2).tag, repository, "1")
        assert tagged
        extra = f"{repository}:1"
        assert await engine.image_digest(extra) == await engine.image_digest(harness_images.ref_v2)
        await engine.create(WorkloadSpec(name=f"{agent}-user", image=harness_images.ref_v1, command=("true",)))
        result = await engine.prune_images()
        assert await engine.image_digest(harness_images.ref_v2) is None
        assert await engine.image_digest(extra) is None
        assert {harness_images.ref_v2, extra} <= set(result.removed)
        assert result.reclaimed_bytes > 0
        assert await engine.image_digest(harness_images.ref_v1) is not None, "an image in use was pruned"
    finally:
        with contextlib.suppress(podman.errors.APIError):  # left only if the test failed
            await asyncio.to_thread(podman_client.images.remove, f"{harness_images.registry}/{agent}/extra:1")
        for workload in await engine.list_managed():
            await engine.remove(workload.name)
        await engine.close()
