"""The containerd engine's side of a pull: which registry client for a reference, and its manifest's media type.

containerd 1.6 has no transfer service, so a pull is the plugin's job. The talking
(authentication, redirects to CDNs, proxies, TLS with a Registry's own CA,
``insecure``, plain HTTP to a loopback registry) is core's
:class:`fogwire.registry_client.RegistryClient`; choosing the manifest for this
platform is :mod:`fogwire_engine_containerd._images`'.
"""

from __future__ import annotations

import json

from fogwire.engine import RegistryAuth
from fogwire.registry_client import Credentials, RegistryClient
from fogwire_engine_containerd._platform import INDEX_TYPES, MANIFEST_TYPES
from fogwire_engine_containerd._ref import Reference

ACCEPT = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))
"""The manifest kinds this engine can pull: single-image manifests and indexes (OCI and Docker)."""


def client_for(ref: Reference, auth: RegistryAuth | None, timeout_s: float = 60.0) -> RegistryClient:
    """The client of ``ref``'s registry, with ``auth``'s credentials, CA and ``insecure``."""
    credentials = Credentials(auth.username, auth.password) if auth is not None and auth.has_credentials else None
    return RegistryClient(
        ref.api_host,
        credentials,
        ca_pem=auth.ca_pem if auth is not None else None,
        insecure=auth is not None and auth.insecure,
        timeout=timeout_s,
        user_agent="fogwire-engine-containerd",
    )


def manifest(client: RegistryClient, ref: Reference, obj: str) -> tuple[bytes, str]:
    """The raw manifest (or index) ``obj`` (a tag or digest) of ``ref`` and its media type.

    A registry that labels it ``application/json`` (or not at all) is read for the
    ``mediaType`` the manifest itself declares.
    """
    data, media_type = client.get_manifest(ref.repository, obj, ACCEPT)
    if media_type not in (*INDEX_TYPES, *MANIFEST_TYPES):
        media_type = json.loads(data).get("mediaType", "")
    return data, media_type
