"""Bundles round-trip through the real registry: create from it, import back under another path.

Every format (tar, tar.zst, squashfs); blobs shared by images stored once;
multi-architecture indexes kept whole or filtered; re-import moves nothing; an
interrupted push resumes inside the blob; memory stays flat on a large layer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fogwire_bundle.archive import Format
from fogwire_bundle.create import create_bundle
from fogwire_bundle.errors import BundleError
from fogwire_bundle.importer import RegistryTarget, import_bundle
from fogwire_bundle.oci import INDEX_TYPES, OCI_INDEX, Platform
from fogwire_bundle.progress import Progress
from fogwire_bundle.registry import UPLOAD_CHUNK, RegistryClient
from fogwire_bundle.testing import (
    Image,
    build_layout,
    client_for,
    clients,
    file_digest,
    layout_bundle,
    prefix_fixture,
    random_layer,
    skopeo_copy,
    unique,
)

from harness import services

FORMATS = {Format.TAR: "b.tar", Format.TAR_ZSTD: "b.tar.zst", Format.SQUASHFS: "b.sqfs"}


prefix = prefix_fixture("bundle-test")


@pytest.fixture
def registry_client(harness_registry: services.Registry) -> Iterator[RegistryClient]:
    """A client of the harness registry, closed afterwards."""
    with client_for(harness_registry) as client:
        yield client


@pytest.fixture(scope="module")
def shared_base(tmp_path_factory: pytest.TempPathFactory, harness_registry: services.Registry) -> tuple[str, str]:
    """Two images in the registry sharing a 2 MiB base layer, each with its own top layer."""
    tmp = tmp_path_factory.mktemp("shared")
    base = random_layer(tmp / "base.tar", 2 << 20, seed=1)
    top1 = random_layer(tmp / "top1.tar", 100_000, seed=2, name="one")
    top2 = random_layer(tmp / "top2.tar", 100_000, seed=3, name="two")
    repo = unique("bundle-shared")
    build_layout(tmp / "layout", [Image("a:1", [base, top1]), Image("a:2", [base, top2])])
    creds = f"{harness_registry.username}:{harness_registry.password}"
    refs = []
    for tag in ("1", "2"):
        ref = f"{harness_registry.url}/{repo}/app:{tag}"
        skopeo_copy(f"oci:{tmp / 'layout'}:a:{tag}", f"docker://{ref}", "--dest-creds", creds)
        refs.append(ref)
    return refs[0], refs[1]


@pytest.fixture(scope="module")
def multiarch(tmp_path_factory: pytest.TempPathFactory, harness_registry: services.Registry) -> str:
    """A multi-architecture index (linux/amd64 + linux/arm64) in the registry."""
    tmp = tmp_path_factory.mktemp("multi")
    layer = random_layer(tmp / "l.tar", 50_000, seed=9)
    arm = random_layer(tmp / "arm.tar", 50_000, seed=10)
    root = tmp / "layout"
    built = build_layout(root, [Image("x:amd64", [layer], arch="amd64"), Image("x:arm64", [arm], arch="arm64")])
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": i.media_type,
                "digest": i.digest,
                "size": i.size,
                "platform": {"os": "linux", "architecture": i.platforms[0].split("/")[1]},
            }
            for i in built
        ],
    }
    data = json.dumps(index).encode()
    from fogwire_bundle.layout import LayoutDir
    from fogwire_bundle.oci import sha256_hex

    digest = sha256_hex(data)
    LayoutDir(root).put_bytes(digest, data)
    (root / "index.json").write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": OCI_INDEX,
                        "digest": digest,
                        "size": len(data),
                        "annotations": {"org.opencontainers.image.ref.name": "multi"},
                    }
                ],
            }
        )
    )
    ref = f"{harness_registry.url}/{unique('bundle-multi')}/app:1"
    creds = f"{harness_registry.username}:{harness_registry.password}"
    skopeo_copy(f"oci:{root}:multi", f"docker://{ref}", "--all", "--dest-creds", creds)
    return ref


def _manifest_of(bundle: Path, fmt: Format, tmp: Path) -> dict[str, object]:
    if fmt is Format.SQUASHFS:
        out = tmp / "unsq"
        subprocess.run(["unsquashfs", "-n", "-q", "-d", str(out), str(bundle), "fogwire-bundle.json"], check=True)
        return dict(json.loads((out / "fogwire-bundle.json").read_text()))
    if fmt is Format.TAR_ZSTD:
        data = subprocess.run(["zstd", "-dc", str(bundle)], check=True, capture_output=True).stdout
        raw = tmp / "raw.tar"
        raw.write_bytes(data)
        bundle = raw
    with tarfile.open(bundle) as tar:
        handle = tar.extractfile("fogwire-bundle.json")
        assert handle is not None
        return dict(json.load(handle))


@pytest.mark.parametrize("fmt", list(FORMATS), ids=[f.value for f in FORMATS])
async def test_each_format_round_trips_through_a_registry(
    fmt: Format,
    tmp_path: Path,
    harness_registry: services.Registry,
    registry_client: RegistryClient,
    shared_base: tuple[str, str],
    prefix: str,
) -> None:
    bundle = tmp_path / FORMATS[fmt]
    result = create_bundle(bundle, list(shared_base), clients(harness_registry), fmt=fmt)
    assert bundle.exists() and (tmp_path / (bundle.name + ".sha256")).exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no work dir left
    manifest = _manifest_of(bundle, fmt, tmp_path)
    listed = {b["digest"]: b["size"] for b in manifest["blobs"]}  # type: ignore[attr-defined]
    # 2 manifests + 2 configs + base + 2 tops: the shared base is stored once
    assert len(listed) == 7 == len(result.blobs)
    assert [i["reference"] for i in manifest["images"]] == list(shared_base)  # type: ignore[attr-defined]

    client = registry_client
    target = RegistryTarget(client, prefix, tmp_path / "resume.json")
    first = await import_bundle(bundle, target, work_dir=tmp_path / "work")
    assert [i.status for i in first.images] == ["pushed", "pushed"]
    assert list((tmp_path / "work").iterdir()) == []
    for image in result.images:
        pushed = target.target_reference(image.reference)
        assert pushed.registry == harness_registry.url and pushed.repository.startswith(prefix + "/")
        assert client.manifest_digest(pushed.repository, pushed.tag) == image.digest
        skopeo_copy(
            f"docker://{pushed}",
            f"dir:{tmp_path / ('check-' + pushed.tag)}",
            "--src-creds",
            f"{harness_registry.username}:{harness_registry.password}",
        )  # skopeo reads the pushed image back, checking every blob digest

    again = await import_bundle(bundle, target, work_dir=tmp_path / "work")
    assert again.bytes_moved == 0 and again.blobs_moved == 0
    assert [i.status for i in again.images] == ["present", "present"]
    assert again.bytes_skipped == first.bytes_moved + first.bytes_skipped


def test_multiarch_index_kept_whole(
    tmp_path: Path, harness_registry: services.Registry, registry_client: RegistryClient, multiarch: str
) -> None:
    result = create_bundle(tmp_path / "m.tar", [multiarch], clients(harness_registry))
    (image,) = result.images
    assert image.media_type in INDEX_TYPES
    assert sorted(image.platforms) == ["linux/amd64", "linux/arm64"]
    assert image.digest == registry_client.manifest_digest(*multiarch.split("/", 1)[1].split(":"))


def test_multiarch_filtered_to_one_platform(
    tmp_path: Path, harness_registry: services.Registry, multiarch: str
) -> None:
    result = create_bundle(
        tmp_path / "m.tar", [multiarch], clients(harness_registry), platforms=[Platform.parse("linux/arm64")]
    )
    (image,) = result.images
    assert image.media_type not in INDEX_TYPES and image.platforms == ("linux/arm64",)
    # the index, the amd64 manifest, config and layer are left out
    assert len(result.blobs) == 3


def test_platform_filter_with_no_match_is_an_error(
    tmp_path: Path, harness_registry: services.Registry, multiarch: str
) -> None:
    with pytest.raises(BundleError, match=r"no variant for linux/s390x \(it has linux/amd64, linux/arm64\)"):
        create_bundle(
            tmp_path / "m.tar", [multiarch], clients(harness_registry), platforms=[Platform.parse("linux/s390x")]
        )
    assert list(tmp_path.iterdir()) == []


class _Interrupt(Exception):
    pass


class _StopAfter(Progress):
    """Progress that simulates a cut link: raises once ``limit`` bytes went out."""

    def __init__(self, limit: int) -> None:
        super().__init__(live=False, quiet=True)
        self.limit = limit

    def advance(self, size: int) -> None:
        super().advance(size)
        if self.label.startswith("127.") and self.done >= self.limit:
            raise _Interrupt("link cut")


async def test_interrupted_push_resumes_inside_the_blob(
    tmp_path: Path, registry_client: RegistryClient, prefix: str
) -> None:
    size = 2 * UPLOAD_CHUNK + 12345
    layer = random_layer(tmp_path / "big.tar", size, seed=7)
    bundle = layout_bundle(tmp_path, [Image(f"127.0.0.1:1/{prefix}/big:1", [layer])])
    resume = tmp_path / "resume.json"
    target = RegistryTarget(registry_client, "", resume)
    progress = _StopAfter(UPLOAD_CHUNK)
    with pytest.raises(_Interrupt):
        await import_bundle(bundle, target, work_dir=tmp_path / "work", progress=progress)
    records = json.loads(resume.read_text())
    layer_digest = next(k for k in records if k.endswith(file_digest(layer)))
    assert records[layer_digest]["offset"] == UPLOAD_CHUNK
    assert list((tmp_path / "work").iterdir()) == []

    result = await import_bundle(bundle, target, work_dir=tmp_path / "work")
    layer_size = layer.stat().st_size
    # the layer continues at the chunk boundary; only the small config (under 1 KiB) comes on top
    assert layer_size - UPLOAD_CHUNK <= result.bytes_moved < layer_size - UPLOAD_CHUNK + 1024
    assert json.loads(resume.read_text()) == {}
    ref = target.target_reference(f"127.0.0.1:1/{prefix}/big:1")
    assert registry_client.manifest_digest(ref.repository, "1") is not None


def test_import_memory_stays_flat(tmp_path: Path, harness_registry: services.Registry, prefix: str) -> None:
    """A 128 MiB layer is verified and pushed by a process whose peak RSS stays under 80 MiB."""
    layer = random_layer(tmp_path / "huge.tar", 128 << 20, seed=11)
    bundle = layout_bundle(tmp_path, [Image(f"127.0.0.1:1/{prefix}/huge:1", [layer])], Format.TAR_ZSTD, "h.tar.zst")
    layer.unlink()
    password = tmp_path / "pw"
    password.write_text(harness_registry.password)
    # a wrapper process reports the peak RSS of its children: the import and the zstd it runs
    wrapper = (
        "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", wrapper, sys.executable, "-m", "fogwire.cli", "bundle", "import", str(bundle),
         "--registry", f"http://{harness_registry.url}", "--registry-user", harness_registry.username,
         "--registry-password-file", str(password), "--work-dir", str(tmp_path / "work"), "--json"],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "FOGWIRE_STATE_DIR": str(tmp_path / "state")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["bytesMoved"] > 128 << 20
    peak_kib = int(done.stderr.split()[-1])
    assert peak_kib < 80 * 1024, f"peak RSS {peak_kib} KiB"


async def test_reimport_of_the_same_file_reads_nothing_while_the_target_holds_it(
    tmp_path: Path, registry_client: RegistryClient, prefix: str
) -> None:
    layer = random_layer(tmp_path / "l.tar", 1 << 20, seed=12)
    bundle = layout_bundle(
        tmp_path,
        [Image(f"127.0.0.1:1/{prefix}/c:1", [layer]), Image(f"127.0.0.1:1/{prefix}/c:2", [layer], cmd=["/bin/true"])],
    )
    target = RegistryTarget(registry_client, "", tmp_path / "resume.json")
    cache = tmp_path / "imported.json"
    first = await import_bundle(bundle, target, work_dir=tmp_path / "work", cache_file=cache)
    assert not first.cached and first.bytes_moved > 1 << 20

    class _NoRead(Progress):
        def advance(self, size: int) -> None:
            raise AssertionError("the bundle was read again")

    second = await import_bundle(
        bundle, target, work_dir=tmp_path / "work", cache_file=cache, progress=_NoRead(quiet=True)
    )
    assert second.cached and second.bytes_moved == 0
    assert [i.status for i in second.images] == ["present", "present"]
    assert second.bytes_skipped == first.bytes_moved + first.bytes_skipped

    # someone deletes one tag: the next import notices and runs in full
    registry_client.delete_manifest(f"{prefix}/c", first.images[1].digest)
    third = await import_bundle(bundle, target, work_dir=tmp_path / "work", cache_file=cache)
    assert not third.cached and [i.status for i in third.images] == ["present", "pushed"]
    assert third.bytes_moved == 0  # the blobs were still there; only the manifest was put back


async def test_a_blob_shared_across_repositories_is_mounted_not_sent_again(
    tmp_path: Path, registry_client: RegistryClient, prefix: str
) -> None:
    base = random_layer(tmp_path / "base.tar", 1 << 20, seed=13)
    bundle = layout_bundle(
        tmp_path,
        [Image(f"127.0.0.1:1/{prefix}/one:1", [base]), Image(f"127.0.0.1:1/{prefix}/two:1", [base], cmd=["/x"])],
    )
    target = RegistryTarget(registry_client, "", None)
    result = await import_bundle(bundle, target, work_dir=tmp_path / "work")
    assert [i.status for i in result.images] == ["pushed", "pushed"]
    # base once, two configs; the second repository gets the base by a cross-repository mount
    assert result.blobs_moved == 3 and result.blobs_skipped == 1
    assert result.bytes_moved < (1 << 20) + 20_000
    assert registry_client.has_blob(f"{prefix}/two", file_digest(base))
