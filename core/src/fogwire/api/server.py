"""A small asyncio HTTP/1.1 server on h11 (sans-IO), for the agent's API.

h11 does the protocol (parsing, framing, keep-alive, chunked bodies); this module
owns the sockets and the limits a device needs: a request head must arrive within
``head_timeout_s``, a body within ``body_timeout_s`` and under the route's size cap,
and at most ``max_connections`` clients are served at once. A handler answers with
a :class:`Response` (a whole body or a stream of chunks), or takes the connection
over (:class:`Takeover`, for websockets) with the request's raw bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import attrs
import h11

log = logging.getLogger(__name__)

DEFAULT_BODY_LIMIT = 1024 * 1024
"""The largest request body a route takes unless it says otherwise (1 MiB)."""


@attrs.frozen
class Request:
    """One parsed request. ``headers`` keys are lower case; ``peer`` says who connected."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes = b""
    peer: str = ""
    secure: bool = False
    raw_head: bytes = b""
    """Every byte received for this request (its head and anything after it): a websocket handshake re-reads them."""


@attrs.frozen
class Response:
    """An answer: ``body`` whole, or ``stream`` chunk by chunk (chunked encoding)."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: Mapping[str, str] = attrs.field(factory=dict)
    stream: AsyncIterator[bytes] | None = None


@attrs.frozen
class Takeover:
    """The handler takes the connection (a websocket): ``run(request, reader, writer, leftover)``.

    ``leftover`` is empty: ``request.raw_head`` already holds whatever arrived after the head.
    """

    run: Callable[[Request, asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]


Handler = Callable[[Request], Awaitable[Response | Takeover]]
BodyLimit = Callable[[str, str], int]
"""``(method, path) → the largest body accepted``, asked before the body is read."""


class RequestTooLargeError(Exception):
    """The body is over the route's cap."""


