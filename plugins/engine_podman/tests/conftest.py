"""Fixtures for the podman plugin's tests: the harness's podman service, registry and test images.

The contract suite's host fixtures (``fogwire_registry``, ``fogwire_image_archives``)
come from the harness fixtures (``harness_images``, ``harness_podman``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import podman
import podman.errors
import pytest

from fogwire.engine import EngineContext, RegistryAuth
from fogwire.testing import (
    ContractArchives,
    ContractRegistry,
    ContractRuntime,
    ContractTlsRegistry,
    UnmanagedContainers,
)
from harness import images, runtimes, services

ULIMITS = [{"Name": "nofile", "Soft": 1024, "Hard": 1024}, {"Name": "nproc", "Soft": 4096, "Hard": 4096}]


@pytest.fixture(scope="session")
def fogwire_engine_name() -> str:
    """This directory tests the ``podman`` engine."""
    return "podman"


@pytest.fixture(scope="session")
def fogwire_engine_url(harness_podman: services.Podman) -> str:
    """The harness podman service's socket."""
    return harness_podman.url


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


def collect_unclosed() -> list[str]:
    """The ``ResourceWarning`` messages (unclosed sockets, files) a full garbage collection produces now."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


@pytest.fixture
def unclosed_after_gc() -> Callable[[], list[str]]:
    """:func:`collect_unclosed`: a test asserts it leaves nothing for the garbage collector to close.

    Without it, what the collector finalises surfaces in whichever test runs when
    it happens to collect.
    """
    gc.collect()  # earlier tests' garbage is theirs
    return collect_unclosed


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short path (unix sockets) that is unmounted and removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="fwp-", ignore_cleanup_errors=True) as d:
        yield Path(d)
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        for point in sorted((m for m in mounts if m.startswith(d)), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)


@pytest.fixture
def own_service_context(short_dir: Path) -> Callable[[str], EngineContext]:
    """Makes engine contexts whose podman engine starts a service of its own, its storage under ``short_dir``."""

    def make(agent_id: str) -> EngineContext:
        args = ["--root", str(short_dir / "root"), "--runroot", str(short_dir / "runroot")]
        args += ["--tmpdir", str(short_dir / "tmp"), "--runtime", "runc"]
        args += ["--cgroup-manager", "cgroupfs", "--events-backend", "file"]
        return EngineContext(
            agent_id=agent_id,
            data_dir=short_dir / "data",
            run_dir=short_dir / "run",
            log_dir=short_dir / "log",
            options={"serviceArgs": args, "oomWatch": "off"},
        )

    return make


@pytest.fixture
def podman_client(harness_podman: services.Podman) -> Iterator[podman.PodmanClient]:
    """A plain SDK client on the harness service, for what the engine must not see."""
    client = podman.PodmanClient(base_url=harness_podman.url)
    yield client
    client.close()


class LabelFreeContainers:
    """Containers made with the podman SDK directly, carrying no fogwire label at all."""

    def __init__(self, client: podman.PodmanClient) -> None:
        self.client = client

    async def create(self, name: str, image: str) -> None:
        """Create and start ``name`` (sleep) without labels."""

        def run() -> None:
            self.client.containers.create(image, ["sleep", "3600"], name=name, ulimits=ULIMITS).start()

        await asyncio.to_thread(run)

    async def state(self, name: str) -> str | None:
        """podman's state word for ``name``."""

        def get() -> str | None:
            try:
                return str(self.client.containers.get(name).attrs["State"]["Status"])
            except podman.errors.NotFound:
                return None

        return await asyncio.to_thread(get)

    async def remove(self, name: str) -> None:
        """Force-remove ``name`` if present."""

        def rm() -> None:
            try:
                container = self.client.containers.get(name)
                with contextlib.suppress(podman.errors.APIError):
                    container.kill()  # force-remove alone waits the 10 s stop timeout
                container.remove(force=True)
            except podman.errors.NotFound:
                pass

        await asyncio.to_thread(rm)


@pytest.fixture
def fogwire_unmanaged(podman_client: podman.PodmanClient) -> UnmanagedContainers:
    """Label-free containers instead of the suite's default (another agent's)."""
    return LabelFreeContainers(podman_client)


@pytest.fixture(scope="session")
def fogwire_runtime(harness_podman: services.Podman) -> ContractRuntime:
    """The harness's recording runc wrapper, which the harness podman service knows by name (containers.conf)."""
    return runtimes.podman_contract_runtime()
