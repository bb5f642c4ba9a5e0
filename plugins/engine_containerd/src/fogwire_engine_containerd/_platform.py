"""Media types and this machine's platform: what picking a manifest from an index needs."""

from __future__ import annotations

import os
from typing import Any

from fogwire.errors import ImageNotFoundError

MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)
MANIFEST_TYPES = (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST)

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm"}


def machine_platform() -> tuple[str, str]:
    """This machine's OCI ``(os, architecture)``."""
    machine = os.uname().machine.lower()
    return "linux", _ARCH.get(machine, machine)


def pick_platform(index: dict[str, Any], what: str) -> dict[str, Any]:
    """The descriptor of ``index`` for this machine's platform."""
    want_os, want_arch = machine_platform()
    for desc in index.get("manifests", []):
        plat = desc.get("platform") or {}
        if plat.get("os", want_os) == want_os and plat.get("architecture", want_arch) == want_arch:
            if desc.get("mediaType", MT_OCI_MANIFEST) in MANIFEST_TYPES:
                return dict(desc)
    raise ImageNotFoundError(f"image {what!r} has no manifest for {want_os}/{want_arch}")
