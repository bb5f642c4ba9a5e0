"""The containerd engine pulls from a registry that serves its blobs from another host (as Docker Hub does)."""

from __future__ import annotations

from fogwire.engine import Engine, RegistryAuth
from harness import images, registry_fronts, services


async def test_a_pull_follows_blob_redirects_without_sending_the_credentials_elsewhere(
    fogwire_engine: Engine, harness_registry: services.Registry, harness_images: images.TestImages
) -> None:
    with registry_fronts.redirecting_registry(harness_registry) as redirecting:
        server = redirecting.front.address
        reference = f"{server}/fogwire/busybox:1"
        digest = await fogwire_engine.pull(
            reference, RegistryAuth(server, harness_images.username, harness_images.password)
        )
        assert digest == harness_images.config_digest_v1
        assert await fogwire_engine.image_digest(reference) == digest
    cdn = redirecting.cdn.traffic
    assert any(r.startswith("GET /data/fogwire/busybox/") for r in cdn.requests), "no blob came from the CDN"
    assert cdn.authorizations == [], "the CDN (another origin) was sent the registry's Authorization"
