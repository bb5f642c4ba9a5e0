"""Pulls through a Bearer-token registry: a loopback front that asks for a token, then relays to the harness registry."""

from __future__ import annotations

import asyncio
import base64
import http.client
import http.server
import json
import secrets
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fogwire_engine_containerd.engine import ContainerdEngine

from fogwire.engine import EngineContext, RegistryAuth
from fogwire.errors import RegistryAuthError
from fogwire.testing import ContractRegistry

TOKEN = secrets.token_hex(8)


class _TokenFront(http.server.ThreadingHTTPServer):
    def __init__(self, upstream: str, upstream_basic: str, username: str, password: str) -> None:
        self.upstream = upstream
        self.upstream_basic = upstream_basic
        self.expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.token_requests: list[str] = []
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _TokenFront

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        host = f"127.0.0.1:{self.server.server_address[1]}"
        if self.path.startswith("/token"):
            self.server.token_requests.append(self.path)
            if self.headers.get("Authorization") != self.server.expected:
                self._reply(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}')
                return
            self._reply(200, json.dumps({"token": TOKEN}).encode(), {"Content-Type": "application/json"})
            return
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            challenge = f'Bearer realm="http://{host}/token",service="front",scope="repository:fogwire/busybox:pull"'
            self._reply(401, b"{}", {"WWW-Authenticate": challenge})
            return
        conn = http.client.HTTPConnection(self.server.upstream, timeout=10)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "authorization", "connection")}
        headers["Authorization"] = self.server.upstream_basic
        conn.request("GET", self.path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        keep = {k: v for k, v in resp.getheaders() if k.lower() in ("content-type", "docker-content-digest")}
        self._reply(resp.status, body, keep)


@pytest.fixture
def front(fogwire_registry: ContractRegistry) -> Iterator[_TokenFront]:
    auth = fogwire_registry.auth
    basic = "Basic " + base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode()
    server = _TokenFront(fogwire_registry.server, basic, "token-user", "token-secret")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


async def test_bearer_token_flow_pulls_and_wrong_credentials_fail(
    front: _TokenFront, fogwire_registry: ContractRegistry, harness_containerd_url: str
) -> None:
    with tempfile.TemporaryDirectory(prefix="fwr-") as tmp:
        base = Path(tmp)
        engine = ContainerdEngine(
            EngineContext("bearer", base / "d", base / "r", base / "l", url=harness_containerd_url,
                          options={"namespace": "fwbearer-test"})
        )  # fmt: skip
        await engine.start()
        try:
            reference = f"127.0.0.1:{front.server_address[1]}/fogwire/busybox:1"
            server = f"127.0.0.1:{front.server_address[1]}"
            with pytest.raises(RegistryAuthError) as caught:
                await engine.pull(reference, RegistryAuth(server, "token-user", "wrong-secret", insecure=True))
            assert "wrong-secret" not in str(caught.value)
            digest = await engine.pull(reference, RegistryAuth(server, "token-user", "token-secret", insecure=True))
            assert digest is not None and await engine.image_digest(reference) == digest
            assert any(
                "scope=repository%3Afogwire%2Fbusybox%3Apull" in p and "service=front" in p
                for p in front.token_requests
            )
            assert engine.images is not None
            for image in await asyncio.to_thread(engine.images.list):
                await asyncio.to_thread(engine.images.delete, image.name)
        finally:
            await engine.close()
