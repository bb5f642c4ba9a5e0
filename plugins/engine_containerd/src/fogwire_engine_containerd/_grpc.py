"""A small blocking gRPC client on a unix socket, over ``h2``: what containerd's API needs.

HTTP/2 itself (framing, settings, flow control, HPACK, PING, GOAWAY, padding,
CONTINUATION) is ``h2``, python-hyper's sans-IO implementation (its connection
without a per-frame trace line: ``_h2_connection``). What is ours is
gRPC's own layer: length-prefixed messages (with a maximum size), the
``grpc-timeout`` header, the content type, statuses and trailers, and cancellation.

The design: one call at a time per connection, and a pool of connections. The
calling thread writes its request and reads the answer on its own socket, so a
call costs two system calls and no thread switch; ``h2`` is driven by whoever owns
the connection at the moment. (grpcio's C core was a fifth of the idle agent's
memory; an asyncio client on ``h2`` or grpclib cost a thread hop each way.
docs/engines.md has the figures.)

What it covers: unary, server-streaming and bidirectional calls, metadata,
deadlines (sent as ``grpc-timeout`` and enforced with socket timeouts),
cancellation from another thread, status codes and messages. A reply stream that
ends inside a message, a message over the maximum size and a reply that is not
``application/grpc`` are errors, as in grpcio and grpc-go. Not covered, because
containerd's local socket needs none of it: TLS, compression, TCP.
"""

from __future__ import annotations

import contextlib
import enum
import math
import select
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from urllib.parse import unquote

import h2.config
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack

from fogwire_engine_containerd._h2_connection import new_connection

__all__ = ["DEFAULT_MAX_RECEIVE_BYTES", "Call", "Channel", "RpcError", "Status"]


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


_RECEIVE_WINDOW = 4 * 1024 * 1024
"""What the server may send ahead of our reading, per stream and for the connection."""
_SERVER_DEADLINE_MARGIN_S = 0.1
_READ_SIZE = 65536
"""Bytes asked of one read. Under glibc's 128 KiB mmap threshold on purpose: a larger buffer is
mapped, shrunk and unmapped on every read (three system calls, a third of a small call's CPU)."""
_SMALL_MESSAGE = 16384
"""A message that fits HTTP/2's smallest frame size limit is sent without asking for the windows first."""
_MESSAGE = struct.Struct(">?I")
DEFAULT_MAX_RECEIVE_BYTES = 4 * 1024 * 1024
"""The largest reply message accepted (gRPC's default receive limit)."""

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
# the event classes a call handles, as module names: looked up for every event of every call
_DataReceived = h2.events.DataReceived
_ResponseReceived = h2.events.ResponseReceived
_TrailersReceived = h2.events.TrailersReceived
_StreamEnded = h2.events.StreamEnded
_StreamReset = h2.events.StreamReset
_ConnectionTerminated = h2.events.ConnectionTerminated
_CONFIG = h2.config.H2Configuration(
    client_side=True,
    header_encoding=None,
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
    validate_inbound_headers=False,
    normalize_inbound_headers=False,
)


def _timeout_header(seconds: float) -> str:
    """``grpc-timeout``: at most 8 digits and a unit."""
    millis = max(1, int(seconds * 1000))
    return f"{millis}m" if millis < 10**8 else f"{min(int(seconds), 10**8 - 1)}S"


