"""A small blocking gRPC client over HTTP/2 on a unix socket: what containerd's API needs.

Long on purpose, and to go: one protocol implementation (HTTP/2 framing for gRPC)
that a kept library (h2) is to replace.

Why not grpcio: its C core (``cygrpc``, 10 MiB of mapped code, and its threads)
was a fifth of the idle agent's memory. Why not grpclib or ``h2``: their
pure-Python HTTP/2 state machines cost 0.7 ms of CPU per call and, with an event
loop to carry them, a thread hop each way; cold starts of 30 workloads got
measurably slower.

The design: one call at a time per connection, and a pool of connections. The
calling thread writes its request and reads the answer on its own socket, so a
call costs two system calls and no thread switch, and the HTTP/2 framing is a
few hundred lines that only ever track one stream. HPACK decoding (the server's
headers use Huffman codes and the dynamic table) is the ``hpack`` package; our
own headers are sent as plain literals, which needs no table.

What it covers: unary, server-streaming and bidirectional calls, metadata,
deadlines (sent as ``grpc-timeout`` and enforced with socket timeouts),
cancellation from another thread, status codes and messages, flow control both
ways, PING, SETTINGS and GOAWAY. Not covered, because containerd's local socket
needs none of it: TLS, compression, TCP.
"""

from __future__ import annotations

import contextlib
import enum
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from urllib.parse import unquote

import hpack

__all__ = ["Call", "Channel", "RpcError", "Status"]


class Status(enum.Enum):
    """gRPC status codes (the names and numbers of grpcio's ``StatusCode``)."""

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


class RpcError(Exception):
    """A call that failed: its gRPC status code and the server's message.

    A connection that could not be made or was lost is ``UNAVAILABLE``; a call
    past its timeout is ``DEADLINE_EXCEEDED``; a cancelled call, or one on a
    closed channel, is ``CANCELLED``. The method names are grpcio's.
    """

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(f"{status.name}: {message}")
        self._status = status
        self._message = message

    def code(self) -> Status:
        """The gRPC status code."""
        return self._status

    def details(self) -> str:
        """The server's message (or what went wrong with the connection)."""
        return self._message


# HTTP/2 (RFC 9113) frame types, flags, settings and error codes used here
_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PUSH_PROMISE, _PING, _GOAWAY, _WINDOW_UPDATE, _CONTINUATION = (
    0x0,
    0x1,
    0x3,
    0x4,
    0x5,
    0x6,
    0x7,
    0x8,
    0x9,
)
_END_STREAM, _ACK, _END_HEADERS, _PADDED, _PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
_SETTINGS_ENABLE_PUSH, _SETTINGS_INITIAL_WINDOW_SIZE, _SETTINGS_MAX_FRAME_SIZE = 0x2, 0x4, 0x5
_CANCEL = 0x8
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DEFAULT_WINDOW = 65535
_RECEIVE_WINDOW = 4 * 1024 * 1024
"""What the server may send ahead of our reading, per stream and for the connection."""
_MAX_STREAM_ID = 2**31 - 1
_SERVER_DEADLINE_MARGIN_S = 0.1
_MESSAGE = struct.Struct(">?I")

# What a RST_STREAM from the server means (gRPC's HTTP/2 error code mapping).
_RESET_STATUS = {0x7: Status.UNAVAILABLE, 0x8: Status.CANCELLED, 0xB: Status.RESOURCE_EXHAUSTED}
# What an HTTP status other than 200 means ("HTTP to gRPC status code mapping").
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


def _frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream_id.to_bytes(4, "big") + payload


def _hpack_int(value: int) -> bytes:
    """An HPACK integer with a 7-bit prefix (RFC 7541 §5.1), Huffman bit clear."""
    if value < 127:
        return bytes((value,))
    out = bytearray((127,))
    value -= 127
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_literals(headers: Iterable[tuple[str, str]]) -> bytes:
    """A header block of literals without indexing (RFC 7541 §6.2.2): no dynamic table to keep in step."""
    out = bytearray()
    for name, value in headers:
        n, v = name.encode(), value.encode()
        out += b"\x00" + _hpack_int(len(n)) + n + _hpack_int(len(v)) + v
    return bytes(out)


