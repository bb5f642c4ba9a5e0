"""Bundles into real engines: create from the registry, import through the engine contract, run the image.

The docker engine plugin (harness dockerd) takes every format; the containerd
plugin (harness containerd) takes the squashfs bundle the seed's model carries, and
the docker engine a real Koffer bundle. Images get fresh repository names, so no
other test's images are touched; they are removed afterwards.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from fogwire_bundle.archive import Format
from fogwire_bundle.create import create_bundle
from fogwire_bundle.importer import EngineTarget, import_bundle
from fogwire_bundle.oci import machine_platform
from fogwire_bundle.registry import Credentials, RegistryClient

from fogwire.engine import Engine, EngineContext, WorkloadSpec, WorkloadState
from fogwire.plugins import PluginHost
from harness import images, services

NAMESPACE = "fogwire-bundle-test"


def _skopeo(source: str, dest: str, creds: str) -> None:
    done = subprocess.run(
        ["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
         "--src-creds", creds, "--dest-creds", creds, source, dest],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def source_images(harness_images: images.TestImages) -> tuple[str, str]:
    """busybox :1 and :2 copied to a fresh repository (so engines see new names)."""
    repo = f"{harness_images.registry}/bundle-engine-{uuid.uuid4().hex[:8]}/busybox"
    creds = f"{harness_images.username}:{harness_images.password}"
    for tag in ("1", "2"):
        _skopeo(f"docker://{harness_images.repository}:{tag}", f"docker://{repo}:{tag}", creds)
    return f"{repo}:1", f"{repo}:2"


@pytest.fixture(scope="module")
def bundles(
    tmp_path_factory: pytest.TempPathFactory, harness_images: images.TestImages, source_images: tuple[str, str]
) -> dict[Format, Path]:
    tmp = tmp_path_factory.mktemp("engine-bundles")

    def clients(server: str) -> RegistryClient:
        return RegistryClient(server, Credentials(harness_images.username, harness_images.password), insecure=True)

    out = {}
    for fmt, name in ((Format.TAR, "b.tar"), (Format.TAR_ZSTD, "b.tar.zst"), (Format.SQUASHFS, "b.sqfs")):
        out[fmt] = create_bundle(tmp / name, list(source_images), clients, fmt=fmt).path
    return out


def _remove_images(engine_name: str, refs: list[str], dockerd: str, containerd: str) -> None:
    for ref in refs:
        if engine_name == "docker":
            subprocess.run(["docker", "-H", dockerd, "rmi", "-f", ref], capture_output=True, check=False)
        else:
            subprocess.run(
                ["ctr", "-a", containerd, "-n", NAMESPACE, "images", "rm", ref], capture_output=True, check=False
            )


@pytest_asyncio.fixture
async def engine_for(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Engine, list[str]]]:
    """A started engine of the name the test asks for; loaded references are removed afterwards."""
    name: str = request.param
    if name == "docker":
        address = services.start_dockerd().host
        options: dict[str, str] = {}
    else:
        address = services.start_containerd().url
        options = {"namespace": NAMESPACE}
    context = EngineContext("bundle-test", tmp_path / "d", tmp_path / "r", tmp_path / "l", url=address, options=options)
    for d in (context.data_dir, context.run_dir, context.log_dir):
        d.mkdir(parents=True, exist_ok=True)
    engine = PluginHost().engine_factory(name)(context)
    await engine.start()
    loaded: list[str] = []
    try:
        yield engine, loaded
    finally:
        try:
            for workload in await engine.list_managed():
                await engine.remove(workload.name)
        finally:
            await engine.close()
            dockerd = services.start_dockerd().host if name == "docker" else ""
            containerd = services.start_containerd().address if name != "docker" else ""
            _remove_images(name, loaded, dockerd, containerd)


async def _run(engine: Engine, image: str) -> str:
    """Run ``cat /www/index.html`` in ``image`` through the engine contract; return its output."""
    name = f"bundle-{uuid.uuid4().hex[:8]}"
    await engine.create(WorkloadSpec(name=name, image=image, command=("cat", "/www/index.html")))
    await engine.start_workload(name)
    for _ in range(200):
        info = await engine.inspect(name)
        if info is not None and info.state in (WorkloadState.EXITED, WorkloadState.DEAD):
            break
        await asyncio.sleep(0.05)
    lines = [line.text async for line in engine.logs(name)]
    await engine.remove(name)
    return "\n".join(lines)


async def _round_trip(engine: Engine, loaded: list[str], bundle: Path, refs: tuple[str, str], work: Path) -> None:
    loaded.extend(refs)
    target = EngineTarget(engine, machine_platform())
    first = await import_bundle(bundle, target, work_dir=work)
    assert [i.status for i in first.images] == ["loaded", "loaded"]
    assert [i.target for i in first.images] == list(refs)
    assert list(work.iterdir()) == []
    assert "marker 2" in await _run(engine, refs[1])
    assert "marker" not in await _run(engine, refs[0])
    again = await import_bundle(bundle, target, work_dir=work)
    assert [i.status for i in again.images] == ["present", "present"]
    assert again.bytes_moved == 0


@pytest.mark.parametrize("engine_for", ["docker"], indirect=True)
@pytest.mark.parametrize("fmt", [Format.TAR, Format.TAR_ZSTD, Format.SQUASHFS], ids=lambda f: f.value)
async def test_docker_loads_and_runs_each_format(
    engine_for: tuple[Engine, list[str]],
    fmt: Format,
    bundles: dict[Format, Path],
    source_images: tuple[str, str],
    tmp_path: Path,
) -> None:
    engine, loaded = engine_for
    _remove_images("docker", list(source_images), services.start_dockerd().host, "")
    await _round_trip(engine, loaded, bundles[fmt], source_images, tmp_path / "work")


@pytest.mark.parametrize("engine_for", ["containerd"], indirect=True)
async def test_containerd_loads_and_runs_a_squashfs_bundle(
    engine_for: tuple[Engine, list[str]], bundles: dict[Format, Path], source_images: tuple[str, str], tmp_path: Path
) -> None:
    engine, loaded = engine_for
    _remove_images("containerd", list(source_images), "", services.start_containerd().address)
    await _round_trip(engine, loaded, bundles[Format.SQUASHFS], source_images, tmp_path / "work")


def test_cli_takes_the_engine_socket_from_the_agent_config(
    tmp_path: Path, bundles: dict[Format, Path], source_images: tuple[str, str], harness_dockerd: services.Dockerd
) -> None:
    """``fogwire bundle import FILE --engine docker`` loads where the agent's profile points docker."""
    import json
    import os
    import sys

    config = tmp_path / "config.yaml"
    config.write_text(
        f"currentProfile: edge\nprofiles:\n  edge:\n    containerEngine: docker\n"
        f"    containerEngineUrl: {harness_dockerd.host}\n    agentId: bundle-cli\n"
    )
    _remove_images("docker", list(source_images), harness_dockerd.host, "")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "fogwire.cli", "--config", str(config), "bundle", "import",
             str(bundles[Format.TAR]), "--engine", "docker", "--json", "--force"],
            capture_output=True, text=True, timeout=300, check=False,
            env={**os.environ, "FOGWIRE_STATE_DIR": str(tmp_path / "state")},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["target"] == f"engine docker at {harness_dockerd.host}"
        assert [i["status"] for i in result["images"]] == ["loaded", "loaded"]
        inspect = subprocess.run(
            ["docker", "-H", harness_dockerd.host, "image", "inspect", source_images[1]],
            capture_output=True,
            check=False,
        )
        assert inspect.returncode == 0
    finally:
        _remove_images("docker", list(source_images), harness_dockerd.host, "")
