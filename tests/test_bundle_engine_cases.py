"""Bundle cases that need a real engine plugin (docker): a Koffer bundle loaded and run, and a
bundle with no variant for this architecture refused before anything reaches the engine.

They live here, with the cross-package tests, because core's own tests run in an
environment holding core alone (no engine plugin). They reuse the bundle helpers of
fogwire_bundle.testing.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core" / "tests"))

from fogwire_bundle.errors import BundleError
from fogwire_bundle.importer import EngineTarget, import_bundle
from fogwire_bundle.oci import machine_platform
from fogwire_bundle.testing import Image, layout_bundle, make_koffer_bundle, random_layer, unique

from fogwire.engine import EngineContext, WorkloadSpec, WorkloadState
from fogwire.plugins import PluginHost
from harness import images, services


async def _refused(bundle: Path, target: EngineTarget, work: Path, match: str) -> BundleError:
    with pytest.raises(BundleError, match=match) as caught:
        await import_bundle(bundle, target, work_dir=work)
    assert str(bundle) in str(caught.value)
    assert not work.exists() or list(work.iterdir()) == []
    return caught.value


@pytest.fixture(scope="module")
def koffer(tmp_path_factory: pytest.TempPathFactory, harness_images: images.TestImages) -> Path:
    tmp = tmp_path_factory.mktemp("koffer")
    registry = services.start_registry()
    return make_koffer_bundle(
        tmp, registry, {harness_images.ref_v1: "apps/busybox:1", harness_images.ref_v2: "apps/busybox:2"}
    )


async def test_koffer_bundle_loaded_into_docker_and_run(
    koffer: Path, tmp_path: Path, harness_dockerd: services.Dockerd
) -> None:
    context = EngineContext("bundle-koffer", tmp_path / "d", tmp_path / "r", tmp_path / "l", url=harness_dockerd.host)
    engine = PluginHost().engine_factory("docker")(context)
    await engine.start()
    # Koffer names carry no registry: give them a unique one through the engine's own tag space
    loaded = ["apps/busybox:1", "apps/busybox:2"]
    try:
        result = await import_bundle(koffer, EngineTarget(engine, machine_platform()), work_dir=tmp_path / "work")
        assert {i.status for i in result.images} <= {"loaded", "present"}
        name = f"koffer-{uuid.uuid4().hex[:8]}"
        await engine.create(WorkloadSpec(name=name, image="apps/busybox:2", command=("cat", "/www/index.html")))
        await engine.start_workload(name)
        for _ in range(200):
            info = await engine.inspect(name)
            if info is not None and info.state is WorkloadState.EXITED:
                break
            await asyncio.sleep(0.05)
        output = "\n".join([line.text async for line in engine.logs(name)])
        assert "marker 2" in output
        await engine.remove(name)
    finally:
        await engine.close()
        for ref in loaded:
            subprocess.run(["docker", "-H", harness_dockerd.host, "rmi", "-f", ref], capture_output=True, check=False)


async def test_no_variant_for_this_architecture(
    tmp_path: Path, harness_dockerd: services.Dockerd, harness_images: images.TestImages
) -> None:
    other = "arm64" if machine_platform().architecture != "arm64" else "amd64"
    reference = f"127.0.0.1:1/{unique('bundle-arch')}/app:1"
    bad = layout_bundle(tmp_path, [Image(reference, [random_layer(tmp_path / "l.tar", 1000, seed=5)], arch=other)])
    context = EngineContext(
        "bundle-test", tmp_path / "data", tmp_path / "run", tmp_path / "log", url=harness_dockerd.host
    )
    engine = PluginHost().engine_factory("docker")(context)
    await engine.start()
    try:
        await _refused(
            bad,
            EngineTarget(engine, machine_platform()),
            tmp_path / "work",
            f"is linux/{other}, not {machine_platform()}",
        )
        assert await engine.image_digest(reference) is None
    finally:
        await engine.close()