class _HeaderBlocks:
    """Request header blocks, HPACK-encoded by ``hpack`` once each and then reused.

    Every field is encoded as a literal that is never indexed (or as its static
    table index), so no request changes a connection's compression context: a
    block means the same on every connection and can be sent again as it is.
    Encoding is most of a small call's client-side work; containerd's calls repeat
    a few dozen header sets (method, namespace, timeout). Literals are not
    Huffman-coded: in Python that costs more than the bytes it saves on a socket.
    """

    def __init__(self, limit: int = 256) -> None:
        self.limit = limit
        self._blocks: dict[tuple[tuple[bytes, bytes], ...], bytes] = {}

    def install(self, encoder: hpack.Encoder) -> None:
        """Make ``encoder`` (an ``h2`` connection's) encode request headers through this cache."""
        encode = encoder.encode

        def encode_cached(headers: Iterable[tuple[bytes, bytes]], huffman: bool = True) -> bytes:
            key = tuple(headers)
            block = self._blocks.get(key)
            if block is None:
                # a pending table size update is the first thing of the next block: that block is not reusable
                reusable = not encoder.header_table.resized
                block = encode([(name, value, True) for name, value in key], huffman=False)
                if reusable:
                    if len(self._blocks) >= self.limit:
                        self._blocks.clear()
                    self._blocks[key] = block
            return block

        encoder.encode = encode_cached  # type: ignore[method-assign,assignment]


class _Connection:
    """One HTTP/2 connection (an ``h2`` state machine and its socket), carrying one call at a time."""

    def __init__(self, path: str, timeout: float | None, header_blocks: _HeaderBlocks) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(timeout)
            self.sock.connect(path)
        except OSError as error:
            self.sock.close()
            raise RpcError(Status.UNAVAILABLE, f"cannot connect to {path}: {error}") from error
        # Non-blocking from here on, waiting with poll(2) for what a deadline leaves: a socket
        # timeout would cost a system call to set before every read and write, and another to poll.
        self.sock.setblocking(False)
        self._readable = select.poll()
        self._readable.register(self.sock, select.POLLIN)
        self._writable = select.poll()
        self._writable.register(self.sock, select.POLLOUT)
        self.h2 = new_connection(_CONFIG)
        self.h2.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _RECEIVE_WINDOW,
            },
        )
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(_RECEIVE_WINDOW - 65535)
        header_blocks.install(self.h2.encoder)
        self.unacked = 0
        """DATA bytes received and not yet given back to the connection's window."""
        self.window_given = False
        """A window update is waiting in ``h2``'s output: the server may be blocked on it, send it now."""
        self.going_away: int | None = None
        """The last stream id the server will process, once it sent GOAWAY."""
        self.broken = False
        self.owed = b""
        """Acknowledgements taken from ``h2`` when a call ended: they go after the next call's request."""

    def owe_acknowledgements(self) -> None:
        """Keep what ``h2`` owes the server (PING and SETTINGS acks) to send after the next call's request.

        Go's server sends a PING (bandwidth estimation) with the first DATA it receives
        while no PING of its own is unanswered. An acknowledgement that arrives after
        the next request's DATA, not before it, spares every other call that PING
        and the WINDOW_UPDATE sent with it: two of the five frames a small call
        otherwise parses. The acknowledgement still goes in the same write.
        """
        self.owed += self.h2.data_to_send()

    @property
    def reusable(self) -> bool:
        """May the pool hand this connection to another call?"""
        return not self.broken and self.going_away is None and self.h2.highest_outbound_stream_id < 2**31 - 3

    def close(self) -> None:
        """Close the socket (the connection is broken from then on)."""
        self.broken = True
        self.sock.close()

    def abort(self) -> None:
        """From another thread: wake the owner's blocked read or write; it then fails."""
        self.broken = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    # -------------------------------------------------------------- socket I/O

    def _wait(self, poller: select.poll, deadline: float | None) -> None:
        """Wait until ``poller`` sees the socket ready (or closed); ``TimeoutError`` at ``deadline``."""
        if deadline is None:
            ready = poller.poll()
        else:
            left = deadline - time.monotonic()
            ready = poller.poll(math.ceil(left * 1000)) if left > 0 else []
        if not ready:
            self.broken = True
            raise TimeoutError

    def _lost(self, error: OSError) -> RpcError:
        """A failed socket I/O: the connection is broken and the call ``UNAVAILABLE``."""
        self.broken = True
        return RpcError(Status.UNAVAILABLE, f"the connection to containerd was lost ({error})")

    def flush(self, deadline: float | None) -> None:
        """Write what ``h2`` has to send within ``deadline``.

        ``TimeoutError`` passes through (the call turns it into DEADLINE_EXCEEDED);
        any other socket error is :class:`RpcError` ``UNAVAILABLE``.
        """
        self.window_given = False
        data = self.h2.data_to_send()
        if self.owed:
            data, self.owed = data + self.owed, b""
        view = memoryview(data)
        while view:
            try:
                view = view[self.sock.send(view) :]
            except BlockingIOError:
                self._wait(self._writable, deadline)
            except OSError as error:
                raise self._lost(error) from error

    def _receive(self, data: bytes) -> list[h2.events.Event]:
        """``h2``'s events for ``data``; the caller hands each to :meth:`note` (a call's dispatch does)."""
        if not data:
            self.broken = True
            raise RpcError(Status.UNAVAILABLE, "containerd closed the connection")
        try:
            return self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as error:
            self.broken = True
            raise RpcError(Status.INTERNAL, f"HTTP/2 protocol error from containerd: {error}") from None

    def note_data(self, length: int) -> None:
        """Count DATA received on any stream; give the connection's window back in large steps.

        (``h2``'s per-event acknowledgement would cost a frame's worth of work each time.)
        """
        self.unacked += length
        if self.unacked >= _RECEIVE_WINDOW // 2:
            self.h2.increment_flow_control_window(self.unacked)
            self.unacked = 0
            self.window_given = True

    def note(self, events: Iterable[h2.events.Event]) -> None:
        """What the connection itself does with events no call dispatches (read while idle)."""
        for event in events:
            if isinstance(event, _DataReceived):
                self.note_data(event.flow_controlled_length)
            elif isinstance(event, _ConnectionTerminated):
                self.note_goaway(event)

    def note_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        """The server is retiring the connection: streams above ``last_stream_id`` were refused."""
        self.going_away = event.last_stream_id if event.last_stream_id is not None else 0

    def read(self, deadline: float | None) -> list[h2.events.Event]:
        """Wait for data and return the events it makes (possibly none); socket errors as in :meth:`flush`."""
        while True:
            self._wait(self._readable, deadline)
            try:
                data = self.sock.recv(_READ_SIZE)
            except BlockingIOError:
                continue  # woken for nothing
            except OSError as error:
                raise self._lost(error) from error
            return self._receive(data)

    def read_available(self) -> list[h2.events.Event] | None:
        """The events of what arrived, without blocking; ``None`` if the connection is closed."""
        events: list[h2.events.Event] = []
        while True:
            try:
                data = self.sock.recv(_READ_SIZE)
            except BlockingIOError:
                return events
            except OSError:
                self.broken = True
                return None
            try:
                received = self._receive(data)
            except RpcError:
                return None
            self.note(received)
            events += received

    def handle_idle(self) -> bool:
        """Process what arrived while the connection sat in the pool; False if it can't be used."""
        if self._readable.poll(0) and self.read_available() is None:
            return False
        return self.reusable  # what it owes (PING and SETTINGS acks) goes with the next call's request


