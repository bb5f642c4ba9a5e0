"""``fogwire bundle create``: copy images from registries into one bundle file.

Each image's manifest (or multi-architecture index, kept whole unless platforms
are chosen), configs and layers are fetched over the registry v2 API and stored
once in an OCI image layout; the layout is then packed (see
:mod:`fogwire_bundle.archive`). Every blob is hashed while it streams in and
checked against its digest.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from fogwire_bundle.archive import Format, pack
from fogwire_bundle.errors import BundleError
from fogwire_bundle.layout import BlobInfo, BundleImage, LayoutDir
from fogwire_bundle.oci import (
    INDEX_TYPES,
    OCI_INDEX,
    Platform,
    Reference,
    index_platforms,
    pick_platforms,
    sha256_hex,
)
from fogwire_bundle.progress import Progress
from fogwire_bundle.registry import RegistryClient

log = logging.getLogger(__name__)

ClientFactory = Callable[[str], RegistryClient]
"""Returns the client for a registry server (``host[:port]``) named in a reference."""


@attrs.frozen
class CreateResult:
    """What a bundle holds once written."""

    path: Path
    images: tuple[BundleImage, ...]
    blobs: tuple[BlobInfo, ...]
    bytes: int
    """Size of the bundle file."""


class _Builder:
    def __init__(self, layout: LayoutDir, clients: ClientFactory, platforms: Sequence[Platform], progress: Progress):
        self.layout = layout
        self.clients = clients
        self.platforms = list(platforms)
        self.progress = progress
        self.blobs: dict[str, BlobInfo] = {}
        self.used: dict[str, RegistryClient] = {}

    def close(self) -> None:
        for client in self.used.values():
            client.close()

    def _manifest(self, client: RegistryClient, ref: Reference, version: str) -> tuple[bytes, str, str]:
        data, media_type = client.get_manifest(ref.repository, version)
        digest = sha256_hex(data)
        if version.startswith("sha256:") and digest != version:
            raise BundleError(f"registry {client.server}: manifest {ref.repository}@{version} hashes to {digest}")
        if not media_type or media_type == "application/json":
            media_type = str(json.loads(data).get("mediaType", ""))
        return data, media_type, digest

    def _store_small(self, digest: str, data: bytes, media_type: str) -> None:
        self.layout.put_bytes(digest, data)
        self.blobs.setdefault(digest, BlobInfo(digest, len(data), media_type))

    def _blob(self, client: RegistryClient, ref: Reference, descriptor: dict[str, Any]) -> None:
        digest = str(descriptor.get("digest"))
        media_type = str(descriptor.get("mediaType", ""))
        where = f"registry {client.server} ({ref.repository})"
        if not self.layout.has(digest):
            stream, _ = client.open_blob(ref.repository, digest)
            try:
                self.layout.put_stream(digest, stream, where=where, on_chunk=self.progress.advance)
            finally:
                stream.close()
        else:
            self.progress.skip(int(descriptor.get("size", 0)))
        self.blobs.setdefault(digest, BlobInfo(digest, self.layout.size(digest), media_type))

    def _image_manifest(self, client: RegistryClient, ref: Reference, data: bytes, media_type: str) -> str:
        """Store a single-image manifest's blobs; return its platform."""
        manifest = json.loads(data)
        config = manifest.get("config") or {}
        layers = manifest.get("layers") or []
        self.progress.expect(
            sum(int(d.get("size", 0)) for d in [config, *layers] if not self.layout.has(str(d.get("digest"))))
        )
        for descriptor in [config, *layers]:
            self._blob(client, ref, descriptor)
        config_json = self.layout.read_json(str(config.get("digest")))
        return str(
            Platform(
                str(config_json.get("os", "")),
                str(config_json.get("architecture", "")),
                str(config_json.get("variant", "") or ""),
            )
        )

    def add(self, text: str) -> BundleImage:
        ref = Reference.parse(text)
        # Docker Hub keeps official images under library/: what `docker pull busybox` asks for
        remote = (
            ref if ref.registry or "/" in ref.repository else attrs.evolve(ref, repository=f"library/{ref.repository}")
        )
        client = self.used.setdefault(ref.registry, self.clients(ref.registry))
        self.progress.start(str(ref))
        data, media_type, digest = self._manifest(client, remote, ref.version)
        if media_type not in INDEX_TYPES:
            platform = self._image_manifest(client, remote, data, media_type)
            if self.platforms and not any(p.matches(Platform.parse(platform)) for p in self.platforms):
                wanted = ", ".join(map(str, self.platforms))
                raise BundleError(f"image {ref} is {platform} only; it has no variant for {wanted}")
            self._store_small(digest, data, media_type)
            image = BundleImage(str(ref), digest, media_type, len(data), (platform,))
            self.progress.finish(str(ref))
            return image
        index = json.loads(data)
        entries = pick_platforms(index, self.platforms) if self.platforms else list(index.get("manifests") or [])
        if not entries:
            wanted = ", ".join(map(str, self.platforms))
            have = ", ".join(index_platforms(index)) or "none"
            raise BundleError(f"image {ref} has no variant for {wanted} (it has {have})")
        platforms: list[str] = []
        for entry in entries:
            child, child_type, child_digest = self._manifest(client, remote, str(entry.get("digest")))
            if child_digest != entry.get("digest"):
                raise BundleError(
                    f"registry {client.server}: {ref} index entry {entry.get('digest')} hashes differently"
                )
            if child_type in INDEX_TYPES:
                raise BundleError(f"image {ref}: nested indexes are not supported")
            platforms.append(self._image_manifest(client, remote, child, child_type))
            self._store_small(child_digest, child, child_type)
        if not self.platforms:
            self._store_small(digest, data, media_type)
            image = BundleImage(str(ref), digest, media_type, len(data), tuple(platforms))
        elif len(entries) == 1:
            # one platform chosen: the image is that platform's manifest, as `docker pull --platform` gives
            entry = entries[0]
            image = BundleImage(
                str(ref), str(entry["digest"]), str(entry.get("mediaType")), int(entry["size"]), tuple(platforms)
            )
        else:
            filtered = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
            filtered_bytes = json.dumps(filtered, indent=2).encode()
            filtered_digest = sha256_hex(filtered_bytes)
            self._store_small(filtered_digest, filtered_bytes, OCI_INDEX)
            image = BundleImage(str(ref), filtered_digest, OCI_INDEX, len(filtered_bytes), tuple(platforms))
        self.progress.finish(str(ref))
        return image


