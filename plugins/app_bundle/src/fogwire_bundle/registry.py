"""The bundle tools' registry client: core's :class:`fogwire.registry_client.RegistryClient`, failing with :class:`BundleError`.

Fetching manifests and blobs, ``HEAD`` checks, resumable blob uploads and manifest
puts, authentication (Basic, Bearer tokens), redirects to other hosts, proxies
(``HTTPS_PROXY`` …) and TLS trust are core's; this module only turns core's
registry errors into the :class:`BundleError` every bundle caller handles, and
parses the ``--registry`` URL.

Credentials never appear in an error message or a log line.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from fogwire.errors import EngineError
from fogwire.http_proxy import is_loopback
from fogwire.registry_client import UPLOAD_CHUNK, Body, Credentials, Response
from fogwire.registry_client import RegistryClient as _CoreClient
from fogwire_bundle.errors import BundleError

__all__ = ["UPLOAD_CHUNK", "Body", "Credentials", "RegistryClient", "Response", "is_loopback", "parse_server"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _bundle_errors(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """``method``, raising :class:`BundleError` (same message) where core raised a registry error."""

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except EngineError as error:
            raise BundleError(str(error)) from None

    return wrapper


class RegistryClient(_CoreClient):
    """One registry server (``host[:port]``) for the bundle tools; every failure is a :class:`BundleError`.

    ``insecure`` (``--insecure``, an ``http://`` registry URL) skips TLS verification
    and speaks plain HTTP to a registry that does not speak TLS; a loopback registry
    speaks plain HTTP anyway.
    """

    def __init__(
        self, server: str, credentials: Credentials | None = None, *, insecure: bool = False, timeout: float = 120.0
    ) -> None:
        super().__init__(server, credentials, insecure=insecure, timeout=timeout, user_agent="fogwire-bundle")

    def clone(self) -> RegistryClient:
        """Another client of the same registry, sharing what authentication learnt, on its own connection."""
        other = RegistryClient(self.server, self.credentials, insecure=self.insecure, timeout=self.timeout)
        self._share_learnt(other)
        return other


_API = (
    "request get_manifest open_blob has_blob manifest_digest tags start_upload mount_blob upload_offset"
    " upload_chunks finish_upload put_manifest delete_manifest"
)
for _name in _API.split():
    setattr(RegistryClient, _name, _bundle_errors(getattr(_CoreClient, _name)))


def parse_server(url: str) -> tuple[str, str, bool | None]:
    """Split ``[http[s]://]host[:port][/prefix]`` into ``(server, prefix, insecure)``.

    ``insecure`` is ``True`` for ``http://``, ``False`` for ``https://`` and ``None``
    when no scheme was given.
    """
    insecure: bool | None = None
    text = url.strip()
    if text.startswith("http://"):
        insecure, text = True, text[len("http://") :]
    elif text.startswith("https://"):
        insecure, text = False, text[len("https://") :]
    server, _, prefix = text.partition("/")
    if not server:
        raise BundleError(f"registry {url!r} names no host")
    return server, prefix.strip("/"), insecure
