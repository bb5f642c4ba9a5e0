"""Helpers of the bundle tests (no tests here): images built by code, registries, tar surgery.

Images for bad-input and size tests are written straight into an OCI layout by
:func:`build_layout` (uncompressed random-content layers, so their size is exact);
round-trip tests take the harness's busybox images from the real registry.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import random
import shutil
import socket
import subprocess
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fogwire_bundle.archive import Format, pack
from fogwire_bundle.layout import BlobInfo, BundleImage, LayoutDir
from fogwire_bundle.oci import OCI_MANIFEST, canonical_json, sha256_hex
from fogwire_bundle.registry import Credentials, RegistryClient
from harness import services

LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
CONFIG = "application/vnd.oci.image.config.v1+json"


def unique(prefix: str = "bundle-test") -> str:
    """A repository path component no other test run uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def client_for(registry: services.Registry) -> RegistryClient:
    """A client of the harness registry with its htpasswd credentials."""
    return RegistryClient(registry.url, Credentials(registry.username, registry.password), insecure=True)


def clients(registry: services.Registry) -> Callable[[str], RegistryClient]:
    """A client factory for :func:`fogwire_bundle.create.create_bundle` (harness registry only)."""

    def factory(server: str) -> RegistryClient:
        assert server == registry.url, server
        return client_for(registry)  # create_bundle closes the clients it used

    return factory


def random_layer(dest: Path, size: int, seed: int, name: str = "data.bin") -> Path:
    """An uncompressed layer tar at ``dest`` holding one file of ``size`` seeded random bytes."""
    rng = random.Random(seed)
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    with dest.open("wb") as out, tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:

        class _Random(io.RawIOBase):
            left = size

            def readable(self) -> bool:
                return True

            def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
                n = min(len(buffer), self.left, 1 << 20)
                buffer[:n] = rng.randbytes(n)
                self.left -= n
                return n

        tar.addfile(info, io.BufferedReader(_Random(), 1 << 20))
    return dest


def file_digest(path: Path) -> str:
    """``sha256:`` of a file, streamed."""
    hasher = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()


@dataclass
class Image:
    """One image for :func:`build_layout`."""

    reference: str
    layers: list[Path]
    arch: str = "amd64"
    os: str = "linux"
    cmd: list[str] = field(default_factory=lambda: ["/bin/sh"])


def build_layout(root: Path, images: list[Image]) -> list[BundleImage]:
    """Write a fogwire bundle layout (index.json, oci-layout, fogwire-bundle.json) of ``images``."""
    layout = LayoutDir(root).create()
    bundle_images: list[BundleImage] = []
    blobs: dict[str, BlobInfo] = {}
    for image in images:
        layer_descriptors = []
        for layer in image.layers:
            digest = file_digest(layer)
            target = layout.blob_path(digest)
            if not target.exists():
                shutil.copyfile(layer, target)
            size = target.stat().st_size
            blobs[digest] = BlobInfo(digest, size, LAYER_TAR)
            layer_descriptors.append({"mediaType": LAYER_TAR, "digest": digest, "size": size})
        config = {
            "architecture": image.arch,
            "os": image.os,
            "config": {"Cmd": image.cmd},
            "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in layer_descriptors]},
        }
        config_bytes = canonical_json(config)
        config_digest = sha256_hex(config_bytes)
        layout.put_bytes(config_digest, config_bytes)
        blobs[config_digest] = BlobInfo(config_digest, len(config_bytes), CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": CONFIG, "digest": config_digest, "size": len(config_bytes)},
            "layers": layer_descriptors,
        }
        manifest_bytes = canonical_json(manifest)
        manifest_digest = sha256_hex(manifest_bytes)
        layout.put_bytes(manifest_digest, manifest_bytes)
        blobs[manifest_digest] = BlobInfo(manifest_digest, len(manifest_bytes), OCI_MANIFEST)
        bundle_images.append(
            BundleImage(
                image.reference, manifest_digest, OCI_MANIFEST, len(manifest_bytes), (f"{image.os}/{image.arch}",)
            )
        )
    layout.write_index(bundle_images)
    layout.write_bundle_manifest(bundle_images, sorted(blobs.values(), key=lambda b: b.digest))
    return bundle_images


