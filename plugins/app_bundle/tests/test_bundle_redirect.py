"""``fogwire bundle create`` from a registry that serves its blobs from another host (as Docker Hub does)."""

from __future__ import annotations

from pathlib import Path

from fogwire_bundle.create import create_bundle
from fogwire_bundle.registry import Credentials, RegistryClient

from harness import images, registry_fronts, services


def test_create_follows_blob_redirects_without_sending_the_credentials_elsewhere(
    tmp_path: Path, harness_registry: services.Registry, harness_images: images.TestImages
) -> None:
    with registry_fronts.redirecting_registry(harness_registry) as redirecting:
        front = redirecting.front.address

        def clients(server: str) -> RegistryClient:
            assert server == front
            return RegistryClient(server, Credentials(harness_images.username, harness_images.password))

        result = create_bundle(tmp_path / "b.tar", [f"{front}/fogwire/busybox:1"], clients)
    assert [i.digest for i in result.images] == [harness_images.digest_v1]
    cdn = redirecting.cdn.traffic
    fetched = {r.split("?")[0].rsplit("/", 1)[-1] for r in cdn.requests if r.startswith("GET /data/")}
    assert fetched == {b.digest for b in result.blobs if b.digest != harness_images.digest_v1}
    assert cdn.authorizations == [], "the CDN (another origin) was sent the registry's Authorization"
