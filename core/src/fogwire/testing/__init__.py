"""The engine contract suite, shipped as a pytest plugin (``pip install fogwire[testing]``).

Every engine plugin, ours or a third party's, proves it implements
:class:`fogwire.engine.Engine` by running the same suite against a real engine::

    pytest --fogwire-engine NAME [--fogwire-engine-url URL]

``NAME`` is the engine's entry-point name (the ``containerEngine`` config key).
The plugin is loaded automatically through core's ``pytest11`` entry point; the
option adds :class:`fogwire.testing.contract.TestEngineContract` to the run.

The suite needs a test registry from the host, supplied as fixtures by the
host's ``conftest.py`` (see ``docs/engines.md``, "The contract suite"):

``fogwire_registry``
    a :class:`ContractRegistry`: a registry on loopback with user/password auth
    holding two busybox images.
``fogwire_image_archives``
    a :class:`ContractArchives`: a docker-archive and an OCI-layout tarball of a
    busybox image.
``fogwire_tls_registry``
    a :class:`ContractTlsRegistry`: a registry on HTTPS with a CA of its own. Without
    it the suite's tests of a registry's CA are skipped, saying so.

Optional fixtures a host may override: ``fogwire_engine_name`` (instead of the
option, so one session can test several engines), ``fogwire_engine_url``,
``fogwire_engine_options`` and ``fogwire_unmanaged`` (an
:class:`UnmanagedContainers` that makes containers carrying none of fogwire's
labels with the engine's own client; the default makes containers of *another*
agent, which this agent must treat the same way).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import attrs

from fogwire.engine import RegistryAuth

__all__ = ["ContractArchives", "ContractRegistry", "ContractTlsRegistry", "UnmanagedContainers"]


@attrs.frozen
class ContractRegistry:
    """The test registry the suite pulls from.

    Both images are busybox images whose ``/bin`` holds at least the applets
    ``sh``, ``httpd``, ``sleep``, ``cat``, ``echo``, ``grep``, ``dd``, ``mkdir``
    and ``true``/``false``; ``other_image`` must have a different digest.
    ``auth`` holds valid credentials (``insecure=True`` for plain HTTP on
    loopback). The suite also derives wrong credentials and absent references
    from these values.
    """

    server: str
    """``host:port`` as written in image references, e.g. ``127.0.0.1:5001``."""
    auth: RegistryAuth
    image: str
    """A reference to the first image, e.g. ``127.0.0.1:5001/fogwire/busybox:1``."""
    other_image: str
    """A reference to the second image, e.g. ``127.0.0.1:5001/fogwire/busybox:2``."""


@attrs.frozen
class ContractTlsRegistry:
    """A registry on HTTPS whose certificate a CA of the test's own signed: no system CA trusts it.

    Not on 127.0.0.0/8: dockerd skips TLS verification for every loopback registry.
    ``auth`` holds valid credentials and the CA (:attr:`RegistryAuth.ca_pem`), with
    ``insecure=False``; the suite derives the same without a CA, or with another CA.
    ``image`` is a busybox image like :class:`ContractRegistry`'s.
    """

    server: str
    """``host:port`` as written in image references, e.g. ``198.18.77.1:5443``."""
    auth: RegistryAuth
    image: str
    cert_dirs: tuple[Path, ...] = ()
    """Where a daemon reads this registry's CA (``/etc/docker/certs.d/<host:port>``…): the
    engine under test may write there for a pull, and must leave none of them behind."""


@attrs.frozen
class ContractArchives:
    """Image tarballs the suite loads; both hold a busybox image like :class:`ContractRegistry`'s."""

    docker_archive: Path
    """A ``docker save`` style tarball (``manifest.json`` + ``repositories``)."""
    oci_archive: Path
    """A tarball of an OCI image layout (``oci-layout``, ``index.json``, ``blobs/``)
    whose index names its manifest with ``org.opencontainers.image.ref.name``."""
    oci_reference_suffix: str = "fogwire/busybox:1"
    """What the loaded reference of the OCI archive ends with (engines may add a
    registry prefix such as ``localhost/``)."""


@attrs.frozen
class ContractRuntime:
    """A named OCI runtime the engine under test knows: runc behind a wrapper that records its calls.

    ``calls`` is a file the wrapper appends its arguments to, one call per line
    (``create --bundle … <container id>``), so the suite can tell it ran.
    """

    name: str
    calls: Path


class UnmanagedContainers(Protocol):
    """Makes and inspects containers the agent under test must never see or touch."""

    async def create(self, name: str, image: str) -> None:
        """Create and start a long-running container ``name`` (``sleep``) from ``image``."""

    async def state(self, name: str) -> str | None:
        """The engine's own state word for ``name`` (``running``…), or ``None`` if gone."""

    async def remove(self, name: str) -> None:
        """Remove ``name`` (forcefully), if present."""


EngineOptions = Mapping[str, Any]
"""Engine-specific options, as in :attr:`fogwire.engine.EngineContext.options`."""
