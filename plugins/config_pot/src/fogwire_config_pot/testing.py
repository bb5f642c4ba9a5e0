"""A real local API server for tests and benchmarks: both generations, with faults.

:class:`LocalApiServer` is an aiohttp web server on loopback that speaks
EdgeletAPI v1 (bearer token, ``{success, data}`` envelope, control websocket
``/v1/microservices/control``) and the legacy v2 API (``POST /v2/config/get``,
control socket ``/v2/control/socket/id/<id>``), as ``upstream-systems.md`` §1.9
and §2.9 describe them. It records every request and every byte the client sends
on a control socket, and can inject faults: error replies, slow replies, invalid
JSON, refused websocket upgrades, sockets dropped mid-stream.

:func:`make_pki` (from :mod:`fogwire.testing.pki`) makes a CA and a server
certificate, for HTTPS tests with a CA the test owns.

Nothing here is imported by the source itself.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections import deque
from collections.abc import Iterable
from typing import Any

import attrs
from aiohttp import WSMsgType, web

from fogwire.testing.pki import Pki, make_pki

__all__ = ["Fault", "LocalApiServer", "Pki", "RecordedRequest", "make_pki"]

V1_CONFIG = "/v1/microservices/config"
V1_CONTROL = "/v1/microservices/control"
V2_CONFIG = "/v2/config/get"
V2_CONTROL_PREFIX = "/v2/control/socket/id/"


@attrs.frozen
class RecordedRequest:
    """One request the server received (headers as a plain dict, body as bytes)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@attrs.frozen
class Fault:
    """A reply to give instead of the normal one: ``status`` with ``body`` (bytes or JSON-able)."""

    status: int
    body: Any = b""