class HttpServer:
    """Serves ``handler`` on any number of listeners (TCP with or without TLS, unix sockets)."""

    def __init__(
        self,
        handler: Handler,
        *,
        body_limit: BodyLimit | None = None,
        head_timeout_s: float = 10.0,
        body_timeout_s: float = 30.0,
        idle_timeout_s: float = 30.0,
        max_connections: int = 64,
        on_refusal: Callable[[int], None] | None = None,
    ) -> None:
        self.handler = handler
        self.on_refusal = on_refusal
        """Called with the status of every answer the server gives itself (400, 408, 413)."""
        self.body_limit = body_limit or (lambda method, path: DEFAULT_BODY_LIMIT)
        self.head_timeout_s = head_timeout_s
        self.body_timeout_s = body_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self._slots = asyncio.Semaphore(max_connections)
        self._servers: list[asyncio.Server] = []
        self._unix_paths: list[Path] = []
        self._connections: set[asyncio.Task[Any]] = set()
        self._listeners: list[tuple[socket.socket, asyncio.Task[None]]] = []

    async def listen_tcp(
        self, host: str, port: int, ssl_context: ssl.SSLContext | None = None, *, plain_too: bool = False
    ) -> tuple[str, int]:
        """Listen on ``host:port``: TLS when ``ssl_context`` is given, plain HTTP otherwise.

        With ``plain_too`` the port takes both: each connection's first byte says
        which (a TLS handshake record starts with 0x16, an HTTP request with a
        letter), read with ``MSG_PEEK`` so nothing is lost; plain requests are
        marked ``secure=False`` for the handler to decide what they may reach.
        Returns the address bound (``port`` 0 picks a free one).
        """
        if ssl_context is not None and plain_too:
            return await self._listen_sniffing(host, port, ssl_context)
        server = await asyncio.start_server(
            self._accept,
            host,
            port,
            ssl=ssl_context,
            ssl_handshake_timeout=self.head_timeout_s if ssl_context else None,
            reuse_address=True,
        )
        self._servers.append(server)
        address = server.sockets[0].getsockname()
        return str(address[0]), int(address[1])

    async def _listen_sniffing(self, host: str, port: int, ssl_context: ssl.SSLContext) -> tuple[str, int]:
        listener = socket.create_server((host, port))
        listener.setblocking(False)
        task = asyncio.create_task(self._accept_sniffing(listener, ssl_context), name=f"fogwire-api-{host}:{port}")
        self._listeners.append((listener, task))
        address = listener.getsockname()
        return str(address[0]), int(address[1])

    async def _accept_sniffing(self, listener: socket.socket, ssl_context: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                connection, _ = await loop.sock_accept(listener)
            except OSError as error:  # out of descriptors, say: wait, don't spin
                log.warning("API: accept failed: %s", error)
                await asyncio.sleep(1)
                continue
            connection.setblocking(False)
            task = asyncio.create_task(self._sniff(connection, ssl_context))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

    async def _sniff(self, connection: socket.socket, ssl_context: ssl.SSLContext) -> None:
        """Wait for the first byte (peeked, not read), then serve the socket as TLS or plain HTTP."""
        loop = asyncio.get_running_loop()
        handed_over = False
        try:
            readable: asyncio.Future[None] = loop.create_future()

            def arrived() -> None:
                if not readable.done():
                    readable.set_result(None)

            loop.add_reader(connection.fileno(), arrived)
            try:
                await asyncio.wait_for(readable, self.head_timeout_s)
            finally:
                loop.remove_reader(connection.fileno())
            first = connection.recv(1, socket.MSG_PEEK)
            if not first:
                return
            tls = first == b"\x16"  # a TLS record of type handshake
            reader = asyncio.StreamReader(limit=65536)
            protocol = asyncio.StreamReaderProtocol(reader)
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol,
                connection,
                ssl=ssl_context if tls else None,
                ssl_handshake_timeout=self.head_timeout_s if tls else None,
            )
            handed_over = True
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
            await self._accept(reader, writer)
        except (OSError, ssl.SSLError, TimeoutError) as error:
            log.debug("API connection dropped before its first request: %s", error)
        finally:
            if not handed_over:
                connection.close()

    async def listen_unix(self, path: Path, mode: int = 0o600) -> asyncio.Server:
        """Listen on a unix socket at ``path`` (replacing a stale one), with file mode ``mode``.

        Raises :class:`OSError` (``EADDRINUSE``) when another process answers there.
        """
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.exists() or path.is_symlink():
            if socket_alive(path):
                raise OSError(98, f"another server is listening on {path}")
            path.unlink()
        old = os.umask(0o177)
        try:
            server = await asyncio.start_unix_server(self._accept, path=str(path))
        finally:
            os.umask(old)
        os.chmod(path, mode)
        self._servers.append(server)
        self._unix_paths.append(path)
        return server

    async def close(self) -> None:
        """Stop listening, end open connections and remove the unix sockets."""
        for server in self._servers:
            server.close()
        for listener, accepting in self._listeners:
            accepting.cancel()
            await asyncio.gather(accepting, return_exceptions=True)
            listener.close()
        self._listeners.clear()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
        for path in self._unix_paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self._servers.clear()
        self._unix_paths.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._slots.locked():
            log.warning("API: connection refused, %s clients already connected", len(self._connections))
            writer.close()
            return
        async with self._slots:
            self._connections.add(task)
            try:
                await _Connection(self, reader, writer).serve()
            except asyncio.CancelledError:
                # close() ends open connections; ending quietly keeps asyncio's stream callback from logging it
                pass
            except (ConnectionError, TimeoutError, ssl.SSLError, asyncio.IncompleteReadError) as error:
                log.debug("API connection from %s ended: %s", writer.get_extra_info("peername"), error)
            except Exception:  # one broken connection must never end the server
                log.exception("API connection failed")
            finally:
                self._connections.discard(task)
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 2)


