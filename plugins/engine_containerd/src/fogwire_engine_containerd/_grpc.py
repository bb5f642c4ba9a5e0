"""A small asyncio gRPC client over HTTP/2 on a unix socket, with ``h2`` as the HTTP/2 state machine.

Why not grpcio or grpclib: grpcio's C core costs the idle agent about 9 MiB of
resident memory, and grpclib adds 20 ms to the plugin's import on top of ``h2``.
containerd's gRPC socket is local and plain text, with no compression, so the
client needs only what is here: calls with deadlines and metadata, streaming in
both directions, cancellation, and status codes. Protobuf (de)serialisation is the
caller's: messages cross this module as bytes.

Everything here runs on one event loop (the client's own, see :mod:`._client`).
"""

from __future__ import annotations

import asyncio
import enum
import struct
from collections import deque
from typing import Any
from urllib.parse import unquote

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

__all__ = ["Channel", "GrpcStream", "Status", "StatusError"]

_MESSAGE_HEADER = struct.Struct(">?I")
_RECEIVE_WINDOW = 4 * 1024 * 1024
"""What the server may send ahead of our reading, per stream and per connection."""
_MAX_STREAM_ID = 2**31 - 1


class Status(enum.Enum):
    """gRPC status codes (the names and numbers of grpc's ``StatusCode``)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class StatusError(Exception):
    """A call that ended with a status other than OK, or could not be made (``UNAVAILABLE``)."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(f"{status.name}: {message}")
        self.status = status
        self.message = message


# What an HTTP status other than 200 means, from gRPC's "HTTP to gRPC status code mapping".
_HTTP_STATUS = {
    400: Status.INTERNAL,
    401: Status.UNAUTHENTICATED,
    403: Status.PERMISSION_DENIED,
    404: Status.UNIMPLEMENTED,
    429: Status.UNAVAILABLE,
    502: Status.UNAVAILABLE,
    503: Status.UNAVAILABLE,
    504: Status.UNAVAILABLE,
}

# What a RST_STREAM from the server means (gRPC's HTTP/2 error code mapping).
_RESET_STATUS = {
    int(h2.errors.ErrorCodes.REFUSED_STREAM): Status.UNAVAILABLE,
    int(h2.errors.ErrorCodes.CANCEL): Status.CANCELLED,
    int(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM): Status.RESOURCE_EXHAUSTED,
    int(h2.errors.ErrorCodes.INADEQUATE_SECURITY): Status.PERMISSION_DENIED,
}


def _timeout_header(seconds: float) -> str:
    """``grpc-timeout``: at most 8 digits and a unit."""
    millis = max(1, int(seconds * 1000))
    return f"{millis}m" if millis < 10**8 else f"{min(int(seconds), 10**8 - 1)}S"


