"""Koffer bundles (a tar of a registry:2 storage tree, ``.sha256`` beside it) import like our own.

The bundle is made the way Koffer makes it: ``skopeo copy --format v2s2`` into a
real ``docker-registry`` whose storage sits under ``deploy/``, ``tar -C ~ deploy``
and ``sha256sum``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from fogwire_bundle.importer import RegistryTarget, import_bundle
from fogwire_bundle.oci import DOCKER_MANIFEST, machine_platform
from fogwire_bundle.reader import stage
from fogwire_bundle.testing import client_for, make_koffer_bundle, prefix_fixture

from harness import images, services


@pytest.fixture(scope="module")
def koffer(tmp_path_factory: pytest.TempPathFactory, harness_images: images.TestImages) -> Path:
    tmp = tmp_path_factory.mktemp("koffer")
    registry = services.start_registry()
    return make_koffer_bundle(
        tmp, registry, {harness_images.ref_v1: "apps/busybox:1", harness_images.ref_v2: "apps/busybox:2"}
    )


prefix = prefix_fixture("bundle-koffer")


def test_koffer_tree_is_read_and_verified(koffer: Path, tmp_path: Path) -> None:
    with subprocess.Popen(["tar", "-tf", str(koffer)], stdout=subprocess.PIPE, text=True) as listing:
        names = listing.communicate()[0].split()
    assert any(n.startswith("deploy/mirror/docker/registry/v2/blobs/sha256/") for n in names)
    staged = stage(koffer, tmp_path)
    assert staged.kind == "koffer" and staged.sidecar_checked
    assert sorted(i.reference for i in staged.images) == ["apps/busybox:1", "apps/busybox:2"]
    assert {i.media_type for i in staged.images} == {DOCKER_MANIFEST}
    assert {i.platforms for i in staged.images} == {(str(machine_platform()),)}


async def test_koffer_bundle_pushed_to_a_registry(
    koffer: Path, tmp_path: Path, harness_registry: services.Registry, prefix: str
) -> None:
    with client_for(harness_registry) as client:
        target = RegistryTarget(client, prefix, tmp_path / "resume.json")
        result = await import_bundle(koffer, target, work_dir=tmp_path / "work")
        assert result.kind == "koffer" and [i.status for i in result.images] == ["pushed", "pushed"]
        for image in result.images:
            repository, tag = image.target.split("/", 1)[1].rsplit(":", 1)
            assert repository == f"{prefix}/apps/busybox"
            assert client.manifest_digest(repository, tag) == image.digest
        again = await import_bundle(koffer, target, work_dir=tmp_path / "work")
        assert again.bytes_moved == 0
