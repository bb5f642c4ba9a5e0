"""Bad bundles: each is a clear error naming the file and the problem, and nothing is left behind.

Every test imports into the real harness registry under a fresh prefix and checks
afterwards that no repository appeared there and the staging directory is empty.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fogwire_bundle.archive import Format, pack
from fogwire_bundle.errors import BundleError
from fogwire_bundle.importer import RegistryTarget, Target, import_bundle
from fogwire_bundle.layout import LayoutDir
from fogwire_bundle.oci import canonical_json, sha256_hex
from fogwire_bundle.testing import (
    Image,
    build_layout,
    client_for,
    entry,
    layout_bundle,
    make_koffer_bundle,
    prefix_fixture,
    random_layer,
    rewrite_tar,
)

from harness import images, services

prefix = prefix_fixture("bundle-bad")


@pytest.fixture
def target(harness_registry: services.Registry, prefix: str, tmp_path: Path) -> Iterator[RegistryTarget]:
    with client_for(harness_registry) as client:
        yield RegistryTarget(client, prefix, tmp_path / "resume.json")


@pytest.fixture
def good(tmp_path: Path) -> Path:
    """A valid two-image bundle (tar) whose images share a layer."""
    base = random_layer(tmp_path / "base.tar", 300_000, seed=21)
    top = random_layer(tmp_path / "top.tar", 50_000, seed=22, name="top")
    return layout_bundle(tmp_path, [Image("127.0.0.1:1/app:1", [base]), Image("127.0.0.1:1/app:2", [base, top])])


def _layer_names(bundle: Path) -> list[str]:
    with tarfile.open(bundle) as tar:
        return [m.name for m in tar.getmembers() if m.name.startswith("blobs/sha256/") and m.size > 10_000]


async def _refused(bundle: Path, target: Target, work: Path, match: str) -> BundleError:
    with pytest.raises(BundleError, match=match) as caught:
        await import_bundle(bundle, target, work_dir=work)
    assert str(bundle) in str(caught.value)
    assert not work.exists() or list(work.iterdir()) == []
    return caught.value


def _nothing_pushed(registry: services.Registry, prefix: str) -> None:
    with client_for(registry) as client:
        response, _ = client.request("GET", "/v2/_catalog?n=1000")
    assert [r for r in json.loads(response.body)["repositories"] if r.startswith(prefix)] == []


async def test_tampered_blob(
    tmp_path: Path, good: Path, target: RegistryTarget, harness_registry: services.Registry, prefix: str
) -> None:
    victim = _layer_names(good)[0]

    def flip(info: tarfile.TarInfo, data: bytes | None) -> list[tuple[tarfile.TarInfo, bytes | None]]:
        if info.name == victim and data is not None:
            data = data[:1000] + bytes([data[1000] ^ 0xFF]) + data[1001:]
        return [(info, data)]

    bad = rewrite_tar(good, tmp_path / "tampered.tar", flip)
    error = await _refused(bad, target, tmp_path / "work", "tampered or corrupt")
    assert victim.rsplit("/", 1)[1] in str(error)
    _nothing_pushed(harness_registry, prefix)


async def test_missing_blob(
    tmp_path: Path, good: Path, target: RegistryTarget, harness_registry: services.Registry, prefix: str
) -> None:
    victim = _layer_names(good)[0]
    bad = rewrite_tar(good, tmp_path / "missing.tar", lambda i, d: [] if i.name == victim else [(i, d)])
    error = await _refused(bad, target, tmp_path / "work", "is missing from the bundle")
    assert victim.rsplit("/", 1)[1] in str(error)
    _nothing_pushed(harness_registry, prefix)


async def test_truncated_archive(
    tmp_path: Path, good: Path, target: RegistryTarget, harness_registry: services.Registry, prefix: str
) -> None:
    bad = tmp_path / "truncated.tar"
    data = good.read_bytes()
    bad.write_bytes(data[: len(data) * 6 // 10])
    await _refused(bad, target, tmp_path / "work", "truncated")
    _nothing_pushed(harness_registry, prefix)


async def test_entry_with_dotdot(
    tmp_path: Path, good: Path, target: RegistryTarget, harness_registry: services.Registry, prefix: str
) -> None:
    bad = rewrite_tar(
        good,
        tmp_path / "dotdot.tar",
        lambda i, d: [(i, d), entry("blobs/../../escaped", b"x")] if i.name == "index.json" else [(i, d)],
    )
    await _refused(bad, target, tmp_path / "work", r"entry 'blobs/\.\./\.\./escaped' contains '\.\.'")
    assert not (tmp_path / "escaped").exists()
    _nothing_pushed(harness_registry, prefix)


async def test_entry_with_absolute_path(
    tmp_path: Path, good: Path, target: RegistryTarget, harness_registry: services.Registry, prefix: str
) -> None:
    outside = tmp_path / "abs-target"
    bad = rewrite_tar(
        good,
        tmp_path / "abs.tar",
        lambda i, d: [entry(str(outside), b"x"), (i, d)] if i.name == "index.json" else [(i, d)],
    )
    await _refused(bad, target, tmp_path / "work", "has an absolute path")
    assert not outside.exists()
    _nothing_pushed(harness_registry, prefix)


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param(
            ("blobs/sha256/evil", tarfile.SYMTYPE, "/etc/passwd", "is a symlink to '/etc/passwd'"), id="symlink"
        ),
        pytest.param(("dev-null", tarfile.CHRTYPE, "", "is a device"), id="device"),
        pytest.param(("blobs/sha256/hard", tarfile.LNKTYPE, "index.json", "is a hard link"), id="hardlink"),
    ],
)
async def test_symlink_or_device_entry(
    tmp_path: Path,
    good: Path,
    target: RegistryTarget,
    harness_registry: services.Registry,
    prefix: str,
    kind: tuple[str, bytes, str, str],
) -> None:
    name, type_, link, message = kind
    bad = rewrite_tar(
        good,
        tmp_path / "special.tar",
        lambda i, d: [(i, d), entry(name, None, type_, link)] if i.name == "index.json" else [(i, d)],
    )
    await _refused(bad, target, tmp_path / "work", message)
    _nothing_pushed(harness_registry, prefix)


async def test_symlink_in_squashfs(
    tmp_path: Path, target: RegistryTarget, harness_registry: services.Registry, prefix: str
) -> None:
    root = tmp_path / "layout"
    build_layout(root, [Image("127.0.0.1:1/app:1", [random_layer(tmp_path / "l.tar", 1000, seed=3)])])
    os.symlink("/etc/shadow", root / "blobs" / "sha256" / "shadow")
    bad = tmp_path / "link.sqfs"
    pack(root, bad, Format.SQUASHFS)
    await _refused(bad, target, tmp_path / "work", "is a symlink to '/etc/shadow'")
    _nothing_pushed(harness_registry, prefix)


async def test_manifest_pointing_outside_the_layout(
    tmp_path: Path, target: RegistryTarget, harness_registry: services.Registry, prefix: str
) -> None:
    root = tmp_path / "layout"
    (image,) = build_layout(root, [Image("127.0.0.1:1/app:1", [random_layer(tmp_path / "l.tar", 1000, seed=4)])])
    layout = LayoutDir(root)
    manifest = layout.read_json(image.digest)
    manifest["layers"][0]["digest"] = "sha256:../../../../../../etc/passwd"
    data = canonical_json(manifest)
    digest = sha256_hex(data)
    layout.put_bytes(digest, data)
    index = json.loads((root / "index.json").read_text())
    index["manifests"][0].update(digest=digest, size=len(data))
    (root / "index.json").write_text(json.dumps(index))
    (root / "fogwire-bundle.json").unlink()
    bad = tmp_path / "outside.tar"
    pack(root, bad, Format.TAR)
    await _refused(
        bad, target, tmp_path / "work", r"digest 'sha256:\.\./.*' is not sha256:<64 hex digits>; it would point outside"
    )
    _nothing_pushed(harness_registry, prefix)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, unmounted afterwards."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


async def test_full_disk(
    tmp_path: Path, small_disk: Path, target: RegistryTarget, harness_registry: services.Registry, prefix: str
) -> None:
    # zstd: the blobs must be unpacked into the staging directory (a plain tar is read in place)
    layer = random_layer(tmp_path / "l.tar", 3 << 20, seed=6)
    bundle = layout_bundle(tmp_path, [Image("127.0.0.1:1/app:1", [layer])], Format.TAR_ZSTD, "bundle.tar.zst")
    error = await _refused(bundle, target, small_disk / "work", "no space left on device")
    assert str(small_disk / "work") in str(error)
    assert list((small_disk / "work").iterdir()) == []
    _nothing_pushed(harness_registry, prefix)


async def test_empty_bundle(
    tmp_path: Path, target: RegistryTarget, harness_registry: services.Registry, prefix: str
) -> None:
    empty = tmp_path / "empty.tar.zst"
    empty.touch()
    await _refused(empty, target, tmp_path / "work", r"is empty \(0 bytes\)")
    _nothing_pushed(harness_registry, prefix)


async def test_koffer_bundle_whose_sha256_does_not_match(
    tmp_path: Path,
    harness_images: images.TestImages,
    target: RegistryTarget,
    harness_registry: services.Registry,
    prefix: str,
) -> None:
    bundle = make_koffer_bundle(tmp_path, harness_registry, {harness_images.ref_v1: "apps/busybox:1"})
    with bundle.open("ab") as f:  # altered after sha256sum ran: still a readable tar
        f.write(b"\0" * 10240)
    error = await _refused(bundle, target, tmp_path / "work", "koffer-bundle.apps.tar.sha256 says")
    assert "altered or damaged" in str(error)
    _nothing_pushed(harness_registry, prefix)
    shutil.rmtree(tmp_path / "work", ignore_errors=True)


async def test_plain_tar_needs_no_staging_space(
    tmp_path: Path, small_disk: Path, target: RegistryTarget, harness_registry: services.Registry, prefix: str
) -> None:
    """The counterpart of the full disk: a plain tar's blobs are verified and pushed where they lie."""
    layer = random_layer(tmp_path / "l.tar", 3 << 20, seed=6)
    bundle = layout_bundle(tmp_path, [Image(f"127.0.0.1:1/{prefix}/app:1", [layer])])
    result = await import_bundle(bundle, target, work_dir=small_disk / "work")
    assert result.bytes_moved > 3 << 20 and [i.status for i in result.images] == ["pushed"]
    assert list((small_disk / "work").iterdir()) == []
