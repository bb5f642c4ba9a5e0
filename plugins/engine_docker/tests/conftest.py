"""Fixtures for the docker plugin's tests: the harness's dockerd, registry and test images.

The contract suite's host fixtures (``fogwire_registry``, ``fogwire_image_archives``)
come from the harness fixtures (``harness_images``, ``harness_dockerd``).
"""

from __future__ import annotations

import contextlib
import functools
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from fogwire_engine_docker.engine import DockerEngine

from fogwire.engine import EngineContext, RegistryAuth
from fogwire.testing import (
    ContractArchives,
    ContractRegistry,
    ContractRuntime,
    ContractTlsRegistry,
    UnmanagedContainers,
)
from harness import images, runtimes, services


@pytest.fixture(scope="session")
def fogwire_engine_name() -> str:
    """This directory tests the ``docker`` engine."""
    return "docker"


@pytest.fixture(scope="session")
def fogwire_engine_url(harness_dockerd: services.Dockerd) -> str:
    """The harness dockerd's socket."""
    return harness_dockerd.host


@pytest.fixture(scope="session")
def fogwire_registry(harness_images: images.TestImages) -> ContractRegistry:
    """The harness registry as the contract suite wants it."""
    auth = RegistryAuth(harness_images.registry, harness_images.username, harness_images.password, insecure=True)
    return ContractRegistry(harness_images.registry, auth, harness_images.ref_v1, harness_images.ref_v2)


@pytest.fixture(scope="session")
def fogwire_image_archives(harness_images: images.TestImages) -> ContractArchives:
    """The harness's docker-archive and OCI-layout tarballs."""
    return ContractArchives(harness_images.docker_archive, harness_images.oci_archive)


@pytest.fixture(scope="session")
def fogwire_tls_registry(harness_tls_image: images.TlsTestImage) -> ContractTlsRegistry:
    """The harness's TLS registry (a CA of its own) as the contract suite wants it."""
    return images.contract_tls_registry(harness_tls_image)


@pytest.fixture
def docker_client(harness_dockerd: services.Dockerd) -> Iterator[docker.DockerClient]:
    """A plain SDK client on the harness dockerd, for what the engine must not see."""
    client = docker.DockerClient(base_url=harness_dockerd.host, version="auto")
    yield client
    client.close()


class LabelFreeContainers:
    """Containers made with the docker SDK directly, carrying no fogwire label at all."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client

    async def create(self, name: str, image: str) -> None:
        """Create and start ``name`` (sleep) without labels."""
        import asyncio

        await asyncio.to_thread(self.client.containers.run, image, ["sleep", "3600"], name=name, detach=True)

    async def state(self, name: str) -> str | None:
        """dockerd's state word for ``name``."""
        import asyncio

        def get() -> str | None:
            try:
                return str(self.client.api.inspect_container(name)["State"]["Status"])
            except docker.errors.NotFound:
                return None

        return await asyncio.to_thread(get)

    async def remove(self, name: str) -> None:
        """Force-remove ``name`` if present."""
        import asyncio

        def rm() -> None:
            try:
                self.client.api.remove_container(name, force=True)
            except docker.errors.NotFound:
                pass

        await asyncio.to_thread(rm)


@pytest.fixture
def fogwire_unmanaged(docker_client: docker.DockerClient) -> UnmanagedContainers:
    """Label-free containers instead of the suite's default (another agent's)."""
    return LabelFreeContainers(docker_client)


@contextlib.asynccontextmanager
async def _started_engine(
    tmp_path: Path,
    dockerd: services.Dockerd,
    test_images: images.TestImages,
    prefix: str,
    options: dict[str, Any] | None = None,
) -> AsyncIterator[DockerEngine]:
    """A started engine of an agent id of its own with the test image pulled; its workloads go after."""
    context = EngineContext(
        agent_id=f"{prefix}-{secrets.token_hex(3)}",
        data_dir=tmp_path,
        run_dir=tmp_path,
        log_dir=tmp_path,
        url=dockerd.host,
        options=options or {},
    )
    engine = DockerEngine(context)
    await engine.start()
    try:
        auth = RegistryAuth(test_images.registry, test_images.username, test_images.password, insecure=True)
        await engine.obtain_image(test_images.ref_v1, auth)
        yield engine
    finally:
        for workload in await engine.list_managed():
            await engine.remove(workload.name)
        await engine.close()


@pytest.fixture
def docker_engine(
    tmp_path: Path, harness_dockerd: services.Dockerd, harness_images: images.TestImages
) -> Callable[..., contextlib.AbstractAsyncContextManager[DockerEngine]]:
    """``async with docker_engine(prefix, options) as engine``: a started engine of an agent id of its own."""
    return functools.partial(_started_engine, tmp_path, harness_dockerd, harness_images)


@pytest.fixture(scope="session")
def fogwire_runtime() -> ContractRuntime:
    """The harness's recording runc wrapper, which this engine knows by name."""
    return runtimes.contract_runtime()
