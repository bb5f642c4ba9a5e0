"""One port, TLS and plain HTTP: the first byte is peeked, and plain requests reach only the routes that allow it."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fogwire.api.app import ApiApp, Caller
from fogwire.api.server import HttpServer, Request
from fogwire.testing.pki import Pki, make_pki


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[int, Pki]]:
    pki = make_pki(tmp_path / "pki")

    async def hello(request: Request, params: Any, caller: Caller) -> Any:
        return {"secure": request.secure}

    app = ApiApp(lambda: "admin")
    app.add("GET", "/public", hello, access="public")
    app.add("GET", "/legacy", hello, access="public", plain=True)
    app.add("GET", "/admin", hello)
    server = HttpServer(app, body_limit=app.body_limit, head_timeout_s=0.5)
    _, port = await server.listen_tcp("127.0.0.1", 0, pki.server_context(), plain_too=True)
    try:
        yield port, pki
    finally:
        await server.close()


def _get(connection: http.client.HTTPConnection, path: str, token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    return response.status, json.loads(response.read())


async def test_tls_and_plain_http_share_the_port(served: tuple[int, Pki]) -> None:
    port, pki = served
    context = ssl.create_default_context(cafile=str(pki.ca_cert))

    def calls() -> list[tuple[int, Any]]:
        secure = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
        plain = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            return [
                _get(secure, "/admin", "admin"),
                _get(secure, "/legacy"),
                _get(plain, "/legacy"),
                _get(plain, "/public"),
                _get(plain, "/admin", "admin"),
                _get(secure, "/public"),  # the TLS connection is still kept alive after the plain one's requests
            ]
        finally:
            secure.close()
            plain.close()

    answers = await asyncio.to_thread(calls)
    assert answers[0] == (200, {"success": True, "data": {"secure": True}})
    assert answers[1] == (200, {"success": True, "data": {"secure": True}})
    assert answers[2] == (200, {"success": True, "data": {"secure": False}})
    assert answers[3] == (200, {"success": True, "data": {"secure": False}})
    status, body = answers[4]
    assert (status, body["error"]["code"]) == (403, "FORBIDDEN")
    assert "HTTPS only" in body["error"]["message"]
    assert answers[5][0] == 200


async def test_a_client_that_sends_nothing_is_dropped_after_the_head_timeout(served: tuple[int, Pki]) -> None:
    port, pki = served

    def silent() -> float:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            started = time.monotonic()
            assert sock.recv(1) == b""  # closed by the server, nothing sent
            return time.monotonic() - started

    waited = await asyncio.to_thread(silent)
    assert 0.3 < waited < 3.0
    # and the port still serves
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        answer = await asyncio.to_thread(_get, connection, "/public")
    finally:
        connection.close()
    assert answer[0] == 200


async def test_a_tls_client_that_stalls_in_the_handshake_is_dropped(served: tuple[int, Pki]) -> None:
    port, _ = served

    def stall() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"\x16\x03\x01")  # the start of a TLS record, and then nothing
            try:
                return sock.recv(100)
            except ConnectionResetError:
                return b""

    started = time.monotonic()
    await asyncio.to_thread(stall)
    assert time.monotonic() - started < 3.0


async def test_head_answers_the_gets_head_without_a_body(served: tuple[int, Pki]) -> None:
    port, _ = served

    def head() -> tuple[int, str | None, bytes, int]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("HEAD", "/public")
            response = connection.getresponse()
            body = response.read()
            follow_up = _get(connection, "/public")[0]  # the connection is still in step
            return response.status, response.getheader("content-length"), body, follow_up
        finally:
            connection.close()

    status, length, body, follow_up = await asyncio.to_thread(head)
    assert (status, body, follow_up) == (200, b"", 200)
    assert length is not None and int(length) > 0


async def test_a_kept_alive_connection_whose_next_head_stalls_gets_408(served: tuple[int, Pki]) -> None:
    port, _ = served

    def stall_second() -> tuple[bytes, float]:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /public HTTP/1.1\r\nHost: t\r\n\r\n")
            first = b""
            while b"}}" not in first:
                first += sock.recv(4096)
            sock.sendall(b"GET /public HTTP/1.1\r\nHo")  # half a head, then nothing
            started = time.monotonic()
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
            return answer, time.monotonic() - started

    answer, waited = await asyncio.to_thread(stall_second)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert waited < 3.0  # the head timeout (0.5 s), not the 30 s idle one