def create_bundle(
    output: Path,
    references: Sequence[str],
    clients: ClientFactory,
    *,
    fmt: Format = Format.TAR,
    platforms: Sequence[Platform] = (),
    progress: Progress | None = None,
) -> CreateResult:
    """Write a bundle of ``references`` to ``output`` (blocking; run it in a thread from async code).

    The layout is assembled in a temporary directory beside ``output`` and removed
    afterwards, whatever happens; ``output`` appears only when complete.
    """
    if not references:
        raise BundleError("no images given: name at least one IMAGE")
    progress = progress or Progress.silent()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".d", dir=output.parent))
    builder = _Builder(LayoutDir(work), clients, platforms, progress)
    try:
        layout = builder.layout.create()
        images: list[BundleImage] = []
        seen: set[str] = set()
        for text in references:
            image = builder.add(text)
            if image.reference not in seen:
                seen.add(image.reference)
                images.append(image)
        blobs = tuple(sorted(builder.blobs.values(), key=lambda b: b.digest))
        layout.write_index(images)
        layout.write_bundle_manifest(images, blobs)
        progress.note(f"packing {len(images)} image(s), {len(blobs)} blob(s) as {fmt.value}")
        pack(work, output, fmt)
    except OSError as error:
        raise BundleError(f"{output}: writing the bundle failed: {error.strerror or error}") from None
    finally:
        builder.close()
        shutil.rmtree(work, ignore_errors=True)
    return CreateResult(output, tuple(images), blobs, output.stat().st_size)
