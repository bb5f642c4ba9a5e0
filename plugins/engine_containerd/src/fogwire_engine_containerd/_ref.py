"""Image references: parse and normalise them the way containerd names images."""

from __future__ import annotations

from typing import NamedTuple

DEFAULT_REGISTRY = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"


class Reference(NamedTuple):
    """A parsed image reference: ``registry/repository[:tag][@digest]`` (a tuple: cheap to import)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The normalised name containerd stores the image under."""
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    @property
    def api_host(self) -> str:
        """The host serving the registry v2 API for this reference."""
        return DOCKER_HUB_API if self.registry == DEFAULT_REGISTRY else self.registry

    @property
    def object(self) -> str:
        """What to ask the registry's manifest endpoint for: the digest or the tag."""
        return self.digest or self.tag or "latest"


def parse(reference: str) -> Reference:
    """Parse ``reference`` and fill in Docker's defaults (``docker.io``, ``library/``, ``latest``).

    Raises :class:`ValueError` on an empty or malformed reference.
    """
    ref = reference.strip()
    if not ref or any(c.isspace() for c in ref):
        raise ValueError(f"invalid image reference {reference!r}")
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
        if not digest.startswith("sha256:") or len(digest) != 71:
            raise ValueError(f"invalid digest in image reference {reference!r}")
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, remainder = first, rest
    else:
        registry, remainder = DEFAULT_REGISTRY, ref
    tag = None
    slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > slash:
        remainder, tag = remainder[:colon], remainder[colon + 1 :]
        if not tag:
            raise ValueError(f"empty tag in image reference {reference!r}")
    if not remainder or remainder != remainder.lower():
        raise ValueError(f"invalid image reference {reference!r}")
    if registry == DEFAULT_REGISTRY and "/" not in remainder:
        remainder = f"library/{remainder}"
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry, remainder, tag, digest)


def normalize(reference: str) -> str:
    """The name containerd stores ``reference`` under (``busybox`` → ``docker.io/library/busybox:latest``)."""
    return parse(reference).name