class Call:
    """One gRPC call on a connection of its own, driven by the calling thread.

    ``send``/``end`` write the request side; ``recv`` reads reply messages and
    returns ``None`` once the call ended OK, or raises :class:`RpcError`.
    :meth:`cancel` may come from any thread.
    """

    def __init__(
        self,
        channel: Channel,
        path: str,
        headers: list[tuple[bytes, bytes]],
        timeout: float | None,
        max_receive: int = DEFAULT_MAX_RECEIVE_BYTES,
    ) -> None:
        self._channel = channel
        self.path = path
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.max_receive = max_receive
        self._connection: _Connection | None = None
        self._cancelled = False
        self._finished = False
        self._busy = False
        """The owner is blocked in a read or write (so :meth:`cancel` must wake it, not close under it)."""
        self._lock = threading.Lock()
        self._messages: deque[bytes] = deque()
        self._data = bytearray()
        self._headers: dict[bytes, bytes] | None = None
        self._trailers: dict[bytes, bytes] | None = None
        """The reply's headers and trailers, as ``h2`` gives them (bytes: its ``header_encoding`` is off)."""
        self._remote_ended = False
        self._local_ended = False
        self._error: RpcError | None = None
        self._unacked = 0
        """DATA bytes received on this stream and not yet given back to its window."""
        try:
            connection = self._connection = channel._acquire(timeout)
            self.stream_id = connection.h2.get_next_available_stream_id()
            connection.h2.send_headers(self.stream_id, headers)  # goes out with the first message
        except BaseException:
            self._finish()
            raise

    # -------------------------------------------------------------- the caller's side

    def send(self, message: bytes, *, end: bool = False) -> None:
        """Send one message (ending the request side if ``end``), within the flow-control windows."""
        framed = _MESSAGE.pack(False, len(message)) + message
        connection = self._live()
        if len(framed) <= _SMALL_MESSAGE and not self._remote_ended and self._error is None:
            try:  # h2 checks the windows and frame size before it changes anything
                connection.h2.send_data(self.stream_id, framed, end_stream=end)
            except (h2.exceptions.FlowControlError, h2.exceptions.FrameTooLargeError):
                pass  # the general path waits for room
            except h2.exceptions.StreamClosedError:
                return
            else:
                self._flush()
                self._local_ended = self._local_ended or end
                return
        data = memoryview(framed)
        while True:
            if self._remote_ended or self._error is not None:
                return  # the server answered already: recv() reports it
            try:
                room = min(
                    connection.h2.local_flow_control_window(self.stream_id), connection.h2.max_outbound_frame_size
                )
            except h2.exceptions.StreamClosedError:
                return
            if room <= 0 and data:
                self._step()
                continue
            while data and room > 0:
                size = min(room, len(data))
                connection.h2.send_data(self.stream_id, data[:size].tobytes(), end_stream=end and size == len(data))
                data = data[size:]
                room = min(
                    connection.h2.local_flow_control_window(self.stream_id), connection.h2.max_outbound_frame_size
                )
            self._flush()
            if not data:
                self._local_ended = self._local_ended or end
                return

    def end(self) -> None:
        """End the request side (no more messages)."""
        if not self._local_ended and not self._remote_ended and self._error is None:
            connection = self._live()
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                connection.h2.end_stream(self.stream_id)
            self._flush()
            self._local_ended = True

    @property
    def answered(self) -> bool:
        """Has the server ended the call (its status is what ``recv`` reports next)?"""
        return self._remote_ended or self._error is not None

    def drain(self) -> None:
        """Take in what already arrived, without blocking (a bidirectional call between sends)."""
        with self._io() as connection:
            events = connection.read_available()
        if events is not None:
            self._dispatch(events)
            self._flush()

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
        except (TimeoutError, RpcError) as error:
            raise self._io_failed(error) from None
        finally:
            self._leave()

    def _io_failed(self, error: TimeoutError | RpcError) -> RpcError:
        """The call's error after its read or write failed with ``error``."""
        if isinstance(error, TimeoutError):
            return self._fail(RpcError(Status.DEADLINE_EXCEEDED, "deadline exceeded"))
        return self._fail(self._why(error))

    def _flush(self) -> None:
        # not through _io: this and _step run on every call, where a context manager's cost shows
        connection = self._enter()
        try:
            connection.flush(self.deadline)
        except (TimeoutError, RpcError) as error:
            raise self._io_failed(error) from None
        finally:
            self._leave()

    def _why(self, error: RpcError) -> RpcError:
        if self._cancelled:
            return RpcError(Status.CANCELLED, "the call was cancelled")
        return error

    def _fail(self, error: RpcError) -> RpcError:
        if self._error is None:
            self._error = error
        self._finish()
        return self._error

    def _step(self) -> None:
        """Wait for what the server sends next and handle it; send a window update it may be waiting for.

        Acknowledgements (of the server's PINGs and SETTINGS) wait for the next write:
        a reply's PING costs no write of its own. When the call ends they are set
        aside to follow the next call's request (:meth:`_Connection.owe_acknowledgements`).
        """
        connection = self._enter()
        try:
            events = connection.read(self.deadline)
        except (TimeoutError, RpcError) as error:
            raise self._io_failed(error) from None
        finally:
            self._leave()
        self._dispatch(events)
        if connection.window_given:
            self._flush()

    def _dispatch(self, events: Iterable[h2.events.Event]) -> None:
        connection = self._live()
        stream_id = self.stream_id
        for event in events:
            # The most frequent first. Events of
            # earlier streams are skipped, and so is what follows the end of ours: Go's server resets
            # a stream it answered before the request ended.
            if isinstance(event, _DataReceived):
                connection.note_data(event.flow_controlled_length)
                if event.stream_id != stream_id or self._remote_ended:
                    continue
                self._unacked += event.flow_controlled_length
                if self._unacked >= _RECEIVE_WINDOW // 2 and not event.stream_ended:
                    given, self._unacked = self._unacked, 0
                    # the stream may have ended already, later in the same read (its trailers)
                    with contextlib.suppress(h2.exceptions.StreamClosedError):
                        connection.h2.increment_flow_control_window(given, stream_id)
                        connection.window_given = True
                self._take(event.data)
            elif isinstance(event, _ResponseReceived):
                if event.stream_id == stream_id and not self._remote_ended:
                    self._headers = dict(event.headers)
                    self._check_content_type()
            elif isinstance(event, _TrailersReceived):
                if event.stream_id == stream_id and not self._remote_ended:
                    self._trailers = dict(event.headers)
            elif isinstance(event, _StreamEnded):
                if event.stream_id == stream_id and not self._remote_ended:
                    self._remote_ended = True
                    if self._data:
                        raise self._fail(
                            RpcError(Status.INTERNAL, f"{self.path}: the reply stream ended inside a message")
                        )
            elif isinstance(event, _StreamReset):
                if event.stream_id == stream_id and not self._remote_ended:
                    code = int(event.error_code)
                    status = _RESET_STATUS.get(code, Status.INTERNAL)
                    self._remote_ended = self._local_ended = True
                    raise self._fail(RpcError(status, f"containerd reset the stream (HTTP/2 error {code:#x})"))
            elif isinstance(event, _ConnectionTerminated):
                connection.note_goaway(event)
                if stream_id > (connection.going_away or 0):
                    raise self._fail(RpcError(Status.UNAVAILABLE, "containerd is going away and refused the call"))

    def _check_content_type(self) -> None:
        headers = self._headers or {}
        if headers.get(b":status", b"200") != b"200":
            return  # mapped from the HTTP status when the call ends
        content_type = headers.get(b"content-type", b"")
        if not content_type.startswith(b"application/grpc"):
            raise self._fail(
                RpcError(
                    Status.INTERNAL,
                    f"{self.path}: the reply's content-type is {content_type.decode(errors='replace')!r}, "
                    "not application/grpc",
                )
            )

    def _take(self, data: bytes) -> None:
        """Take in a DATA frame's bytes: the messages it completes are queued for :meth:`recv`."""
        if not self._data and len(data) >= _MESSAGE.size:
            # the common case, a frame holding exactly one whole message: no buffer in between
            compressed, length = _MESSAGE.unpack_from(data)
            if not compressed and length <= self.max_receive and len(data) == _MESSAGE.size + length:
                self._messages.append(data[_MESSAGE.size :])
                return
        self._data += data
        self._split_messages()

    def _split_messages(self) -> None:
        while len(self._data) >= _MESSAGE.size:
            compressed, length = _MESSAGE.unpack_from(self._data)
            if compressed:
                raise self._fail(RpcError(Status.INTERNAL, "containerd sent a compressed message (none was offered)"))
            if length > self.max_receive:
                raise self._fail(
                    RpcError(
                        Status.RESOURCE_EXHAUSTED,
                        f"{self.path}: received a message larger than the maximum ({length} vs. {self.max_receive})",
                    )
                )
            if len(self._data) < _MESSAGE.size + length:
                return
            with memoryview(self._data) as view:  # one copy, not a bytearray slice and then its bytes
                self._messages.append(view[_MESSAGE.size : _MESSAGE.size + length].tobytes())
            del self._data[: _MESSAGE.size + length]

    def _status(self) -> RpcError | None:
        headers = self._headers or {}
        trailers = self._trailers
        if trailers is None and b"grpc-status" in headers:
            trailers = headers  # a trailers-only answer
        if trailers is None:
            http = headers.get(b":status", b"200").decode(errors="replace")
            if http != "200":
                status = _HTTP_STATUS.get(int(http), Status.UNKNOWN) if http.isdigit() else Status.UNKNOWN
                return RpcError(status, f"HTTP status {http} from containerd")
            return RpcError(Status.INTERNAL, f"{self.path}: the call ended without a gRPC status")
        code = trailers.get(b"grpc-status", b"2")
        if code == b"0":
            return None
        try:
            status = Status(int(code))
        except ValueError:
            status = Status.UNKNOWN
        if status is Status.OK:
            return None
        message = unquote(trailers.get(b"grpc-message", b"").decode(errors="replace"))
        return RpcError(status, message or status.name)

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
                connection.h2.reset_stream(self.stream_id, h2.errors.ErrorCodes.CANCEL)
                connection.flush(self.deadline)
            except (TimeoutError, RpcError, h2.exceptions.ProtocolError):
                clean = False
        if clean:
            connection.owe_acknowledgements()
        self._channel._release(connection, reuse=clean)


