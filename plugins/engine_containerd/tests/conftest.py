"""Fixtures for the containerd engine's tests: the harness registry and containerd, raw gRPC helpers."""

from __future__ import annotations

import contextlib
import json
import secrets
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fogwire.engine import Engine, EngineContext, RegistryAuth, WorkloadSpec
from fogwire.testing import ContractArchives, ContractRegistry, ContractRuntime, ContractTlsRegistry
from harness import images, runtimes, services


@pytest.fixture(scope="session")
def fogwire_engine_name() -> str:
    """The engine under test."""
    return "containerd"


@pytest.fixture(scope="session")
def fogwire_registry(harness_images: images.TestImages) -> ContractRegistry:
    """The harness registry as the contract suite wants it."""
    return ContractRegistry(
        server=harness_images.registry,
        auth=RegistryAuth(harness_images.registry, harness_images.username, harness_images.password, insecure=True),
        image=harness_images.ref_v1,
        other_image=harness_images.ref_v2,
    )


@pytest.fixture(scope="session")
def fogwire_image_archives(harness_images: images.TestImages) -> ContractArchives:
    """The harness tarballs."""
    return ContractArchives(docker_archive=harness_images.docker_archive, oci_archive=harness_images.oci_archive)


@pytest.fixture(scope="session")
def fogwire_tls_registry(harness_tls_image: images.TlsTestImage) -> ContractTlsRegistry:
    """The harness's TLS registry (a CA of its own) as the contract suite wants it."""
    return images.contract_tls_registry(harness_tls_image)


class RawContainers:
    """Containers made with plain gRPC calls and no fogwire label, in the engine's own containerd."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _make(self, name: str, image: str) -> None:
        from fogwire_engine_containerd import _ref
        from fogwire_engine_containerd._client import containers_pb2, snapshots_pb2, tasks_pb2
        from fogwire_engine_containerd._images import Lease
        from fogwire_engine_containerd._spec import SPEC_TYPE_URL, build_spec
        from google.protobuf import any_pb2

        engine = self.engine
        c = engine.client  # type: ignore[attr-defined]
        store = engine.images  # type: ignore[attr-defined]
        record = store.get(_ref.normalize(image))
        spec = build_spec(
            WorkloadSpec(name=name, image=image, command=("sleep", "3600"), host_network=True),
            store.config(record),
            namespace=c.namespace,
            mounts=[],
            host_files={},
            cgroup_parent="/fogwire-test",
        )
        # under a lease, or containerd's GC may collect the snapshot before the container holds it
        with Lease(c, ttl_s=60) as lease:
            c.snapshots.Prepare(
                snapshots_pb2.PrepareSnapshotRequest(snapshotter="overlayfs", key=name, parent=store.top_chain(record)),
                metadata=c.md(lease),
            )
            container = containers_pb2.Container(
                id=name,
                image=record.name,
                runtime=containers_pb2.Container.Runtime(name="io.containerd.runc.v2"),
                spec=any_pb2.Any(type_url=SPEC_TYPE_URL, value=json.dumps(spec).encode()),
                snapshotter="overlayfs",
                snapshot_key=name,
            )
            c.containers.Create(containers_pb2.CreateContainerRequest(container=container), metadata=c.md(lease))
        mounts = c.snapshots.Mounts(
            snapshots_pb2.MountsRequest(snapshotter="overlayfs", key=name), metadata=c.md()
        ).mounts
        c.tasks.Create(tasks_pb2.CreateTaskRequest(container_id=name, rootfs=mounts), metadata=c.md())
        c.tasks.Start(tasks_pb2.StartRequest(container_id=name), metadata=c.md())

    async def create(self, name: str, image: str) -> None:
        """Create and start ``name`` (``sleep 3600``) without any label."""
        import asyncio

        await asyncio.to_thread(self._make, name, image)

    async def state(self, name: str) -> str | None:
        """containerd's own status word of the task (``running``…), or ``None``."""
        import asyncio

        from fogwire_engine_containerd._client import RpcError, tasks_pb2

        c = self.engine.client  # type: ignore[attr-defined]
        try:
            resp = await asyncio.to_thread(c.tasks.Get, tasks_pb2.GetRequest(container_id=name), metadata=c.md())
        except RpcError:
            return None
        return {1: "created", 2: "running", 3: "stopped", 4: "paused"}.get(resp.process.status, "unknown")

    async def remove(self, name: str) -> None:
        """Kill and delete ``name`` and its snapshot."""
        import asyncio
        import contextlib

        from fogwire_engine_containerd._client import RpcError, StatusCode, containers_pb2, snapshots_pb2, tasks_pb2

        c = self.engine.client  # type: ignore[attr-defined]

        def remove() -> None:
            with contextlib.suppress(RpcError):
                c.tasks.Kill(tasks_pb2.KillRequest(container_id=name, signal=9, all=True), metadata=c.md())
            for _ in range(100):
                try:
                    c.tasks.Delete(tasks_pb2.DeleteTaskRequest(container_id=name), metadata=c.md())
                    break
                except RpcError as error:
                    if error.code() is StatusCode.NOT_FOUND:
                        break
                    import time

                    time.sleep(0.05)
            with contextlib.suppress(RpcError):
                c.containers.Delete(containers_pb2.DeleteContainerRequest(id=name), metadata=c.md())
            with contextlib.suppress(RpcError):
                c.snapshots.Remove(
                    snapshots_pb2.RemoveSnapshotRequest(snapshotter="overlayfs", key=name), metadata=c.md()
                )

        await asyncio.to_thread(remove)


