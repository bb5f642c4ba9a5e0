"""The harness's TLS registry: its own CA, htpasswd auth, off 127.0.0.0/8, idempotent, holding the test image."""

from __future__ import annotations

import base64
import ipaddress
import ssl
import urllib.error
import urllib.request

import pytest

from harness import images, services


def _get(url: str, context: ssl.SSLContext, auth: tuple[str, str] | None = None) -> int:
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


def test_the_tls_registry_is_trusted_only_with_its_ca(harness_tls_registry: services.TlsRegistry) -> None:
    url = f"https://{harness_tls_registry.url}/v2/"
    trusting = ssl.create_default_context(cafile=str(harness_tls_registry.ca_cert))
    assert _get(url, trusting) == 401
    assert _get(url, trusting, (harness_tls_registry.username, harness_tls_registry.password)) == 200
    with pytest.raises(urllib.error.URLError) as caught:
        _get(url, ssl.create_default_context())
    assert isinstance(caught.value.reason, ssl.SSLCertVerificationError)
    host = harness_tls_registry.url.rsplit(":", 1)[0]
    assert not ipaddress.ip_address(host).is_loopback, "dockerd would not check its certificate"


def test_the_tls_registry_start_is_idempotent(harness_tls_registry: services.TlsRegistry) -> None:
    assert services.start_tls_registry() == harness_tls_registry
    assert services.is_running("registry-tls")


def test_the_test_image_is_in_the_tls_registry(
    harness_tls_image: images.TlsTestImage, harness_images: images.TestImages
) -> None:
    assert harness_tls_image.reference == f"{services.TLS_REGISTRY_ADDR}/fogwire/busybox:1"
    assert (harness_tls_image.digest, harness_tls_image.config_digest) == (
        harness_images.digest_v1,
        harness_images.config_digest_v1,
    )
    assert harness_tls_image.ca_pem.startswith("-----BEGIN CERTIFICATE-----")
    again = images.ensure_tls_test_image(services.start_tls_registry(), harness_images)
    assert again == harness_tls_image
