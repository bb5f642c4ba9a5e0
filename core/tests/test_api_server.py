"""The agent API's HTTP server and request pipeline, in-process with tiny handlers.

:class:`~fogwire.api.server.HttpServer` serves an :class:`~fogwire.api.app.ApiApp`
over a unix socket in ``tmp_path`` and over TCP on 127.0.0.1 (port 0); the client
side is h11 over asyncio streams (or raw bytes where the request is meant to be
broken). Covers the envelope, bearer tokens, 404/405, per-route body caps (declared
and chunked), the head timeout, keep-alive, the connection cap, a failing handler,
streamed answers, and the Prometheus text exposition.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import h11
import pytest

from fogwire.api.app import ApiApp, Caller
from fogwire.api.metrics import Metrics
from fogwire.api.server import HttpServer, Request, Response

TOKEN = "s3cret-admin-token"
UPLOAD_LIMIT = 100


# -- the client side --------------------------------------------------------------------


@attrs.frozen
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes
    chunks: tuple[bytes, ...] = ()

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """One HTTP/1.1 connection driven by h11 (so keep-alive and chunked answers are parsed for real)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def unix(cls, path: Path) -> Client:
        return cls(*await asyncio.open_unix_connection(str(path)))

    @classmethod
    async def tcp(cls, address: tuple[str, int]) -> Client:
        return cls(*await asyncio.open_connection(*address))

    async def send(self, *events: Any) -> None:
        for event in events:
            data = self.conn.send(event)
            if data:
                self.writer.write(data)
        await self.writer.drain()

    async def next_event(self, timeout: float = 5.0) -> Any:
        async with asyncio.timeout(timeout):
            while True:
                event = self.conn.next_event()
                if event is not h11.NEED_DATA:
                    return event
                self.conn.receive_data(await self.reader.read(65536))

    async def response(self, timeout: float = 5.0) -> Reply:
        head = await self.next_event(timeout)
        assert isinstance(head, h11.Response), head
        chunks: list[bytes] = []
        while True:
            event = await self.next_event(timeout)
            if isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise AssertionError(f"unexpected {event!r}")
        headers = {k.decode().lower(): v.decode() for k, v in head.headers}
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        return Reply(head.status_code, headers, b"".join(chunks), tuple(chunks))

    async def request(
        self,
        method: str,
        target: str,
        *,
        token: str | None = None,
        authorization: str | bytes | None = None,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> Reply:
        all_headers: list[tuple[str, str | bytes]] = [("host", "test"), *headers]
        if token is not None:
            all_headers.append(("authorization", f"Bearer {token}"))
        if authorization is not None:
            all_headers.append(("authorization", authorization))
        if body or method in ("POST", "PUT"):
            all_headers.append(("content-length", str(len(body))))
        await self.send(h11.Request(method=method, target=target, headers=all_headers))
        if body:
            await self.send(h11.Data(data=body))
        await self.send(h11.EndOfMessage())
        return await self.response()

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


async def read_all(reader: asyncio.StreamReader, timeout: float = 5.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = bytearray()
    async with asyncio.timeout(timeout):
        while True:
            try:
                part = await reader.read(65536)
            except ConnectionResetError:
                break
            if not part:
                break
            data += part
    return bytes(data)


def parse_raw(raw: bytes) -> Reply:
    """A whole response with a Content-Length (what the server's own errors are)."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return Reply(status, headers, rest[: int(headers["content-length"])])


# -- the server side --------------------------------------------------------------------


@attrs.define
class Calls:
    """What the handlers saw."""

    uploads: list[bytes] = attrs.field(factory=list)
    peers: list[str] = attrs.field(factory=list)
    stream_closed: bool = False
    release: asyncio.Event = attrs.field(factory=asyncio.Event)


def make_app(calls: Calls, token: str | None = TOKEN) -> ApiApp:
    app = ApiApp(lambda: token, Metrics())

    async def hello(request: Request, params: Mapping[str, str], caller: Caller) -> Any:
        calls.peers.append(request.peer)
        return {"hello": "world", "caller": caller.kind}

    async def item(request: Request, params: Mapping[str, str], caller: Caller) -> Any:
        return {"name": params["name"], "method": request.method}

    async def public(request: Request, params: Mapping[str, str], caller: Caller) -> Any:
        return {"public": True, "caller": caller.kind}

    async def upload(request: Request, params: Mapping[str, str], caller: Caller) -> Any:
        calls.uploads.append(request.body)
        return {"received": len(request.body)}

    async def boom(request: Request, params: Mapping[str, str], caller: Caller) -> Any:
        raise RuntimeError("the handler broke")

    async def stream(request: Request, params: Mapping[str, str], caller: Caller) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            try:
                yield b"first\n"
                # the rest only once the client has seen the first chunk: proof it was not buffered
                await calls.release.wait()
                for n in range(2, 6):
                    yield f"line {n}\n".encode()
                    await asyncio.sleep(0)
                yield b""  # an empty chunk is skipped, not sent as the end
                yield b"last\n"
            finally:
                calls.stream_closed = True

        return Response(200, content_type="application/x-ndjson", stream=chunks())

    async def metrics(request: Request, params: Mapping[str, str], caller: Caller) -> Response:
        return Response(200, app.metrics.exposition().encode(), content_type="text/plain; version=0.0.4")

    app.add("GET", "/v1/hello", hello, plain=True)
    app.add("GET", "/v1/items/{name}", item)
    app.add("PUT", "/v1/items/{name}", item)
    app.add("POST", "/v1/items/{name}:start", item)
    app.add("GET", "/health/live", public, access="public")
    app.add("POST", "/upload", upload, body_limit=UPLOAD_LIMIT, plain=True)
    app.add("GET", "/boom", boom, plain=True)
    app.add("GET", "/stream", stream, plain=True)
    app.add("GET", "/metrics", metrics, access="public")
    app.add("GET", "/v1/workload-only", public, access="workload")
    return app


@attrs.define
class Served:
    app: ApiApp
    server: HttpServer
    calls: Calls
    sock: Path
    tcp: tuple[str, int]

    async def unix(self) -> Client:
        return await Client.unix(self.sock)

    async def connect_tcp(self) -> Client:
        return await Client.tcp(self.tcp)


async def serve(tmp_path: Path, **options: Any) -> Served:
    calls = Calls()
    app = make_app(calls)
    server = HttpServer(app, body_limit=app.body_limit, **options)
    sock = tmp_path / "api.sock"
    assert len(str(sock)) < 100, "unix socket path too long for AF_UNIX"
    listener = await server.listen_unix(sock)
    assert listener.sockets
    host, port = await server.listen_tcp("127.0.0.1", 0)
    assert host == "127.0.0.1" and port > 0
    return Served(app, server, calls, sock, (host, port))


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    s = await serve(tmp_path, head_timeout_s=0.5, body_timeout_s=2.0, idle_timeout_s=5.0)
    try:
        yield s
    finally:
        await s.server.close()


# -- envelope, routing, tokens ----------------------------------------------------------


async def test_success_is_wrapped_in_the_envelope_on_unix_and_tcp(served: Served) -> None:
    unix = await served.unix()
    reply = await unix.request("GET", "/v1/hello", token=TOKEN)
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert int(reply.headers["content-length"]) == len(reply.body)
    assert reply.json == {"success": True, "data": {"hello": "world", "caller": "admin"}}
    # path parameters, percent-decoded path
    reply = await unix.request("GET", "/v1/items/web%2D1", token=TOKEN)
    assert reply.json == {"success": True, "data": {"name": "web-1", "method": "GET"}}
    reply = await unix.request("POST", "/v1/items/web:start", token=TOKEN)
    assert reply.json["data"] == {"name": "web", "method": "POST"}
    await unix.close()

    # the listener TCP picked (port 0) is the one listen_tcp reported
    tcp_servers = [s for s in served.server._servers if s.sockets and s.sockets[0].family.name == "AF_INET"]
    assert tcp_servers[0].sockets[0].getsockname()[:2] == served.tcp
    tcp = await served.connect_tcp()
    reply = await tcp.request("GET", "/v1/hello", token=TOKEN)
    assert reply.json == {"success": True, "data": {"hello": "world", "caller": "admin"}}
    await tcp.close()


def _assert_error(reply: Reply, status: int, code: str) -> dict[str, Any]:
    assert reply.status == status, reply
    body = reply.json
    assert body["success"] is False
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", "wrong-token", f"Basic {TOKEN}x", "Bearer " + TOKEN[:-1], "Bearer tökén".encode()],
    ids=["none", "wrong-bearer", "wrong-bare", "basic", "prefix", "non-ascii"],
)
async def test_admin_route_refuses_a_missing_or_wrong_token(served: Served, authorization: str | bytes | None) -> None:
    client = await served.unix()
    reply = await client.request("GET", "/v1/hello", authorization=authorization)
    _assert_error(reply, 401, "UNAUTHORIZED")
    assert served.calls.peers == []  # the handler never ran
    await client.close()


@pytest.mark.parametrize("authorization", [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"Bearer   {TOKEN}", TOKEN], ids=str)
async def test_admin_token_is_accepted(served: Served, authorization: str) -> None:
    client = await served.unix()
    reply = await client.request("GET", "/v1/hello", authorization=authorization)
    assert reply.status == 200
    assert reply.json["data"]["caller"] == "admin"
    await client.close()


async def test_no_admin_token_configured_closes_admin_routes(tmp_path: Path) -> None:
    app = make_app(Calls(), token=None)
    server = HttpServer(app, body_limit=app.body_limit)
    sock = tmp_path / "api.sock"
    await server.listen_unix(sock)
    try:
        client = await Client.unix(sock)
        for authorization in (None, "Bearer", "Bearer anything"):
            _assert_error(await client.request("GET", "/v1/hello", authorization=authorization), 401, "UNAUTHORIZED")
        await client.close()
    finally:
        await server.close()
    assert not sock.exists()  # close() removes the socket


async def test_public_route_needs_no_token(served: Served) -> None:
    client = await served.unix()
    reply = await client.request("GET", "/health/live")
    assert reply.json == {"success": True, "data": {"public": True, "caller": "anonymous"}}
    # a token does not hurt (the caller is still anonymous on a public route)
    reply = await client.request("GET", "/health/live", token="whatever")
    assert reply.status == 200
    await client.close()
    # public routes answer over plain TCP; admin routes not marked plain are HTTPS-only there
    tcp = await served.connect_tcp()
    assert (await tcp.request("GET", "/health/live")).status == 200
    _assert_error(await tcp.request("GET", "/v1/items/x", token=TOKEN), 403, "FORBIDDEN")
    await tcp.close()


async def test_workload_route_without_an_authenticator_is_unauthorised(served: Served) -> None:
    client = await served.unix()
    _assert_error(await client.request("GET", "/v1/workload-only", token="a.b.c"), 401, "UNAUTHORIZED")
    # the admin token is valid everywhere
    assert (await client.request("GET", "/v1/workload-only", token=TOKEN)).status == 200
    await client.close()


async def test_unknown_path_is_404_not_found(served: Served) -> None:
    client = await served.unix()
    error = _assert_error(await client.request("GET", "/v1/nope", token=TOKEN), 404, "NOT_FOUND")
    assert "/v1/nope" in error["message"]
    # without a token too: an unknown route is not found before anyone is asked for a token
    _assert_error(await client.request("GET", "/nothing/here"), 404, "NOT_FOUND")
    # a parameter does not match across a slash
    _assert_error(await client.request("GET", "/v1/items/a/b", token=TOKEN), 404, "NOT_FOUND")
    await client.close()


async def test_wrong_method_is_405_with_the_allowed_ones(served: Served) -> None:
    client = await served.unix()
    error = _assert_error(await client.request("DELETE", "/v1/items/x", token=TOKEN), 405, "METHOD_NOT_ALLOWED")
    assert error["details"] == {"allowed": ["GET", "PUT"]}
    error = _assert_error(await client.request("POST", "/health/live"), 405, "METHOD_NOT_ALLOWED")
    assert error["details"]["allowed"] == ["GET"]
    await client.close()


# -- body limits ------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["unix", "tcp"])
async def test_body_over_the_route_limit_with_content_length_is_413(served: Served, transport: str) -> None:
    reader, writer = (
        await asyncio.open_unix_connection(str(served.sock))
        if transport == "unix"
        else await asyncio.open_connection(*served.tcp)
    )
    # Only the head: the server must answer from the declared length alone, without reading a byte of body.
    writer.write(
        f"POST /upload HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Length: {UPLOAD_LIMIT + 1}\r\n\r\n".encode()
    )
    await writer.drain()
    reply = parse_raw(await read_all(reader))  # answered, then closed
    _assert_error(reply, 413, "PAYLOAD_TOO_LARGE")
    assert reply.headers["connection"] == "close"
    assert str(UPLOAD_LIMIT) in reply.json["error"]["message"]
    assert served.calls.uploads == []
    writer.close()

    # at the limit it is taken, and the default limit (1 MiB) applies elsewhere
    client = await (served.unix() if transport == "unix" else served.connect_tcp())
    reply = await client.request("POST", "/upload", token=TOKEN, body=b"x" * UPLOAD_LIMIT)
    assert reply.json == {"success": True, "data": {"received": UPLOAD_LIMIT}}
    assert served.calls.uploads == [b"x" * UPLOAD_LIMIT]
    await client.close()


async def test_chunked_body_growing_past_the_limit_is_413(served: Served) -> None:
    reader, writer = await asyncio.open_unix_connection(str(served.sock))
    writer.write(
        f"POST /upload HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    )
    # 3 x 40 bytes: over the 100-byte cap on the third chunk; the body never ends (no 0-length chunk)
    for _ in range(3):
        writer.write(b"28\r\n" + b"y" * 40 + b"\r\n")
        await writer.drain()
    reply = parse_raw(await read_all(reader))
    _assert_error(reply, 413, "PAYLOAD_TOO_LARGE")
    assert served.calls.uploads == []
    writer.close()

    # a chunked body under the cap reaches the handler whole
    client = await served.unix()
    await client.send(
        h11.Request(
            method="POST",
            target="/upload",
            headers=[("host", "t"), ("authorization", f"Bearer {TOKEN}"), ("transfer-encoding", "chunked")],
        ),
        h11.Data(data=b"a" * 30),
        h11.Data(data=b"b" * 30),
        h11.EndOfMessage(),
    )
    reply = await client.response()
    assert reply.json == {"success": True, "data": {"received": 60}}
    assert served.calls.uploads == [b"a" * 30 + b"b" * 30]
    await client.close()


# -- timeouts and connections -----------------------------------------------------------


async def test_a_stalled_request_head_times_out_while_others_are_served(served: Served) -> None:
    reader, writer = await asyncio.open_unix_connection(str(served.sock))
    started = time.monotonic()
    writer.write(b"GET /health/live HTTP/1.1\r\nHost: t\r\n")  # no blank line: half a head
    await writer.drain()
    answer = asyncio.create_task(read_all(reader, timeout=5.0))

    # meanwhile other clients get answers, on both listeners, well before the stalled one is dropped
    for connect in (served.unix, served.connect_tcp):
        client = await connect()
        assert (await client.request("GET", "/health/live")).status == 200
        await client.close()
    assert not answer.done()
    assert time.monotonic() - started < 0.5

    raw = await answer
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 3.0, elapsed
    if raw:  # the server answers 408 (disconnecting silently would be allowed too)
        _assert_error(parse_raw(raw), 408, "REQUEST_TIMEOUT")
    writer.close()

    # a client that connects and says nothing is dropped without an answer
    reader, writer = await asyncio.open_connection(*served.tcp)
    assert await read_all(reader, timeout=3.0) == b""
    writer.close()


async def test_keep_alive_serves_requests_one_after_another_on_one_connection(served: Served) -> None:
    client = await served.connect_tcp()
    first = await client.request("GET", "/v1/hello", token=TOKEN)
    second = await client.request("GET", "/v1/hello", token=TOKEN)
    third = await client.request("GET", "/health/live")
    assert [r.status for r in (first, second, third)] == [200, 200, 200]
    assert "connection" not in first.headers  # not closing
    # both handled requests came from the same client port: one connection
    assert len(served.calls.peers) == 2
    assert served.calls.peers[0] == served.calls.peers[1]
    assert served.calls.peers[0].startswith("127.0.0.1:")
    await client.close()

    # pipelined: two requests written at once, two answers in order
    reader, writer = await asyncio.open_unix_connection(str(served.sock))
    writer.write(
        b"GET /v1/items/one HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n\r\n"
        b"GET /v1/items/two HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n"
        b"Connection: close\r\n\r\n"
    )
    await writer.drain()
    raw = await read_all(reader)
    assert raw.count(b"HTTP/1.1 200") == 2
    assert raw.index(b'"one"') < raw.index(b'"two"')
    writer.close()


async def test_max_connections_refuses_the_third_while_two_are_served(tmp_path: Path) -> None:
    served = await serve(tmp_path, head_timeout_s=5.0, idle_timeout_s=10.0, max_connections=2)
    try:
        first, second = await served.unix(), await served.connect_tcp()
        # a request on each: both are accepted and hold their slot
        assert (await first.request("GET", "/health/live")).status == 200
        assert (await second.request("GET", "/health/live")).status == 200

        reader, writer = await asyncio.open_unix_connection(str(served.sock))
        writer.write(b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
        try:
            await writer.drain()
        except ConnectionError:
            pass
        assert await read_all(reader, timeout=3.0) == b""  # closed without an answer
        writer.close()

        # the first two still work, on their kept-alive connections
        assert (await first.request("GET", "/v1/hello", token=TOKEN)).status == 200
        assert (await second.request("GET", "/v1/hello", token=TOKEN)).status == 200

        # a slot freed is a slot for the next client
        await first.close()
        deadline = time.monotonic() + 5
        while True:
            third = await served.unix()
            try:
                reply = await third.request("GET", "/health/live")
                break
            except (AssertionError, h11.RemoteProtocolError, ConnectionError):
                await third.close()
                assert time.monotonic() < deadline, "the freed slot was never given to a new client"
                await asyncio.sleep(0.05)
        assert reply.status == 200
        await third.close()
        await second.close()
    finally:
        await served.server.close()


async def test_a_handler_that_raises_is_500_internal_and_the_server_goes_on(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    client = await served.unix()
    error = _assert_error(await client.request("GET", "/boom", token=TOKEN), 500, "INTERNAL")
    assert "RuntimeError" in error["message"] and "the handler broke" in error["message"]
    assert "GET /boom failed" in caplog.text
    # the same connection and new ones are still served
    assert (await client.request("GET", "/v1/hello", token=TOKEN)).status == 200
    await client.close()
    tcp = await served.connect_tcp()
    _assert_error(await tcp.request("GET", "/boom", token=TOKEN), 500, "INTERNAL")
    assert (await tcp.request("GET", "/health/live")).status == 200
    await tcp.close()


async def test_a_streamed_response_arrives_chunked_and_in_order(served: Served) -> None:
    client = await served.unix()
    await client.send(
        h11.Request(method="GET", target="/stream", headers=[("host", "t"), ("authorization", f"Bearer {TOKEN}")]),
        h11.EndOfMessage(),
    )
    head = await client.next_event()
    assert isinstance(head, h11.Response) and head.status_code == 200
    headers = {k.decode().lower(): v.decode() for k, v in head.headers}
    assert headers["transfer-encoding"] == "chunked"
    assert "content-length" not in headers
    assert headers["content-type"] == "application/x-ndjson"
    first = await client.next_event()
    assert isinstance(first, h11.Data) and bytes(first.data) == b"first\n"  # before the handler is released
    served.calls.release.set()
    rest = bytearray()
    while not isinstance(event := await client.next_event(), h11.EndOfMessage):
        assert isinstance(event, h11.Data)
        rest += event.data
    assert bytes(rest) == b"line 2\nline 3\nline 4\nline 5\nlast\n"
    assert served.calls.stream_closed
    # the connection is reusable after a streamed answer
    client.conn.start_next_cycle()
    assert (await client.request("GET", "/health/live")).status == 200
    await client.close()


# -- metrics ----------------------------------------------------------------------------

SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r'(?:\{(?P<labels>(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*)\})?'
    r" (?P<value>[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\+Inf|-Inf|NaN))$"
)
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')


def parse_exposition(text: str) -> tuple[dict[str, tuple[str, str]], list[tuple[str, dict[str, str], float]]]:
    """Check every line of the text format (0.0.4); metric families (help, type) and samples."""
    assert text.endswith("\n")
    families: dict[str, tuple[str, str]] = {}
    helps: dict[str, str] = {}
    samples = []
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            helps[name] = help_text
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            assert name in helps, f"TYPE before HELP for {name}"
            assert name not in families, f"{name} declared twice"
            families[name] = (helps[name], kind)
        else:
            found = SAMPLE.match(line)
            assert found, f"not a valid sample line: {line!r}"
            labels = {
                k: v.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
                for k, v in LABEL.findall(found["labels"] or "")
            }
            name = found["name"]
            family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in families else name
            assert family in families, f"sample {name} before its TYPE line"
            samples.append((name, labels, float(found["value"])))
    return families, samples


def value(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    found = [v for n, labels_, v in samples if n == name and labels_ == labels]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def test_metrics_exposition_is_valid_prometheus_text() -> None:
    metrics = Metrics()
    counter = metrics.counter("fw_things_total", "things by kind and result", ("kind", "result"))
    counter.inc(kind="create", result="ok")
    counter.inc(2, kind="create", result="ok")
    counter.inc(kind='say "hi"\nthen\\go', result="failed")
    assert metrics.counter("fw_things_total", "again", ("kind", "result")) is counter  # made once
    histogram = metrics.histogram("fw_pass_seconds", "how long passes took")
    for seconds in (0.003, 0.2, 0.2, 7.5, 100.0):
        histogram.observe(seconds)
    gauge_values = {("running",): 2.0, ("exited",): 1.0}
    metrics.gauge("fw_workloads", "workloads by state", lambda: dict(gauge_values), ("state",))
    metrics.gauge("fw_unlabelled", "a gauge without labels", lambda: {(): 0.5})

    text = metrics.exposition()
    families, samples = parse_exposition(text)
    assert families == {
        "fw_things_total": ("things by kind and result", "counter"),
        "fw_pass_seconds": ("how long passes took", "histogram"),
        "fw_workloads": ("workloads by state", "gauge"),
        "fw_unlabelled": ("a gauge without labels", "gauge"),
    }
    assert value(samples, "fw_things_total", kind="create", result="ok") == 3
    assert value(samples, "fw_things_total", kind='say "hi"\nthen\\go', result="failed") == 1
    assert 'kind="say \\"hi\\"\\nthen\\\\go"' in text  # escaped as the format says
    assert "\nthen" not in text  # no raw newline inside a label value

    buckets = [(labels_["le"], v) for n, labels_, v in samples if n == "fw_pass_seconds_bucket"]
    assert buckets[-1] == ("+Inf", 5)
    assert [b for b in buckets if b[0] in ("0.005", "0.25", "5", "10", "60")] == [
        ("0.005", 1),
        ("0.25", 3),
        ("5", 3),
        ("10", 4),
        ("60", 4),
    ]
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "buckets are cumulative"
    bounds = [float(le) for le, _ in buckets]
    assert bounds == sorted(bounds) and bounds[-1] == float("inf")
    assert value(samples, "fw_pass_seconds_sum") == pytest.approx(0.003 + 0.2 + 0.2 + 7.5 + 100.0)
    assert value(samples, "fw_pass_seconds_count") == 5
    assert 'fw_pass_seconds_bucket{le="+Inf"} 5' in text.splitlines()

    assert value(samples, "fw_workloads", state="running") == 2
    assert value(samples, "fw_workloads", state="exited") == 1
    assert value(samples, "fw_unlabelled") == 0.5
    # a gauge is read at each scrape
    gauge_values[("running",)] = 5.0
    assert value(parse_exposition(metrics.exposition())[1], "fw_workloads", state="running") == 5


async def test_api_requests_total_counts_by_route_and_code(served: Served) -> None:
    client = await served.unix()
    for _ in range(3):
        await client.request("GET", "/v1/items/a", token=TOKEN)
    await client.request("GET", "/v1/items/b")  # 401
    await client.request("GET", "/nope")  # 404
    await client.request("DELETE", "/v1/items/c", token=TOKEN)  # 405
    await client.request("GET", "/boom", token=TOKEN)  # 500
    reply = await client.request("GET", "/metrics")
    await client.close()
    assert reply.headers["content-type"].startswith("text/plain")
    families, samples = parse_exposition(reply.body.decode())
    assert families["fogwire_api_requests_total"] == ("API requests by route and status code", "counter")
    name = "fogwire_api_requests_total"
    assert value(samples, name, route="/v1/items/{name}", code="200") == 3
    assert value(samples, name, route="/v1/items/{name}", code="401") == 1
    assert value(samples, name, route="unmatched", code="404") == 1
    assert value(samples, name, route="unmatched", code="405") == 1
    assert value(samples, name, route="/boom", code="500") == 1
    # the scrape itself is counted after it is answered
    assert not [lb for n, lb, _ in samples if n == name and lb["route"] == "/metrics"]
    assert value(parse_exposition(served.app.metrics.exposition())[1], name, route="/metrics", code="200") == 1
