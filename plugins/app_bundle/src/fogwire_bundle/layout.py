"""The bundle's on-disk form: an OCI image layout plus ``fogwire-bundle.json``.

A bundle is one OCI image layout (``oci-layout``, ``index.json``,
``blobs/sha256/<hex>``) holding every image, each blob stored once however many
images share it, and a bundle manifest listing every image (reference, digest,
platforms) and every blob (digest, size). :class:`LayoutDir` writes and reads such
a directory; the archive formats wrap it (see :mod:`fogwire_bundle.archive`).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import attrs

from fogwire_bundle.errors import BundleError
from fogwire_bundle.oci import (
    CONTAINERD_NAME,
    INDEX_TYPES,
    OCI_INDEX,
    REF_NAME,
    canonical_json,
    check_digest,
    copy_hashing,
)

BUNDLE_MANIFEST = "fogwire-bundle.json"
"""Name of the bundle manifest beside ``index.json``."""
BUNDLE_KIND = "fogwire-bundle"
OCI_LAYOUT = "oci-layout"
INDEX = "index.json"
LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}


@attrs.frozen
class BundleImage:
    """One image of a bundle: its reference, manifest (or index) digest and platforms."""

    reference: str
    digest: str
    media_type: str
    size: int
    platforms: tuple[str, ...] = ()


@attrs.frozen
class BlobInfo:
    """One blob of a bundle."""

    digest: str
    size: int
    media_type: str = ""


class BlobSlice:
    """A read-only, seekable view of ``size`` bytes at ``offset`` of a file (a blob inside a plain tar)."""

    def __init__(self, path: Path, offset: int, size: int) -> None:
        self._file = path.open("rb")
        self._offset = offset
        self._size = size
        self._pos = 0
        self._file.seek(offset)

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes (all that is left if negative)."""
        left = self._size - self._pos
        want = left if size is None or size < 0 else min(size, left)
        data = self._file.read(want) if want > 0 else b""
        self._pos += len(data)
        return data

    def seek(self, position: int, whence: int = 0, /) -> int:
        """Move within the slice (``whence`` 0, 1 or 2 as for files)."""
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, min(self._size, base + position))
        self._file.seek(self._offset + self._pos)
        return self._pos

    def tell(self) -> int:
        """The position within the slice."""
        return self._pos

    def close(self) -> None:
        """Close the underlying file."""
        self._file.close()

    def __enter__(self) -> BlobSlice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LayoutDir:
    """An OCI image layout directory: blobs by digest, ``index.json``, ``oci-layout``.

    A blob may also live *in place* inside another file (:attr:`external`: a blob
    in a plain tar bundle, already verified), so a tar is never copied to be read.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.external: dict[str, tuple[Path, int, int]] = {}
        """digest → (file, offset, size) of blobs read in place."""

    def create(self) -> LayoutDir:
        """Make the directories; return ``self``."""
        self.blobs.mkdir(parents=True, exist_ok=True)
        return self

    def blob_path(self, digest: str) -> Path:
        """Where blob ``digest`` lives (the digest is checked first: no path escapes)."""
        return self.blobs / check_digest(digest, str(self.root)).split(":", 1)[1]

    def has(self, digest: str) -> bool:
        """True if blob ``digest`` is stored."""
        return digest in self.external or self.blob_path(digest).is_file()

    def size(self, digest: str) -> int:
        """The stored size of blob ``digest``."""
        if digest in self.external:
            return self.external[digest][2]
        return self.blob_path(digest).stat().st_size

    def open_blob(self, digest: str) -> BlobSlice:
        """A seekable reader of blob ``digest`` (close it, or use it in a ``with``)."""
        if digest in self.external:
            return BlobSlice(*self.external[digest])
        path = self.blob_path(digest)
        return BlobSlice(path, 0, path.stat().st_size)

    def read_small(self, digest: str, limit: int = 4 << 20) -> bytes:
        """The bytes of a small blob (a manifest or config); refuses anything over ``limit``."""
        if self.size(digest) > limit:
            raise BundleError(f"{self.root}: blob {digest} should be a manifest or config but is over {limit} bytes")
        with self.open_blob(digest) as blob:
            return blob.read()

    def read_json(self, digest: str) -> dict[str, Any]:
        """A manifest, index or config blob parsed as a JSON object."""
        try:
            data = json.loads(self.read_small(digest))
        except ValueError as error:
            raise BundleError(f"{self.root}: blob {digest} is not valid JSON: {error}") from None
        if not isinstance(data, dict):
            raise BundleError(f"{self.root}: blob {digest} is not a JSON object")
        return data

    def put_bytes(self, digest: str, data: bytes) -> None:
        """Store a small blob whose digest the caller computed."""
        path = self.blob_path(digest)
        if not path.exists():
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)

    def put_stream(
        self, expected: str, source: IO[bytes], *, where: str, on_chunk: Callable[[int], None] | None = None
    ) -> int:
        """Store blob ``expected`` from ``source``, hashing while copying; return its size.

        A blob whose content does not hash to ``expected`` is removed and reported.
        """
        path = self.blob_path(expected)
        tmp = path.with_name(path.name + ".tmp")
        try:
            with tmp.open("wb") as out:
                digest, size = copy_hashing(source, out, on_chunk=on_chunk)
            if digest != expected:
                raise BundleError(
                    f"{where}: blob {expected} has content hashing to {digest}: it was altered or corrupted"
                )
            tmp.replace(path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return size

    def write_index(self, images: Sequence[BundleImage]) -> None:
        """Write ``oci-layout`` and ``index.json`` naming every image by its whole reference."""
        manifests = [
            {
                "mediaType": image.media_type,
                "digest": image.digest,
                "size": image.size,
                "annotations": {REF_NAME: image.reference, CONTAINERD_NAME: image.reference},
            }
            for image in images
        ]
        (self.root / OCI_LAYOUT).write_bytes(canonical_json(LAYOUT_VERSION))
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        (self.root / INDEX).write_bytes(json.dumps(index, indent=2).encode() + b"\n")

    def write_bundle_manifest(self, images: Sequence[BundleImage], blobs: Sequence[BlobInfo]) -> None:
        """Write ``fogwire-bundle.json``: every image and every blob with digest and size."""
        document = {
            "kind": BUNDLE_KIND,
            "schemaVersion": 1,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "images": [
                {
                    "reference": i.reference,
                    "digest": i.digest,
                    "mediaType": i.media_type,
                    "size": i.size,
                    "platforms": list(i.platforms),
                }
                for i in images
            ],
            "blobs": [{"digest": b.digest, "size": b.size, "mediaType": b.media_type} for b in blobs],
        }
        (self.root / BUNDLE_MANIFEST).write_bytes(json.dumps(document, indent=2).encode() + b"\n")

    def walk(self, digest: str, media_type: str, where: str) -> Iterator[tuple[dict[str, Any], str]]:
        """Every descriptor reachable from manifest/index ``digest`` (itself first) with its parent's name.

        Each descriptor's digest is checked; a blob that is missing is reported.
        """
        root = {"digest": digest, "mediaType": media_type}
        stack: list[tuple[dict[str, Any], str]] = [(root, where)]
        seen: set[str] = set()
        while stack:
            descriptor, parent = stack.pop()
            current = check_digest(descriptor.get("digest"), parent)
            if current in seen:
                continue
            seen.add(current)
            if not self.has(current):
                raise BundleError(f"{parent}: blob {current} is missing from the bundle")
            declared = descriptor.get("size")
            if isinstance(declared, int) and declared != self.size(current):
                raise BundleError(
                    f"{parent}: blob {current} holds {self.size(current)} bytes, its descriptor says {declared}"
                )
            yield descriptor, parent
            kind = str(descriptor.get("mediaType", ""))
            if kind in INDEX_TYPES or kind.endswith("manifest.v1+json") or kind.endswith("manifest.v2+json"):
                document = self.read_json(current)
                if document.get("mediaType") in INDEX_TYPES or kind in INDEX_TYPES or "manifests" in document:
                    children = list(document.get("manifests") or [])
                else:
                    children = [document.get("config") or {}, *(document.get("layers") or [])]
                for child in children:
                    if not isinstance(child, Mapping):
                        raise BundleError(f"manifest {current}: a descriptor is not an object")
                    stack.append((dict(child), f"manifest {current}"))
