"""Core's registry client against real servers: redirects to a CDN, the TLS registry's own CA, a real proxy.

* redirects: :mod:`harness.registry_fronts` puts the harness registry (htpasswd)
  behind a front that answers blob GETs with ``307`` to "a CDN" on another port,
  which redirects again (relative ``Location``) and refuses any ``Authorization``;
* TLS: the harness TLS registry (198.18.77.1:5443, a CA of the harness's own);
* proxies: Debian's tinyproxy (:mod:`harness.proxy`), demanding Basic credentials.
  Loopback is never proxied, so the proxied targets are on 198.18.77.1 (on ``lo``
  but not a loopback address): the TLS registry through ``CONNECT``, and a
  redirecting front bound there for plain HTTP (absolute URIs).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from fogwire.errors import RegistryCertificateError, RegistryError
from fogwire.http_proxy import ProxySettings
from fogwire.registry_client import Credentials, RegistryClient
from harness import images, proxy, registry_fronts, services

NO_PROXY = ProxySettings()


def layer_of(client: RegistryClient, repository: str, tag: str) -> dict[str, str]:
    """The first layer descriptor of ``repository:tag`` (the harness busybox is single-platform)."""
    data, _ = client.get_manifest(repository, tag)
    return dict(json.loads(data)["layers"][0])


def read_blob(client: RegistryClient, repository: str, digest: str) -> bytes:
    stream, _ = client.open_blob(repository, digest)
    try:
        return stream.read()
    finally:
        stream.close()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def redirecting(harness_registry: services.Registry) -> Iterator[registry_fronts.RedirectingRegistry]:
    with registry_fronts.redirecting_registry(harness_registry) as running:
        yield running


def test_a_blob_redirected_to_another_host_is_fetched_without_the_registrys_authorization(
    redirecting: registry_fronts.RedirectingRegistry, harness_images: images.TestImages
) -> None:
    credentials = Credentials(harness_images.username, harness_images.password)
    with RegistryClient(redirecting.front.address, credentials, proxies=NO_PROXY) as client:
        layer = layer_of(client, "fogwire/busybox", "1")
        assert sha256(read_blob(client, "fogwire/busybox", layer["digest"])) == layer["digest"]
        assert client.has_blob("fogwire/busybox", layer["digest"])  # the kept connection still works
    cdn = redirecting.cdn.traffic
    assert [r.split("?")[0] for r in cdn.requests] == [
        f"GET /cdn/fogwire/busybox/{layer['digest']}",
        f"GET /data/fogwire/busybox/{layer['digest']}",
    ]
    assert cdn.authorizations == [], "the CDN (another origin) was sent the registry's Authorization"
    assert redirecting.front.traffic.authorizations, "the registry itself never got the credentials"


def test_redirect_loops_stop_after_a_bounded_number_of_hops() -> None:
    class Loop(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", "/v2/again" + self.path[-3:])
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Loop)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with RegistryClient(f"127.0.0.1:{server.server_address[1]}", proxies=NO_PROXY) as client:
            with pytest.raises(RegistryError, match="more than 10 redirects"):
                client.get_manifest("app", "1")
    finally:
        server.shutdown()
        server.server_close()


def test_the_tls_registry_with_its_ca_without_it_and_insecure(harness_tls_image: images.TlsTestImage) -> None:
    tls = harness_tls_image
    credentials = Credentials(tls.username, tls.password)
    with RegistryClient(tls.registry, credentials, ca_pem=tls.ca_pem, proxies=NO_PROXY) as client:
        assert client.base_url == f"https://{tls.registry}"
        assert client.manifest_digest("fogwire/busybox", "1") == tls.digest
    with RegistryClient(tls.registry, credentials, proxies=NO_PROXY) as client:
        with pytest.raises(RegistryCertificateError) as caught:
            client.get_manifest("fogwire/busybox", "1")
    assert tls.registry in str(caught.value) and tls.password not in str(caught.value)
    with RegistryClient(tls.registry, credentials, insecure=True, proxies=NO_PROXY) as client:
        assert client.manifest_digest("fogwire/busybox", "1") == tls.digest
        assert client.base_url == f"https://{tls.registry}", "an insecure TLS registry is still spoken to over TLS"


def test_an_insecure_registry_without_tls_falls_back_to_plain_http(harness_images: images.TestImages) -> None:
    credentials = Credentials(harness_images.username, harness_images.password)
    with RegistryClient(harness_images.registry, credentials, insecure=True, proxies=NO_PROXY) as client:
        assert client.manifest_digest("fogwire/busybox", "1") == harness_images.digest_v1
        assert client.base_url == f"http://{harness_images.registry}"


def test_https_goes_through_the_proxy_with_connect_and_its_credentials(
    harness_proxy: proxy.TinyProxy, harness_tls_image: images.TlsTestImage
) -> None:
    tls = harness_tls_image
    proxies = ProxySettings(https_proxy=harness_proxy.url)
    with RegistryClient(tls.registry, Credentials(tls.username, tls.password), ca_pem=tls.ca_pem, proxies=proxies) as c:
        layer = layer_of(c, "fogwire/busybox", "1")
        assert sha256(read_blob(c, "fogwire/busybox", layer["digest"])) == layer["digest"]
    # one tunnel for the whole exchange: the kept-alive connection goes on inside it (http.client says HTTP/1.0)
    assert harness_proxy.requests() == [f"CONNECT {tls.registry} HTTP/1.0"]


def test_plain_http_goes_through_the_proxy_as_absolute_uris_redirects_too(
    harness_proxy: proxy.TinyProxy,
    harness_images: images.TestImages,
    harness_registry: services.Registry,
    harness_tls_registry: services.TlsRegistry,  # puts 198.18.77.1 on lo
) -> None:
    host = services.TLS_REGISTRY_HOST
    proxies = ProxySettings(http_proxy=harness_proxy.url)
    credentials = Credentials(harness_images.username, harness_images.password)
    with registry_fronts.redirecting_registry(harness_registry, host) as redirecting:
        with RegistryClient(redirecting.front.address, credentials, plain_http=True, proxies=proxies) as client:
            layer = layer_of(client, "fogwire/busybox", "1")
            assert sha256(read_blob(client, "fogwire/busybox", layer["digest"])) == layer["digest"]
        assert redirecting.cdn.traffic.authorizations == []
    seen = harness_proxy.requests()
    assert f"GET http://{redirecting.front.address}/v2/fogwire/busybox/manifests/1 HTTP/1.1" in seen
    assert any(r.startswith(f"GET http://{redirecting.cdn.address}/cdn/") for r in seen)
    assert any(r.startswith(f"GET http://{redirecting.cdn.address}/data/") for r in seen), "relative Location"


def test_no_proxy_and_loopback_bypass_the_proxy(
    harness_proxy: proxy.TinyProxy, harness_tls_image: images.TlsTestImage, harness_images: images.TestImages
) -> None:
    tls = harness_tls_image
    everything = ProxySettings(http_proxy=harness_proxy.url, https_proxy=harness_proxy.url, no_proxy="198.18.0.0/15")
    with RegistryClient(
        tls.registry, Credentials(tls.username, tls.password), ca_pem=tls.ca_pem, proxies=everything
    ) as c:
        assert c.manifest_digest("fogwire/busybox", "1") == tls.digest
    loopback = ProxySettings(http_proxy=harness_proxy.url, https_proxy=harness_proxy.url)
    credentials = Credentials(harness_images.username, harness_images.password)
    with RegistryClient(harness_images.registry, credentials, proxies=loopback) as client:
        assert client.manifest_digest("fogwire/busybox", "1") == harness_images.digest_v1
    assert harness_proxy.requests() == []


def test_wrong_proxy_credentials_fail_naming_the_proxy_not_the_password(
    harness_proxy: proxy.TinyProxy, harness_tls_image: images.TlsTestImage
) -> None:
    tls = harness_tls_image
    wrong = f"http://{harness_proxy.username}:not-the-proxy-password@{harness_proxy.address}"
    proxies = ProxySettings(https_proxy=wrong)
    with RegistryClient(tls.registry, Credentials(tls.username, tls.password), ca_pem=tls.ca_pem, proxies=proxies) as c:
        with pytest.raises(RegistryError) as caught:
            c.get_manifest("fogwire/busybox", "1")
    message = str(caught.value)
    assert harness_proxy.address in message and tls.registry in message
    assert "check the proxy's user name and password" in message
    assert "not-the-proxy-password" not in message and tls.password not in message
