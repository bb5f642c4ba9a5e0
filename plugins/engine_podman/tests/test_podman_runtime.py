"""A named OCI runtime on podman: what the contract suite doesn't cover (it runs the test runtime and refuses an unknown one)."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable
from pathlib import Path

import podman
import pytest
from fogwire_engine_podman.engine import PodmanEngine

from fogwire.engine import EngineContext, RegistryAuth, WorkloadSpec
from fogwire.errors import EngineError
from harness import images, runtimes, services


def _auth(test_images: images.TestImages) -> RegistryAuth:
    return RegistryAuth(test_images.registry, test_images.username, test_images.password, insecure=True)


async def test_a_runtime_path_is_refused_and_the_default_name_is_the_services_own(
    tmp_path: Path,
    harness_podman: services.Podman,
    harness_images: images.TestImages,
    podman_client: podman.PodmanClient,
) -> None:
    agent = f"rt-{os.getpid()}-{secrets.token_hex(3)}"
    context = EngineContext(
        agent_id=agent, data_dir=tmp_path, run_dir=tmp_path, log_dir=tmp_path, url=harness_podman.url
    )
    engine = PodmanEngine(context)
    await engine.start()
    try:
        await engine.obtain_image(harness_images.ref_v1, _auth(harness_images))
        by_path = WorkloadSpec(name=f"{agent}-path", image=harness_images.ref_v1, runtime=str(runtimes.PATH))
        with pytest.raises(EngineError, match=r"is a path.*\[engine\.runtimes\]") as refused:
            await engine.create(by_path)
        assert "field runtime" in str(refused.value)
        assert await engine.list_managed() == []
        default = WorkloadSpec(name=f"{agent}-runc", image=harness_images.ref_v1, runtime="runc")
        await engine.create(default)
        inspected = await asyncio.to_thread(lambda: podman_client.containers.get(default.name).attrs)
        assert inspected["OCIRuntime"] == "runc"
    finally:
        for workload in await engine.list_managed():
            await engine.remove(workload.name)
        await engine.close()


async def test_a_runtime_added_after_the_service_started_is_named_when_the_workload_starts(
    short_dir: Path,
    own_service_context: Callable[[str], EngineContext],
    harness_images: images.TestImages,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The service read containers.conf before the runtime was there: the start is refused, saying to restart it."""
    runtimes.podman_contract_runtime()  # the host's containers.conf defines the test runtime
    before = short_dir / "containers.conf"  # the service's configuration, without the test runtime
    before.write_text('[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n')
    engine = PodmanEngine(own_service_context("runtime-test"))
    monkeypatch.setenv("CONTAINERS_CONF", str(before))
    await engine.start()
    monkeypatch.delenv("CONTAINERS_CONF")  # the podman that creates the container reads the host's
    try:
        await engine.obtain_image(harness_images.ref_v1, _auth(harness_images))
        spec = WorkloadSpec(name="runtime-later", image=harness_images.ref_v1, runtime=runtimes.NAME)
        await engine.create(spec)
        with pytest.raises(EngineError, match=rf"doesn't know its OCI runtime '{runtimes.NAME}' \(field runtime") as no:
            await engine.start_workload(spec.name)
        assert "restart the service" in str(no.value)
    finally:
        for workload in await engine.list_managed():
            await engine.remove(workload.name)
        await engine.close()