def _timeout_header(seconds: float) -> str:
    """``grpc-timeout``: at most 8 digits and a unit."""
    millis = max(1, int(seconds * 1000))
    return f"{millis}m" if millis < 10**8 else f"{min(int(seconds), 10**8 - 1)}S"


class _Connection:
    """One HTTP/2 connection, carrying one call at a time (owned by the thread making it)."""

    def __init__(self, path: str, timeout: float | None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(timeout)
            self.sock.connect(path)
        except OSError as error:
            self.sock.close()
            raise RpcError(Status.UNAVAILABLE, f"cannot connect to {path}: {error}") from error
        self.decoder = hpack.Decoder()
        self.buffer = bytearray()
        self.next_stream_id = 1
        self.send_window = _DEFAULT_WINDOW
        """The server's connection-level window for our DATA."""
        self.stream_initial_window = _DEFAULT_WINDOW
        self.max_frame = 16384
        self.unacked = 0
        """DATA bytes received and not yet given back with a WINDOW_UPDATE."""
        self.going_away: int | None = None
        """The last stream id the server will process, once it sent GOAWAY."""
        self.broken = False
        self.settings = struct.pack(">HIHI", _SETTINGS_ENABLE_PUSH, 0, _SETTINGS_INITIAL_WINDOW_SIZE, _RECEIVE_WINDOW)
        self.pending = (
            _PREFACE
            + _frame(_SETTINGS, 0, 0, self.settings)
            + _frame(_WINDOW_UPDATE, 0, 0, (_RECEIVE_WINDOW - _DEFAULT_WINDOW).to_bytes(4, "big"))
        )
        """Bytes to send before the next frame of a call (the preface, control-frame answers)."""

    @property
    def reusable(self) -> bool:
        """May the pool hand this connection to another call?"""
        return not self.broken and self.going_away is None and self.next_stream_id < _MAX_STREAM_ID - 2

    def close(self) -> None:
        """Close the socket (the connection is broken from then on)."""
        self.broken = True
        self.sock.close()

    def abort(self) -> None:
        """From another thread: wake the owner's blocked read or write; it then fails."""
        self.broken = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -------------------------------------------------------------- socket I/O

    def send(self, data: bytes, deadline: float | None) -> None:
        """Write ``data`` (after anything pending) within ``deadline``."""
        if self.pending:
            data, self.pending = self.pending + data, b""
        with self._socket_errors(deadline):
            self.sock.sendall(data)

    @contextlib.contextmanager
    def _socket_errors(self, deadline: float | None) -> Iterator[None]:
        """Set the socket timeout to what is left of ``deadline``; a failed I/O breaks the connection.

        ``TimeoutError`` passes through (the call turns it into DEADLINE_EXCEEDED);
        any other socket error is :class:`RpcError` ``UNAVAILABLE``.
        """
        left = None if deadline is None else deadline - time.monotonic()
        try:
            if left is not None and left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            yield
        except TimeoutError:
            self.broken = True
            raise
        except OSError as error:
            self.broken = True
            raise RpcError(Status.UNAVAILABLE, f"the connection to containerd was lost ({error})") from error

    def _fill(self, deadline: float | None) -> None:
        with self._socket_errors(deadline):
            data = self.sock.recv(262144)
        if not data:
            self.broken = True
            raise RpcError(Status.UNAVAILABLE, "containerd closed the connection")
        self.buffer += data

    def read_frame(self, deadline: float | None, *, wait: bool = True) -> tuple[int, int, int, bytes] | None:
        """The next frame (type, flags, stream id, payload); ``None`` if ``not wait`` and none is complete."""
        while True:
            if len(self.buffer) >= 9:
                length = int.from_bytes(self.buffer[:3], "big")
                if len(self.buffer) >= 9 + length:
                    kind, flags = self.buffer[3], self.buffer[4]
                    stream_id = int.from_bytes(self.buffer[5:9], "big") & 0x7FFFFFFF
                    payload = bytes(self.buffer[9 : 9 + length])
                    del self.buffer[: 9 + length]
                    return kind, flags, stream_id, payload
            if not wait:
                return None
            self._fill(deadline)

    def read_available(self) -> bool:
        """Read what the server sent without blocking; False if the connection is closed."""
        self.sock.settimeout(0.0)  # non-blocking
        while True:
            try:
                data = self.sock.recv(262144)
            except BlockingIOError:
                return True
            except OSError:
                self.broken = True
                return False
            if not data:
                self.broken = True
                return False
            self.buffer += data

    # -------------------------------------------------------------- connection-level frames

    def control(self, kind: int, flags: int, payload: bytes) -> None:
        """Handle a frame on stream 0 (or one that concerns the connection)."""
        if kind == _SETTINGS:
            if flags & _ACK:
                return
            for offset in range(0, len(payload) - 5, 6):
                key, value = struct.unpack_from(">HI", payload, offset)
                if key == _SETTINGS_INITIAL_WINDOW_SIZE:
                    self.stream_initial_window = value
                elif key == _SETTINGS_MAX_FRAME_SIZE:
                    self.max_frame = value
            self.pending += _frame(_SETTINGS, _ACK, 0)
        elif kind == _PING:
            if not flags & _ACK:
                self.pending += _frame(_PING, _ACK, 0, payload)
        elif kind == _WINDOW_UPDATE:
            self.send_window += int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
        elif kind == _GOAWAY:
            self.going_away = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
        elif kind == _PUSH_PROMISE:
            self.broken = True
            raise RpcError(Status.INTERNAL, "containerd sent PUSH_PROMISE, which this client disabled")

    def handle_idle(self) -> bool:
        """Process what arrived while the connection sat in the pool; False if it can't be used."""
        if not self.read_available():
            return False
        while (frame := self.read_frame(None, wait=False)) is not None:
            kind, flags, stream_id, payload = frame
            if kind in (_HEADERS, _CONTINUATION):
                self.broken = True  # a header block outside a call: the HPACK state is unknown
            elif stream_id == 0 or kind == _PUSH_PROMISE:
                self.control(kind, flags, payload)
            elif kind == _DATA:
                self.unacked += len(payload)
        return self.reusable and not self.buffer


class Call:
    """One gRPC call on a connection of its own, driven by the calling thread.

    ``send``/``end`` write the request side; ``recv`` reads reply messages and
    returns ``None`` once the call ended OK, or raises :class:`RpcError`.
    :meth:`cancel` may come from any thread.
    """

    def __init__(self, channel: Channel, path: str, header_block: bytes, timeout: float | None) -> None:
        self._channel = channel
        self.path = path
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self._connection: _Connection | None = None
        self._cancelled = False
        self._finished = False
        self._busy = False
        """The owner is blocked in a read or write (so :meth:`cancel` must wake it, not close under it)."""
        self._lock = threading.Lock()
        self._messages: deque[bytes] = deque()
        self._data = bytearray()
        self._block = bytearray()
        self._headers: dict[str, str] | None = None
        self._trailers: dict[str, str] | None = None
        self._remote_ended = False
        self._local_ended = False
        self._error: RpcError | None = None
        self._send_window = 0
        self._unacked = 0
        self._block_ends_stream = False
        try:
            connection = self._connection = channel._acquire(timeout)
            self.stream_id = connection.next_stream_id
            connection.next_stream_id += 2
            self._send_window = connection.stream_initial_window
            self._write(self._header_frames(connection, header_block))
        except BaseException:
            self._finish()
            raise

    # -------------------------------------------------------------- the caller's side

    def send(self, message: bytes, *, end: bool = False) -> None:
        """Send one message (ending the request side if ``end``), within the flow-control windows."""
        data = memoryview(_MESSAGE.pack(False, len(message)) + message)
        connection = self._live()
        while True:
            if self._remote_ended or self._error is not None:
                return  # the server answered already: recv() reports it
            room = min(self._send_window, connection.send_window, connection.max_frame)
            if room <= 0:
                self._step()
                continue
            frames = bytearray()
            while data and room > 0:
                size = min(room, len(data), connection.max_frame)
                last = size == len(data)
                frames += _frame(_DATA, _END_STREAM if end and last else 0, self.stream_id, bytes(data[:size]))
                data = data[size:]
                self._send_window -= size
                connection.send_window -= size
                room = min(self._send_window, connection.send_window, connection.max_frame)
            self._write(bytes(frames))
            if not data:
                self._local_ended = end
                return

    def end(self) -> None:
        """End the request side (no more messages)."""
        if not self._local_ended and not self._remote_ended:
            self._write(_frame(_DATA, _END_STREAM, self.stream_id))
            self._local_ended = True

    @property
    def answered(self) -> bool:
        """Has the server ended the call (its status is what ``recv`` reports next)?"""
        return self._remote_ended or self._error is not None

    def drain(self) -> None:
        """Take in what already arrived, without blocking (a bidirectional call between sends)."""
        with self._io() as connection:
            available = connection.read_available()
        if available:
            while not self._remote_ended and (frame := connection.read_frame(None, wait=False)) is not None:
                self._dispatch(*frame)

    def recv(self) -> bytes | None:
        """The next reply message, or ``None`` once the call ended OK; raises :class:`RpcError`."""
        while True:
            if self._messages:
                return self._messages.popleft()
            if self._error is not None:
                self._finish()
                raise self._error
            if self._remote_ended:
                error = self._status()
                self._finish()
                if error is not None:
                    raise error
                return None
            self._step()

    def cancel(self) -> None:
        """End the call from any thread; the caller's pending or next ``recv`` raises ``CANCELLED``."""
        with self._lock:
            self._cancelled = True
            if self._finished or self._connection is None:
                return
            if self._busy:
                self._connection.abort()  # the owner wakes, fails and closes it
                return
        self._finish()

    # -------------------------------------------------------------- internals

    def _live(self) -> _Connection:
        if self._cancelled:
            raise self._fail(RpcError(Status.CANCELLED, "the call was cancelled"))
        if self._connection is None:
            raise self._error or RpcError(Status.CANCELLED, f"{self.path}: the call has ended")
        return self._connection

    def _enter(self) -> _Connection:
        """Mark the owner busy in I/O on the connection (or fail if the call was cancelled)."""
        with self._lock:
            if not self._cancelled and self._connection is not None:
                self._busy = True
                return self._connection
        return self._live()  # raises

    def _leave(self) -> None:
        with self._lock:
            self._busy = False

    @contextlib.contextmanager
    def _io(self) -> Iterator[_Connection]:
        """The connection, for one read or write by the owner; its failure fails the call."""
        connection = self._enter()
        try:
            yield connection
        except TimeoutError:
            raise self._fail(RpcError(Status.DEADLINE_EXCEEDED, "deadline exceeded")) from None
        except RpcError as error:
            raise self._fail(self._why(error)) from None
        finally:
            self._leave()

    def _write(self, data: bytes) -> None:
        with self._io() as connection:
            connection.send(data, self.deadline)

    def _why(self, error: RpcError) -> RpcError:
        if self._cancelled:
            return RpcError(Status.CANCELLED, "the call was cancelled")
        return error

    def _fail(self, error: RpcError) -> RpcError:
        if self._error is None:
            self._error = error
        self._finish()
        return self._error

    def _header_frames(self, connection: _Connection, block: bytes) -> bytes:
        limit = connection.max_frame
        if len(block) <= limit:
            return _frame(_HEADERS, _END_HEADERS, self.stream_id, block)
        out = _frame(_HEADERS, 0, self.stream_id, block[:limit])
        for start in range(limit, len(block), limit):
            last = start + limit >= len(block)
            out += _frame(_CONTINUATION, _END_HEADERS if last else 0, self.stream_id, block[start : start + limit])
        return out

    def _step(self) -> None:
        """Read and handle one frame, and send what the connection owes (acks, window updates)."""
        with self._io() as connection:
            frame = connection.read_frame(self.deadline)
        assert frame is not None
        self._dispatch(*frame)
        if connection.pending:
            self._write(b"")

    def _dispatch(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        connection = self._live()
        if kind in (_HEADERS, _CONTINUATION):
            if kind == _HEADERS:
                payload = self._strip(flags, payload, priority=True)
                self._block_ends_stream = bool(flags & _END_STREAM)
            self._block += payload
            if flags & _END_HEADERS:
                block, self._block = bytes(self._block), bytearray()
                try:
                    decoded = connection.decoder.decode(block)
                except hpack.HPACKError as error:
                    connection.broken = True
                    raise self._fail(RpcError(Status.INTERNAL, f"bad header block from containerd: {error}")) from None
                headers = {str(name): str(value) for name, value in decoded}
                if stream_id == self.stream_id:
                    if self._headers is None:
                        self._headers = headers
                    else:
                        self._trailers = headers
                    if self._block_ends_stream:
                        self._remote_ended = True
        elif kind == _DATA:
            size = len(payload)
            connection.unacked += size
            if connection.unacked >= _RECEIVE_WINDOW // 2:
                connection.pending += _frame(_WINDOW_UPDATE, 0, 0, connection.unacked.to_bytes(4, "big"))
                connection.unacked = 0
            if stream_id != self.stream_id:
                return
            self._unacked += size
            if self._unacked >= _RECEIVE_WINDOW // 2 and not flags & _END_STREAM:
                connection.pending += _frame(_WINDOW_UPDATE, 0, self.stream_id, self._unacked.to_bytes(4, "big"))
                self._unacked = 0
            self._data += self._strip(flags, payload, priority=False)
            self._split_messages()
            if flags & _END_STREAM:
                self._remote_ended = True
        elif stream_id == 0:
            initial_window = connection.stream_initial_window
            connection.control(kind, flags, payload)
            # a new SETTINGS_INITIAL_WINDOW_SIZE moves the window of open streams by the difference
            self._send_window += connection.stream_initial_window - initial_window
            if connection.going_away is not None and self.stream_id > connection.going_away:
                raise self._fail(RpcError(Status.UNAVAILABLE, "containerd is going away and refused the call"))
        elif kind == _WINDOW_UPDATE and stream_id == self.stream_id:
            self._send_window += int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
        elif kind == _RST_STREAM and stream_id == self.stream_id:
            code = int.from_bytes(payload[:4], "big")
            status = _RESET_STATUS.get(code, Status.INTERNAL)
            self._remote_ended = self._local_ended = True
            raise self._fail(RpcError(status, f"containerd reset the stream (HTTP/2 error {code:#x})"))
        elif kind == _PUSH_PROMISE:
            connection.control(kind, flags, payload)
        # PRIORITY, frames of earlier streams and unknown types are ignored, as RFC 9113 says

    @staticmethod
    def _strip(flags: int, payload: bytes, *, priority: bool) -> bytes:
        start, end = 0, len(payload)
        if flags & _PADDED:
            start, end = 1, len(payload) - payload[0]
        if priority and flags & _PRIORITY:
            start += 5
        return payload[start:end]

    def _split_messages(self) -> None:
        while len(self._data) >= _MESSAGE.size:
            compressed, length = _MESSAGE.unpack_from(self._data)
            if len(self._data) < _MESSAGE.size + length:
                return
            if compressed:
                raise self._fail(RpcError(Status.INTERNAL, "containerd sent a compressed message (none was offered)"))
            self._messages.append(bytes(self._data[_MESSAGE.size : _MESSAGE.size + length]))
            del self._data[: _MESSAGE.size + length]

    def _status(self) -> RpcError | None:
        headers = self._headers or {}
        trailers = self._trailers
        if trailers is None and "grpc-status" in headers:
            trailers = headers  # a trailers-only answer
        if trailers is None:
            http = headers.get(":status", "200")
            if http != "200":
                return RpcError(_HTTP_STATUS.get(int(http), Status.UNKNOWN), f"HTTP status {http} from containerd")
            return RpcError(Status.INTERNAL, f"{self.path}: the call ended without a gRPC status")
        try:
            status = Status(int(trailers.get("grpc-status", "2")))
        except ValueError:
            status = Status.UNKNOWN
        if status is Status.OK:
            return None
        return RpcError(status, unquote(trailers.get("grpc-message", "")) or status.name)

    def _finish(self) -> None:
        """Give the connection back to the pool (if it can carry another call) or close it."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
            connection, self._connection = self._connection, None
        if connection is None:
            return
        clean = self._remote_ended and not self._cancelled and not connection.broken
        if clean and not self._local_ended:
            # the server answered before our request side ended: close the stream for both
            try:
                connection.send(_frame(_RST_STREAM, 0, self.stream_id, _CANCEL.to_bytes(4, "big")), self.deadline)
            except (TimeoutError, RpcError):
                clean = False
        self._channel._release(connection, reuse=clean)


class Channel:
    """Calls to one gRPC server on a unix socket, over a pool of HTTP/2 connections.

    A call takes an idle connection (or makes one) and gives it back when it
    ended cleanly; a connection that broke, timed out, was cancelled or that the
    server is retiring (GOAWAY) is closed instead. So after containerd restarts
    the next call simply connects again.
    """

    def __init__(self, socket_path: str, authority: str = "localhost", max_idle: int = 16) -> None:
        self.socket_path = socket_path
        self.authority = authority
        self.max_idle = max_idle
        self.connections_made = 0
        """How many connections this channel opened (a diagnostic for tests and benchmarks)."""
        self.active = 0
        """Calls in progress."""
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def header_block(self, path: str, metadata: Sequence[tuple[str, str]], timeout: float | None) -> bytes:
        """The HPACK block of a call's request headers."""
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", self.authority),
            ("te", "trailers"),
            ("content-type", "application/grpc"),
        ]
        if timeout is not None:
            # the server's copy of the deadline runs a little longer, so our own decides the status
            # (else containerd may answer first, e.g. UNKNOWN "subscription error: context deadline exceeded")
            headers.append(("grpc-timeout", _timeout_header(timeout + _SERVER_DEADLINE_MARGIN_S)))
        headers.extend(metadata)
        return hpack_literals(headers)

    def open(self, path: str, metadata: Sequence[tuple[str, str]] = (), timeout: float | None = None) -> Call:
        """Start a call to ``path`` (``/package.Service/Method``): its request headers are sent."""
        return Call(self, path, self.header_block(path, metadata, timeout), timeout)

    def unary(
        self,
        path: str,
        request: bytes,
        metadata: Sequence[tuple[str, str]],
        timeout: float | None,
        started: Callable[[Call], None] | None = None,
    ) -> bytes:
        """One request, one reply; ``started`` is given the call as soon as it exists (to cancel it)."""
        call = self.open(path, metadata, timeout)
        if started is not None:
            started(call)
        call.send(request, end=True)
        reply = call.recv()
        if reply is None:
            raise RpcError(Status.INTERNAL, f"{path}: containerd sent no reply")
        if call.recv() is not None:
            raise RpcError(Status.INTERNAL, f"{path}: containerd sent more than one reply")
        return reply

    def bidi(
        self, path: str, requests: Iterable[bytes], metadata: Sequence[tuple[str, str]], timeout: float | None
    ) -> list[bytes]:
        """Send every request, reading replies as they come (the server may answer each); all replies."""
        call = self.open(path, metadata, timeout)
        replies: list[bytes] = []
        try:
            for request in requests:
                call.send(request)
                call.drain()
                if call.answered:
                    break  # an early error status: draw no more requests (they may be downloads)
            call.end()
            while (reply := call.recv()) is not None:
                replies.append(reply)
        finally:
            if not call._finished:
                call.cancel()
                call._finish()
        return replies

    def stream(self, path: str, request: bytes, metadata: Sequence[tuple[str, str]], timeout: float | None) -> Call:
        """A server-streaming call, its request sent; read it with ``recv``."""
        call = self.open(path, metadata, timeout)
        call.send(request, end=True)
        return call

    def _acquire(self, timeout: float | None) -> _Connection:
        with self._lock:
            if self._closed:
                raise RpcError(Status.CANCELLED, "the containerd client is closed")
            self.active += 1
            while self._idle:
                connection = self._idle.pop()
                if connection.handle_idle():
                    return connection
                connection.close()
        try:
            connection = _Connection(self.socket_path, timeout)
        except BaseException:
            with self._lock:
                self.active -= 1
            raise
        with self._lock:
            self.connections_made += 1
        return connection

    def _release(self, connection: _Connection, *, reuse: bool) -> None:
        with self._lock:
            self.active -= 1
            if reuse and connection.reusable and not self._closed and len(self._idle) < self.max_idle:
                self._idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        """Close the idle connections; calls still running keep theirs until they end."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
