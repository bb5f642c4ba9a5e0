"""Fixtures for the docker plugin's tests: the harness's dockerd, registry and test images.

The contract suite's host fixtures (``fogwire_registry``, ``fogwire_image_archives``)
come from the harness fixtures (``harness_images``, ``harness_dockerd``).
"""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest

from fogwire.engine import RegistryAuth
from fogwire.testing import ContractArchives, ContractRegistry, UnmanagedContainers
from harness import images, services


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