class Channel:
    """Calls to one gRPC server on a unix socket, over a pool of HTTP/2 connections.

    A call takes an idle connection (or makes one) and gives it back when it
    ended cleanly; a connection that broke, timed out, was cancelled or that the
    server is retiring (GOAWAY) is closed instead. So after containerd restarts
    the next call simply connects again. Up to ``max_idle`` idle connections are
    kept: as many as the engine has worker threads, so a burst never makes more
    connections than calls ran at once. Reply messages over
    ``max_receive_message_bytes`` fail their call with ``RESOURCE_EXHAUSTED``.
    """

    def __init__(
        self,
        socket_path: str,
        authority: str = "localhost",
        max_idle: int = 32,
        max_receive_message_bytes: int = DEFAULT_MAX_RECEIVE_BYTES,
    ) -> None:
        self.socket_path = socket_path
        self.authority = authority
        self.max_idle = max_idle
        self.max_receive_message_bytes = max_receive_message_bytes
        self.connections_made = 0
        """How many connections this channel opened (a diagnostic for tests and benchmarks)."""
        self.active = 0
        """Calls in progress."""
        self._idle: list[_Connection] = []
        self._header_blocks = _HeaderBlocks()
        self._fixed_headers = (
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":authority", authority.encode()),
            (b"te", b"trailers"),
            (b"content-type", b"application/grpc"),
        )
        self._lock = threading.Lock()
        self._closed = False

    def request_headers(
        self, path: str, metadata: Sequence[tuple[str, str]], timeout: float | None
    ) -> list[tuple[bytes, bytes]]:
        """A call's request headers, as bytes (what ``h2`` would otherwise encode for every call)."""
        headers = [(b":path", path.encode()), *self._fixed_headers]
        if timeout is not None:
            # the server's copy of the deadline runs a little longer, so our own decides the status
            # (else containerd may answer first, e.g. UNKNOWN "subscription error: context deadline exceeded")
            headers.append((b"grpc-timeout", _timeout_header(timeout + _SERVER_DEADLINE_MARGIN_S).encode()))
        headers.extend((name.encode(), value.encode()) for name, value in metadata)
        return headers

    def open(self, path: str, metadata: Sequence[tuple[str, str]] = (), timeout: float | None = None) -> Call:
        """Start a call to ``path`` (``/package.Service/Method``): its request headers are sent."""
        return Call(self, path, self.request_headers(path, metadata, timeout), timeout, self.max_receive_message_bytes)

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
            connection = _Connection(self.socket_path, timeout, self._header_blocks)
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
