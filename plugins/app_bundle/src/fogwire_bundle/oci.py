"""OCI and registry vocabulary shared by bundle creation and import.

Media types, digest checking, image references, platforms and a hashing copy.
Everything here is pure Python (hashlib, json, re) so the rest of the package can
stay free of third-party dependencies.
"""

from __future__ import annotations

import hashlib
import json
import platform as _platform
import re
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Any

import attrs

from fogwire_bundle.errors import BundleError

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
"""Media types of a multi-architecture index (OCI index, Docker manifest list)."""
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
"""Media types of a single-image manifest."""
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
"""The ``Accept`` header asking a registry for any manifest kind we understand."""

REF_NAME = "org.opencontainers.image.ref.name"
"""OCI annotation naming an entry of ``index.json`` (we store the whole reference)."""
CONTAINERD_NAME = "io.containerd.image.name"
"""Annotation ``ctr import`` reads for the image name."""

CHUNK = 1 << 20
"""Bytes read at a time while copying: memory stays flat whatever a blob's size."""

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_REPO = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")


def check_digest(digest: object, where: str) -> str:
    """Return ``digest`` if it is ``sha256:<64 hex>``; else raise naming ``where``.

    A digest becomes a file name (``blobs/sha256/<hex>``), so anything else (``..``,
    slashes, another algorithm) could point outside the layout and is refused.
    """
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise BundleError(
            f"{where}: digest {digest!r} is not sha256:<64 hex digits>; it would point outside the layout"
        )
    return digest


def sha256_hex(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(data: Any) -> bytes:
    """Stable JSON bytes (sorted keys, no spaces) for files we write ourselves."""
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def copy_hashing(
    source: IO[bytes],
    target: IO[bytes] | None,
    *,
    limit: int | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> tuple[str, int]:
    """Copy ``source`` to ``target`` (or just read it) chunk by chunk; return ``(digest, size)``."""
    hasher = hashlib.sha256()
    size = 0
    while True:
        want = CHUNK if limit is None else min(CHUNK, limit - size)
        if want <= 0:
            break
        chunk = source.read(want)
        if not chunk:
            break
        hasher.update(chunk)
        if target is not None:
            target.write(chunk)
        size += len(chunk)
        if on_chunk is not None:
            on_chunk(len(chunk))
    return "sha256:" + hasher.hexdigest(), size


@attrs.frozen
class Platform:
    """An OCI platform: ``os/architecture[/variant]``."""

    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``linux/amd64`` or ``linux/arm/v7``."""
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise BundleError(f"platform {text!r} is not os/arch[/variant] (e.g. linux/amd64, linux/arm/v7)")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else "")

    @classmethod
    def from_descriptor(cls, descriptor: Mapping[str, Any]) -> Platform | None:
        """The ``platform`` of an index entry, or ``None`` if it has none."""
        value = descriptor.get("platform")
        if not isinstance(value, Mapping):
            return None
        return cls(str(value.get("os", "")), str(value.get("architecture", "")), str(value.get("variant", "") or ""))

    def matches(self, other: Platform) -> bool:
        """True if ``other`` is this platform (a missing variant on either side matches any)."""
        if (self.os, self.architecture) != (other.os, other.architecture):
            return False
        return not self.variant or not other.variant or self.variant == other.variant

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def machine_platform() -> Platform:
    """The OCI platform of this machine (``linux/amd64``, ``linux/arm64``, ``linux/arm/v7``, …)."""
    machine = _platform.machine().lower()
    arch, variant = {
        "x86_64": ("amd64", ""),
        "amd64": ("amd64", ""),
        "aarch64": ("arm64", ""),
        "arm64": ("arm64", ""),
        "armv7l": ("arm", "v7"),
        "armv6l": ("arm", "v6"),
    }.get(machine, (machine, ""))
    return Platform("linux", arch, variant)


def pick_platforms(index: Mapping[str, Any], wanted: Iterable[Platform]) -> list[dict[str, Any]]:
    """The entries of ``index`` whose platform matches one of ``wanted``, in index order."""
    wanted = list(wanted)
    out: list[dict[str, Any]] = []
    for entry in index.get("manifests") or []:
        found = Platform.from_descriptor(entry)
        if found is not None and any(w.matches(found) for w in wanted):
            out.append(dict(entry))
    return out


def index_platforms(index: Mapping[str, Any]) -> list[str]:
    """``os/arch[/variant]`` of every entry of ``index`` that has a real platform."""
    names: list[str] = []
    for entry in index.get("manifests") or []:
        found = Platform.from_descriptor(entry)
        if found is not None and found.os != "unknown":
            names.append(str(found))
    return names


@attrs.frozen
class Reference:
    """An image reference ``registry/repository[:tag][@digest]``.

    ``registry`` is empty when the reference names none (Docker Hub, or a Koffer
    repository path). ``str()`` gives the reference back in its usual spelling.
    """

    registry: str
    repository: str
    tag: str = ""
    digest: str = ""

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse ``text``; a first path component with ``.``/``:`` or ``localhost`` is the registry."""
        rest, _, digest = text.partition("@")
        if digest:
            check_digest(digest, f"image reference {text!r}")
        registry = ""
        first, slash, remainder = rest.partition("/")
        if slash and ("." in first or ":" in first or first == "localhost"):
            registry, rest = first, remainder
        repository, tag = rest, ""
        last_slash = rest.rfind("/")
        colon = rest.rfind(":")
        if colon > last_slash:
            repository, tag = rest[:colon], rest[colon + 1 :]
        if not _REPO.match(repository):
            raise BundleError(f"image reference {text!r}: repository {repository!r} is not a valid repository name")
        if tag and not _TAG.match(tag):
            raise BundleError(f"image reference {text!r}: tag {tag!r} is not a valid tag")
        if not tag and not digest:
            tag = "latest"
        return cls(registry, repository, tag, digest)

    @property
    def name(self) -> str:
        """``registry/repository`` (or just the repository when no registry is named)."""
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    @property
    def version(self) -> str:
        """What to ask the registry for: the digest if there is one, else the tag."""
        return self.digest or self.tag

    def with_registry(self, registry: str, prefix: str = "") -> Reference:
        """The same repository and tag under another registry (and optional path prefix)."""
        repository = f"{prefix.strip('/')}/{self.repository}" if prefix.strip("/") else self.repository
        return attrs.evolve(self, registry=registry, repository=repository)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text