@pytest.fixture
def fogwire_unmanaged(fogwire_engine: Engine) -> RawContainers:
    """Unlabelled containers in the same containerd (and namespace) as the engine under test."""
    return RawContainers(fogwire_engine)


@pytest.fixture(scope="session")
def harness_containerd_url(harness_containerd: services.Containerd) -> Iterator[str]:
    """The external harness containerd's ``unix://`` URL."""
    yield harness_containerd.url


@pytest.fixture
def harness_engine(
    harness_containerd_url: str, fogwire_registry: ContractRegistry
) -> Callable[..., contextlib.AbstractAsyncContextManager[Any]]:
    """Make a started engine with the given options and the test image pulled.

    The engine uses the harness containerd, or with ``own_containerd=True`` an
    embedded containerd of its own. Its workloads are removed and the engine
    closed when the ``async with`` ends.
    """

    @contextlib.asynccontextmanager
    async def make(agent_prefix: str, *, own_containerd: bool = False, **options: Any) -> AsyncIterator[Any]:
        from fogwire_engine_containerd.engine import ContainerdEngine

        with tempfile.TemporaryDirectory(prefix="fwce-") as tmp:
            base = Path(tmp)
            context = EngineContext(
                agent_id=f"{agent_prefix}-{secrets.token_hex(3)}",
                data_dir=base / "data",
                run_dir=base / "run",
                log_dir=base / "log",
                url=None if own_containerd else harness_containerd_url,
                options={**options, "embedded": True} if own_containerd else options,
            )
            engine = ContainerdEngine(context)
            await engine.start()
            try:
                await engine.pull(fogwire_registry.image, fogwire_registry.auth)
                yield engine
            finally:
                for workload in await engine.list_managed():
                    await engine.remove(workload.name)
                await engine.close()

    return make


@pytest.fixture(scope="session")
def fogwire_runtime() -> ContractRuntime:
    """The harness's recording runc wrapper, which this engine knows by name."""
    return runtimes.contract_runtime()


@pytest.fixture(scope="session")
def fogwire_engine_options() -> dict[str, Any]:
    """The engine's options for the contract suite: it knows the harness's test runtime."""
    return runtimes.containerd_options()