class LocalApiServer:
    """A local API on ``127.0.0.1`` speaking EdgeletAPI v1 and/or legacy v2.

    Set :attr:`config` to change what is served; call :meth:`signal` to push a
    control byte to every connected control socket and :meth:`drop_sockets` to
    close them. Faults: append :class:`Fault` to :attr:`config_faults` (consumed
    one per config request) or :attr:`control_faults` (one per websocket upgrade),
    set :attr:`delay` for slow replies. :attr:`v1_config_as_string` makes v1 send
    the config as a JSON string instead of an object.
    """

    def __init__(
        self,
        *,
        identity: str = "router-ms-uuid",
        token: str = "token-one",
        protocols: Iterable[str] = ("v1", "v2"),
        ssl_context: ssl.SSLContext | None = None,
        config: Any = None,
    ) -> None:
        self.identity = identity
        self.token = token
        self.protocols = frozenset(protocols)
        self.ssl_context = ssl_context
        self.config: Any = config if config is not None else {"metadata": {"id": "r1", "mode": "edge"}}
        self.v1_config_as_string = False
        self.raw_config: bytes | None = None
        """When set, served verbatim as the config (v1: inside the envelope as a string)."""
        self.delay = 0.0
        self.config_faults: deque[Fault] = deque()
        self.control_faults: deque[Fault] = deque()
        self.requests: list[RecordedRequest] = []
        self.control_connects: list[tuple[float, RecordedRequest]] = []
        self.control_attempts: list[float] = []
        self.received: list[bytes] = []
        self.received_event = asyncio.Event()
        self._sockets: set[web.WebSocketResponse] = set()
        self._connected = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def scheme(self) -> str:
        """``https`` when serving TLS, else ``http``."""
        return "https" if self.ssl_context else "http"

    async def start(self, port: int = 0) -> int:
        """Listen on ``127.0.0.1:port`` (0: any free port); return the port."""
        app = web.Application()
        app.router.add_get(V1_CONFIG, self._v1_config)
        app.router.add_get(V1_CONTROL, self._v1_control)
        app.router.add_post(V2_CONFIG, self._v2_config)
        app.router.add_get(V2_CONTROL_PREFIX + "{id}", self._v2_control)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, ssl_context=self.ssl_context)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self.port

    async def stop(self) -> None:
        """Close every socket and stop listening."""
        await self.drop_sockets()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- control ----------------------------------------------------------

    @property
    def connected(self) -> int:
        """How many control sockets are open now."""
        return len(self._sockets)

    async def wait_connected(self, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until at least ``count`` control sockets have ever connected."""
        async with asyncio.timeout(timeout), self._connected:
            await self._connected.wait_for(lambda: len(self.control_connects) >= count and self.connected > 0)

    async def signal(self, byte: int = 0x0C) -> int:
        """Send the one-byte binary frame ``byte`` on every open control socket; return how many."""
        sockets = list(self._sockets)
        for ws in sockets:
            await ws.send_bytes(bytes([byte]))
        return len(sockets)

    async def drop_sockets(self) -> None:
        """Close every open control socket (as an agent restart would)."""
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"going away")

    async def wait_received(self, count: int, timeout: float = 5.0) -> None:
        """Wait until the client has sent ``count`` frames on control sockets in total."""
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self.received_event.clear()
                await self.received_event.wait()

    # -- handlers -----------------------------------------------------------

    async def _record(self, request: web.Request) -> RecordedRequest:
        body = await request.read()
        recorded = RecordedRequest(request.method, request.path, dict(request.headers), body)
        self.requests.append(recorded)
        return recorded

    def _v1_unauthorized(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response(
                {"success": False, "error": {"code": "UNAUTHORIZED", "message": "invalid or expired token"}},
                status=401,
            )
        return None

    async def _fault(self, queue: deque[Fault]) -> web.Response | None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if not queue:
            return None
        fault = queue.popleft()
        body = fault.body if isinstance(fault.body, bytes) else json.dumps(fault.body).encode()
        return web.Response(status=fault.status, body=body, content_type="application/json")

    async def _v1_config(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        if "v1" not in self.protocols:
            raise web.HTTPNotFound()
        denied = self._v1_unauthorized(request)
        if denied is not None:
            return denied
        fault = await self._fault(self.config_faults)
        if fault is not None:
            return fault
        if self.raw_config is not None:
            config: Any = self.raw_config.decode()
        else:
            config = json.dumps(self.config) if self.v1_config_as_string else self.config
        return web.json_response({"success": True, "data": {"config": config}})

    async def _v2_config(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        if "v2" not in self.protocols:
            raise web.HTTPNotFound()
        try:
            asked = json.loads(recorded.body).get("id")
        except (ValueError, AttributeError):
            asked = None
        if asked != self.identity:
            return web.json_response({"status": "failed", "errormessage": "Incorrect id"}, status=400)
        fault = await self._fault(self.config_faults)
        if fault is not None:
            return fault
        config = self.raw_config.decode() if self.raw_config is not None else json.dumps(self.config)
        return web.json_response({"status": "okay", "config": config})

    async def _v1_control(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        self.control_attempts.append(asyncio.get_running_loop().time())
        if "v1" not in self.protocols:
            raise web.HTTPNotFound()
        denied = self._v1_unauthorized(request)
        if denied is not None:
            return denied
        return await self._control(request, recorded)

    async def _v2_control(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        self.control_attempts.append(asyncio.get_running_loop().time())
        if "v2" not in self.protocols:
            raise web.HTTPNotFound()
        if request.match_info["id"] != self.identity:
            return web.Response(status=400, text="Incorrect id")
        return await self._control(request, recorded)

    async def _control(self, request: web.Request, recorded: RecordedRequest) -> web.StreamResponse:
        fault = await self._fault(self.control_faults)
        if fault is not None:
            return fault
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.add(ws)
        async with self._connected:
            self.control_connects.append((asyncio.get_running_loop().time(), recorded))
            self._connected.notify_all()
        try:
            async for message in ws:
                if message.type == WSMsgType.BINARY:
                    self.received.append(bytes(message.data))
                elif message.type == WSMsgType.TEXT:
                    self.received.append(str(message.data).encode())
                self.received_event.set()
        finally:
            self._sockets.discard(ws)
        return ws
