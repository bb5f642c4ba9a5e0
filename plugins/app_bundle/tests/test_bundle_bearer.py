"""Bearer-token registries: a loopback front that demands a token, then relays to the harness registry.

The front answers ``401`` with ``WWW-Authenticate: Bearer realm=…`` until a request
carries the token its ``/token`` endpoint hands out for the right basic
credentials; then it relays every request (any method, with its body) to the
harness registry, rewriting ``Location`` so upload sessions stay on the front.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from fogwire_bundle.create import create_bundle
from fogwire_bundle.errors import BundleError
from fogwire_bundle.importer import RegistryTarget, import_bundle
from fogwire_bundle.registry import Credentials, RegistryClient
from fogwire_bundle.testing import Image, client_for, layout_bundle, prefix_fixture, random_layer

from harness import images, registry_fronts, services

TOKEN = "fogwire-bundle-test-token"

prefix = prefix_fixture("bundle-bearer")


class _Front(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: services.Registry) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream
        self.scopes: list[str] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _Handler(registry_fronts.QuietHandler):
    server: _Front

    def _token(self) -> None:
        upstream = self.server.upstream
        expected = "Basic " + base64.b64encode(f"{upstream.username}:{upstream.password}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self._reply(401, b'{"details":"bad credentials"}')
            return
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        self.server.scopes.extend(query.get("scope", []))
        self._reply(200, json.dumps({"token": TOKEN}).encode(), {"Content-Type": "application/json"})

    def _relay(self) -> None:
        if self.path.startswith("/token"):
            self._token()
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            challenge = f'Bearer realm="http://{self.server.address}/token",service="front"'
            self._reply(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {"WWW-Authenticate": challenge})
            return
        upstream = self.server.upstream
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("authorization", "host", "connection")}
        headers["Authorization"] = (
            "Basic " + base64.b64encode(f"{upstream.username}:{upstream.password}".encode()).decode()
        )
        conn = http.client.HTTPConnection(upstream.url, timeout=60)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        out = {}
        for key, value in response.getheaders():
            if key.lower() in ("content-length", "connection", "transfer-encoding", "date"):
                continue
            if key.lower() == "location":
                value = value.replace(f"http://{upstream.url}", f"http://{self.server.address}")
            out[key] = value
        self.send_response(response.status)
        for key, value in out.items():
            self.send_header(key, value)
        self.send_header("Content-Length", response.getheader("Content-Length") or str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _relay


@pytest.fixture
def front(harness_registry: services.Registry) -> Iterator[_Front]:
    server = _Front(harness_registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_create_through_a_bearer_registry(tmp_path: Path, front: _Front, harness_images: images.TestImages) -> None:
    def clients(server: str) -> RegistryClient:
        assert server == front.address
        return RegistryClient(server, Credentials(harness_images.username, harness_images.password), insecure=True)

    reference = f"{front.address}/fogwire/busybox:2"
    result = create_bundle(tmp_path / "b.tar", [reference], clients)
    assert [i.digest for i in result.images] == [harness_images.digest_v2]
    assert "repository:fogwire/busybox:pull" in front.scopes


async def test_push_through_a_bearer_registry(
    tmp_path: Path, front: _Front, harness_registry: services.Registry, prefix: str
) -> None:
    layer = random_layer(tmp_path / "l.tar", 300_000, seed=41)
    bundle = layout_bundle(tmp_path, [Image(f"127.0.0.1:1/{prefix}/app:1", [layer])])
    with RegistryClient(
        front.address, Credentials(harness_registry.username, harness_registry.password), insecure=True
    ) as client:
        result = await import_bundle(bundle, RegistryTarget(client, ""), work_dir=tmp_path / "work")
    assert [i.status for i in result.images] == ["pushed"]
    assert f"repository:{prefix}/app:pull,push" in front.scopes
    with client_for(harness_registry) as direct:
        assert direct.manifest_digest(f"{prefix}/app", "1") == result.images[0].digest


async def test_wrong_credentials_for_the_token_service(
    tmp_path: Path, front: _Front, harness_registry: services.Registry
) -> None:
    bundle = layout_bundle(tmp_path, [Image("127.0.0.1:1/nope/app:1", [random_layer(tmp_path / "l", 100, 1)])])
    with RegistryClient(
        front.address, Credentials(harness_registry.username, "wrong-password"), insecure=True
    ) as client:
        with pytest.raises(BundleError, match="token service refused the credentials") as caught:
            await import_bundle(bundle, RegistryTarget(client, ""), work_dir=tmp_path / "work")
    assert "wrong-password" not in str(caught.value)