class GrpcStream:
    """One call: send request messages, receive reply messages, then the status.

    Made by :meth:`Channel.open`; every method must be awaited on the channel's loop.
    """

    def __init__(self, connection: _Connection, stream_id: int) -> None:
        self._connection = connection
        self.stream_id = stream_id
        self._buffer = bytearray()
        self._messages: deque[bytes] = deque()
        self._headers: dict[str, str] | None = None
        self._trailers: dict[str, str] | None = None
        self._ended = False
        self._error: StatusError | None = None
        self._changed = asyncio.Event()
        """Set whenever a message, the end or an error arrives, or the send window grows."""

    # ---------------------------------------------------------------- called by the connection

    def _wake(self) -> None:
        self._changed.set()

    def _on_headers(self, headers: dict[str, str]) -> None:
        if self._headers is None:
            self._headers = headers
        else:
            self._trailers = headers
        self._wake()

    def _on_data(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= _MESSAGE_HEADER.size:
            compressed, length = _MESSAGE_HEADER.unpack_from(self._buffer)
            if len(self._buffer) < _MESSAGE_HEADER.size + length:
                break
            if compressed:
                self._fail(StatusError(Status.INTERNAL, "the server sent a compressed message (none was offered)"))
                return
            self._messages.append(bytes(self._buffer[_MESSAGE_HEADER.size : _MESSAGE_HEADER.size + length]))
            del self._buffer[: _MESSAGE_HEADER.size + length]
        self._wake()

    def _on_end(self) -> None:
        self._ended = True
        if self._trailers is None and self._headers is not None and "grpc-status" in self._headers:
            self._trailers = self._headers  # a trailers-only answer
        self._wake()

    def _fail(self, error: StatusError) -> None:
        if self._error is None and not (self._ended and self._trailers is not None):
            self._error = error
        self._wake()

    # ---------------------------------------------------------------- the caller's side

    def _status(self) -> StatusError | None:
        """The call's outcome once it ended: ``None`` for OK."""
        if self._error is not None:
            return self._error
        headers = self._headers or {}
        http = headers.get(":status", "200")
        trailers = self._trailers
        if trailers is None:
            if http != "200":
                status = _HTTP_STATUS.get(int(http), Status.UNKNOWN)
                return StatusError(status, f"HTTP status {http} from the server")
            return StatusError(Status.INTERNAL, "the server ended the call without a gRPC status")
        try:
            status = Status(int(trailers.get("grpc-status", "2")))
        except ValueError:
            status = Status.UNKNOWN
        if status is Status.OK:
            return None
        return StatusError(status, unquote(trailers.get("grpc-message", "")) or status.name)

    async def send(self, message: bytes, *, end: bool = False) -> None:
        """Send one message (and end the request side if ``end``), within the flow-control windows."""
        await self._connection.send_data(self, _MESSAGE_HEADER.pack(False, len(message)) + message, end=end)

    async def end(self) -> None:
        """End the request side (no more messages)."""
        self._connection.end_stream(self)

    async def recv(self) -> bytes | None:
        """The next reply message, or ``None`` once the call ended OK; raises :class:`StatusError`."""
        while True:
            if self._messages:
                return self._messages.popleft()
            if self._error is not None:
                raise self._error
            if self._ended:
                error = self._status()
                if error is not None:
                    raise error
                return None
            self._changed.clear()
            await self._changed.wait()

    def cancel(self) -> None:
        """Reset the stream (RST_STREAM CANCEL) unless it already ended."""
        if not self._ended:
            self._connection.reset(self)
        self._fail(StatusError(Status.CANCELLED, "the call was cancelled"))


class _Connection(asyncio.Protocol):
    """One HTTP/2 connection: feeds bytes to ``h2`` and hands its events to the streams."""

    def __init__(self) -> None:
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8", validate_inbound_headers=False)
        )
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, GrpcStream] = {}
        self.broken: StatusError | None = None
        """Why no new call may use this connection (lost, or the server said GOAWAY)."""
        self._slots = asyncio.Event()
        """Set when a stream ends: a call waiting for the server's stream limit may go on."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.h2.initiate_connection()
        self.h2.update_settings(
            {h2.settings.SettingCodes.ENABLE_PUSH: 0, h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _RECEIVE_WINDOW}
        )
        self.h2.increment_flow_control_window(_RECEIVE_WINDOW)
        self._flush()

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f"the connection was lost ({exc})" if exc else "the server closed the connection"
        self._break(StatusError(Status.UNAVAILABLE, reason))
        for stream in list(self.streams.values()):
            stream._fail(StatusError(Status.UNAVAILABLE, reason))
        self.streams.clear()
        self._slots.set()

    def _break(self, error: StatusError) -> None:
        if self.broken is None:
            self.broken = error

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as error:
            self._break(StatusError(Status.INTERNAL, f"HTTP/2 protocol error from the server: {error}"))
            self._flush()
            if self.transport is not None:
                self.transport.close()
            return
        for event in events:
            self._dispatch(event)
        self._flush()

    def _dispatch(self, event: h2.events.Event) -> None:
        stream_id = getattr(event, "stream_id", 0)
        stream = self.streams.get(stream_id) if stream_id else None
        if isinstance(event, h2.events.DataReceived):
            if event.flow_controlled_length:
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if stream is not None:
                stream._on_data(event.data)
        elif isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
            if stream is not None:
                headers = {str(k): str(v) for k, v in event.headers}
                stream._on_headers(headers)  # h2 reports the end of the stream as its own event
        elif isinstance(event, h2.events.StreamEnded):
            if stream is not None:
                stream._on_end()
                self._forget(stream)
        elif isinstance(event, h2.events.StreamReset):
            if stream is not None:
                status = _RESET_STATUS.get(int(event.error_code), Status.INTERNAL)
                stream._fail(StatusError(status, f"the server reset the stream ({event.error_code!r})"))
                self._forget(stream)
        elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            for each in self.streams.values():
                each._wake()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._break(StatusError(Status.UNAVAILABLE, f"the server is going away ({event.error_code!r})"))
            last = event.last_stream_id or 0
            for each in [s for sid, s in self.streams.items() if sid > last]:
                each._fail(StatusError(Status.UNAVAILABLE, "the server went away before taking the call"))
                self._forget(each)

    def _forget(self, stream: GrpcStream) -> None:
        self.streams.pop(stream.stream_id, None)
        self._slots.set()
        if self.broken is not None and not self.streams and self.transport is not None:
            self.transport.close()  # retired (GOAWAY, ids used up) and now idle

    async def open(self, path: str, metadata: list[tuple[str, str]]) -> GrpcStream:
        """Send the request headers of a new call."""
        while True:
            if self.broken is not None:
                raise self.broken
            limit = self.h2.remote_settings.max_concurrent_streams
            if self.h2.open_outbound_streams < limit:
                break
            self._slots.clear()
            await self._slots.wait()
        stream_id = self.h2.get_next_available_stream_id()
        if stream_id >= _MAX_STREAM_ID - 2:
            self._break(StatusError(Status.UNAVAILABLE, "stream ids used up"))
        stream = GrpcStream(self, stream_id)
        self.streams[stream_id] = stream
        self.h2.send_headers(stream_id, metadata)
        self._flush()
        return stream

    async def send_data(self, stream: GrpcStream, data: bytes, *, end: bool) -> None:
        """Send ``data`` on ``stream`` as the flow-control windows allow.

        If the server ended the stream first (an early error status), the rest
        is dropped: the caller's next ``recv`` reports that status.
        """
        view = memoryview(data)
        while True:
            if stream._error is not None:
                raise stream._error
            if stream.stream_id not in self.streams:
                return
            try:
                window = min(self.h2.local_flow_control_window(stream.stream_id), self.h2.max_outbound_frame_size)
                if window <= 0:
                    stream._changed.clear()
                    await stream._changed.wait()
                    continue
                chunk, view = view[:window], view[window:]
                self.h2.send_data(stream.stream_id, bytes(chunk), end_stream=end and not view)
            except h2.exceptions.StreamClosedError:
                return
            self._flush()
            if not view:
                return

    def end_stream(self, stream: GrpcStream) -> None:
        if stream.stream_id in self.streams and stream._error is None:
            try:
                self.h2.end_stream(stream.stream_id)
            except h2.exceptions.StreamClosedError:
                return
            self._flush()

    def reset(self, stream: GrpcStream) -> None:
        if stream.stream_id in self.streams:
            try:
                self.h2.reset_stream(stream.stream_id, h2.errors.ErrorCodes.CANCEL)
            except h2.exceptions.StreamClosedError:
                pass
            self._forget(stream)
            self._flush()


class Channel:
    """Calls to one gRPC server on a unix socket, over one HTTP/2 connection at a time.

    The connection is made by the first call and made again by the first call
    after it was lost or the server sent GOAWAY (containerd restarted).
    """

    def __init__(self, socket_path: str, authority: str = "localhost") -> None:
        self.socket_path = socket_path
        self.authority = authority
        self._connection: _Connection | None = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> _Connection:
        connection = self._connection
        if connection is not None and connection.broken is None:
            return connection
        async with self._lock:
            connection = self._connection
            if connection is None or connection.broken is not None:
                loop = asyncio.get_running_loop()
                try:
                    _, protocol = await loop.create_unix_connection(_Connection, self.socket_path)
                except OSError as error:
                    raise StatusError(Status.UNAVAILABLE, f"cannot connect to {self.socket_path}: {error}") from error
                connection = self._connection = protocol
            return connection

    async def open(self, path: str, metadata: Any = (), timeout: float | None = None) -> GrpcStream:
        """Start a call to ``path`` (``/package.Service/Method``) and return its stream."""
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", self.authority),
            ("te", "trailers"),
            ("content-type", "application/grpc"),
        ]
        if timeout is not None:
            headers.append(("grpc-timeout", _timeout_header(timeout)))
        headers.extend((str(k), str(v)) for k, v in metadata)
        connection = await self._connect()
        return await connection.open(path, headers)

    def close(self) -> None:
        """Close the connection; calls still open fail with ``UNAVAILABLE``."""
        connection, self._connection = self._connection, None
        if connection is not None and connection.transport is not None:
            connection._break(StatusError(Status.UNAVAILABLE, "the channel was closed"))
            connection.transport.close()