def layout_bundle(tmp: Path, images: list[Image], fmt: Format = Format.TAR, name: str = "bundle.tar") -> Path:
    """Build ``images`` into a layout under ``tmp`` and pack it as ``tmp/name``."""
    root = tmp / f"layout-{uuid.uuid4().hex[:6]}"
    build_layout(root, images)
    out = tmp / name
    pack(root, out, fmt)
    shutil.rmtree(root)
    return out


def rewrite_tar(
    source: Path,
    dest: Path,
    change: Callable[[tarfile.TarInfo, bytes | None], list[tuple[tarfile.TarInfo, bytes | None]]],
) -> Path:
    """Copy tar ``source`` to ``dest``, replacing each entry by what ``change`` returns for it."""
    with tarfile.open(source) as src, tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as out:
        for member in src.getmembers():
            handle = src.extractfile(member) if member.isreg() else None
            data = handle.read() if handle is not None else None
            for info, payload in change(member, data):
                if payload is not None:
                    info.size = len(payload)
                out.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return dest


def entry(
    name: str, data: bytes | None = None, kind: bytes = tarfile.REGTYPE, link: str = ""
) -> tuple[tarfile.TarInfo, bytes | None]:
    """A tar entry for :func:`rewrite_tar`."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o644
    return info, data


def delete_repositories(registry: services.Registry, prefix: str) -> None:
    """Delete every manifest under the harness registry repositories starting with ``prefix``."""
    with client_for(registry) as client:
        response, _ = client.request("GET", "/v2/_catalog?n=1000", scope="registry:catalog:*")
        for repository in json.loads(response.body).get("repositories") or []:
            if not repository.startswith(prefix):
                continue
            for tag in list(client.tags(repository)):
                digest = client.manifest_digest(repository, tag)
                if digest:
                    client.delete_manifest(repository, digest)


def prefix_fixture(kind: str) -> Any:
    """A ``prefix`` fixture: a fresh repository prefix in the harness registry, deleted afterwards."""

    @pytest.fixture
    def prefix(harness_registry: services.Registry) -> Iterator[str]:
        name = unique(kind)
        yield name
        delete_repositories(harness_registry, name)

    return prefix


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def plain_registry(root: Path) -> Iterator[str]:
    """A throwaway ``docker-registry`` (no auth) storing under ``root``; yields ``127.0.0.1:PORT``."""
    port = free_port()
    config = root.parent / f"registry-{port}.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        config.unlink()


def skopeo_copy(source: str, dest: str, *extra: str) -> None:
    """``skopeo copy`` over plain http; the credentials come in ``extra`` (never printed)."""
    done = subprocess.run(
        ["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false", *extra, source, dest],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def make_koffer_bundle(tmp: Path, registry: services.Registry, images: dict[str, str]) -> Path:
    """A real Koffer bundle: ``skopeo copy --format v2s2`` into a registry:2 under ``deploy/``, then tar + sha256sum.

    ``images`` maps a source reference in the harness registry to the repository:tag
    it gets in the Koffer registry.
    """
    home = tmp / "koffer-home"
    storage = home / "deploy" / "mirror"
    storage.mkdir(parents=True)
    creds = f"{registry.username}:{registry.password}"
    with plain_registry(storage) as address:
        for source, name in images.items():
            skopeo_copy(f"docker://{source}", f"docker://{address}/{name}", "--format=v2s2", "--src-creds", creds)
    bundle = tmp / "koffer-bundle.apps.tar"
    subprocess.run(["tar", "-c", "-f", str(bundle), "-C", str(home), "deploy"], check=True)
    line = subprocess.run(["sha256sum", bundle.name], cwd=tmp, check=True, capture_output=True, text=True).stdout
    (tmp / (bundle.name + ".sha256")).write_text(line)
    shutil.rmtree(home)
    return bundle