def socket_alive(path: Path) -> bool:
    """True when something accepts connections on the unix socket ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


class _Connection:
    """One client connection: requests one after another (keep-alive) until either side ends."""

    def __init__(self, server: HttpServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(h11.SERVER)
        self.received = bytearray()
        extra = writer.get_extra_info
        peer = extra("peername")
        # a unix socket is as private as TLS: its file mode decides who connects
        self.secure = extra("sslcontext") is not None or not isinstance(peer, tuple)
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unix"

    async def _next_event(self, timeout: float, then: float | None = None) -> Any:
        """The next h11 event within ``timeout``; once bytes arrive, ``then`` (if given) bounds the rest."""
        async with asyncio.timeout(timeout) as deadline:
            while True:
                event = self.conn.next_event()
                if event is not h11.NEED_DATA:
                    return event
                data = await self.reader.read(65536)
                if then is not None and data:
                    deadline.reschedule(asyncio.get_running_loop().time() + then)
                    then = None
                if len(self.received) < 65536:
                    self.received += data
                self.conn.receive_data(data)

    async def _send(self, *events: Any) -> None:
        for event in events:
            data = self.conn.send(event)
            if data:
                self.writer.write(data)
        await self.writer.drain()

    async def serve(self) -> None:
        first = True
        while True:
            try:
                if first or self.received:
                    event = await self._next_event(self.server.head_timeout_s)
                else:  # kept alive: idle until the next request starts, then its head has head_timeout_s
                    event = await self._next_event(self.server.idle_timeout_s, then=self.server.head_timeout_s)
            except TimeoutError:
                if self.conn.their_state is h11.SEND_BODY or self.received:
                    await self._error(408, "the request did not arrive in time")
                return
            except h11.RemoteProtocolError as error:
                await self._error(error.error_status_hint, f"bad request: {error}")
                return
            first = False
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return
            if not isinstance(event, h11.Request):
                return
            raw_head = bytes(self.received)
            request = await self._read_request(event, raw_head)
            if request is None:
                return
            answer = await self.server.handler(request)
            if isinstance(answer, Takeover):
                # raw_head holds every byte received for this request, any sent after its head too
                await answer.run(request, self.reader, self.writer, b"")
                return
            await self._respond(answer, head_only=request.method == "HEAD")
            if self.conn.our_state is h11.MUST_CLOSE or self.conn.their_state is h11.MUST_CLOSE:
                return
            try:
                self.conn.start_next_cycle()
            except h11.LocalProtocolError:
                return
            self.received = bytearray(self.conn.trailing_data[0])

    async def _read_request(self, event: h11.Request, raw_head: bytes) -> Request | None:
        method = event.method.decode("ascii", "replace")
        target = event.target.decode("ascii", "replace")
        parts = urlsplit(target)
        headers: dict[str, str] = {}
        for name, value in event.headers:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        path = unquote(parts.path)
        limit = self.server.body_limit(method, path)
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._error(413, f"the request body is over {limit} bytes")
            return None
        body = bytearray()
        try:
            async with asyncio.timeout(self.server.body_timeout_s):
                while True:
                    part = await self._next_event(self.server.body_timeout_s)
                    if isinstance(part, h11.Data):
                        body += part.data
                        if len(body) > limit:
                            raise RequestTooLargeError
                    elif isinstance(part, h11.EndOfMessage) or part is h11.PAUSED:
                        break
                    elif isinstance(part, h11.ConnectionClosed):
                        return None
        except RequestTooLargeError:
            await self._error(413, f"the request body is over {limit} bytes")
            return None
        except TimeoutError:
            await self._error(408, "the request body did not arrive in time")
            return None
        except h11.RemoteProtocolError as error:
            await self._error(error.error_status_hint, f"bad request: {error}")
            return None
        return Request(
            method=method,
            path=path,
            query=dict(parse_qsl(parts.query)),
            headers=headers,
            body=bytes(body),
            peer=self.peer,
            secure=self.secure,
            raw_head=raw_head,
        )

    async def _respond(self, response: Response, head_only: bool = False) -> None:
        headers = [("content-type", response.content_type), *response.headers.items()]
        if head_only:  # HEAD: the GET's head, no body (a stream is closed unread)
            if response.stream is None:
                headers.append(("content-length", str(len(response.body))))
            else:
                aclose = getattr(response.stream, "aclose", None)
                if aclose is not None:
                    await aclose()
            await self._send(h11.Response(status_code=response.status, headers=headers), h11.EndOfMessage())
            return
        if response.stream is None:
            headers.append(("content-length", str(len(response.body))))
            await self._send(
                h11.Response(status_code=response.status, headers=headers),
                h11.Data(data=response.body),
                h11.EndOfMessage(),
            )
            return
        await self._send(h11.Response(status_code=response.status, headers=headers))
        stream = response.stream
        try:
            async for chunk in stream:
                if chunk:
                    await self._send(h11.Data(data=chunk))
            await self._send(h11.EndOfMessage())
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _error(self, status: int, message: str) -> None:
        if self.server.on_refusal is not None:
            self.server.on_refusal(status)
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        import json

        body = json.dumps(
            {"success": False, "error": {"code": _code_for(status), "message": message, "details": {}}}
        ).encode()
        with contextlib.suppress(h11.LocalProtocolError, ConnectionError):
            await self._send(
                h11.Response(
                    status_code=status,
                    headers=[
                        ("content-type", "application/json"),
                        ("content-length", str(len(body))),
                        ("connection", "close"),
                    ],
                ),
                h11.Data(data=body),
                h11.EndOfMessage(),
            )


def _code_for(status: int) -> str:
    return {408: "REQUEST_TIMEOUT", 413: "PAYLOAD_TOO_LARGE"}.get(status, "INVALID_ARGUMENT")
