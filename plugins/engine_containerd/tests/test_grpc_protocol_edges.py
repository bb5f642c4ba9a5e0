"""The gRPC client on HTTP/2 paths a real containerd does not take on demand.

containerd (Go's HTTP/2 stack) never pads frames, never splits a header block,
never refuses a stream or answers HTTP 503 when asked to; these cases are played
by a server peer built on ``h2``, a complete HTTP/2 implementation, over a real
unix socket. Everything containerd does do is tested against containerd in
``test_grpc_client.py``.
"""

from __future__ import annotations

import socket
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest
from fogwire_engine_containerd._grpc import Channel, RpcError, Status

PATH = "/test.Echo/Call"

Respond = Callable[[h2.connection.H2Connection, int, dict[str, str], bytes], None]
"""Answers one request: (connection, stream id, request headers, request body)."""


def message(payload: bytes, *, compressed: bool = False) -> bytes:
    """A gRPC length-prefixed message."""
    return struct.pack(">?I", compressed, len(payload)) + payload


class Peer:
    """An HTTP/2 server on a unix socket that answers every request with ``respond``."""

    def __init__(self, path: Path, respond: Respond) -> None:
        self.path = path
        self.respond = respond
        self.received: list[h2.events.Event] = []
        self.connections = 0
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            self._sockets.append(sock)
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, sock: socket.socket) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        requests: dict[int, tuple[dict[str, str], bytearray]] = {}
        with sock:
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                for event in conn.receive_data(data):
                    self.received.append(event)
                    if isinstance(event, h2.events.RequestReceived):
                        requests[event.stream_id] = ({str(k): str(v) for k, v in event.headers}, bytearray())
                    elif isinstance(event, h2.events.DataReceived):
                        requests[event.stream_id][1].extend(event.data)
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        headers, body = requests.pop(event.stream_id)
                        self.respond(conn, event.stream_id, headers, bytes(body))
                try:
                    sock.sendall(conn.data_to_send())
                except OSError:
                    return

    def close(self) -> None:
        """Stop accepting and close every connection."""
        for sock in [self._listener, *self._sockets]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._accepting.join(5)
        self._listener.close()
        for thread in self._threads:
            thread.join(5)
        assert not self._accepting.is_alive() and not any(t.is_alive() for t in self._threads)


@pytest.fixture
def serve() -> Iterator[Callable[[Respond], tuple[Peer, Channel]]]:
    """Start a peer with a responder; yields (peer, channel to it)."""
    made: list[tuple[Peer, Channel]] = []
    with tempfile.TemporaryDirectory(prefix="fwh2-") as tmp:

        def start(respond: Respond) -> tuple[Peer, Channel]:
            peer = Peer(Path(tmp) / f"peer{len(made)}.sock", respond)
            channel = Channel(str(peer.path))
            made.append((peer, channel))
            return peer, channel

        try:
            yield start
        finally:
            for peer, channel in made:
                channel.close()
                peer.close()


def ok_headers() -> list[tuple[str, str]]:
    return [(":status", "200"), ("content-type", "application/grpc")]


def call_error(channel: Channel) -> RpcError:
    """The error a unary call to the peer ends with."""
    with pytest.raises(RpcError) as caught:
        channel.unary(PATH, b"", [], 5)
    return caught.value


def answer(conn: h2.connection.H2Connection, sid: int, payload: bytes) -> None:
    """A well-formed answer: headers, one message, trailers with status OK."""
    conn.send_headers(sid, ok_headers())
    conn.send_data(sid, message(payload))
    conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)


def test_padded_frames_and_a_trailer_block_split_over_continuation_frames(serve: Any) -> None:
    long_value = "x" * 40000  # more than one 16 KiB frame: h2 sends HEADERS + CONTINUATION

    def respond(conn: h2.connection.H2Connection, sid: int, headers: dict[str, str], body: bytes) -> None:
        conn.send_headers(sid, ok_headers())
        conn.send_data(sid, message(b"first"), pad_length=17)
        conn.send_data(sid, message(b"second"), pad_length=200)
        conn.send_headers(sid, [("grpc-status", "0"), ("x-long", long_value)], end_stream=True)

    peer, channel = serve(respond)
    call = channel.open(PATH, [("containerd-namespace", "t")], 5)
    call.send(b"hello", end=True)
    assert call.recv() == b"first"
    assert call.recv() == b"second"
    assert call.recv() is None
    assert call._trailers is not None and call._trailers[b"x-long"] == long_value.encode()


def test_a_request_header_block_over_one_frame_goes_out_as_continuation_frames(serve: Any) -> None:
    seen: dict[str, str] = {}

    def respond(conn: h2.connection.H2Connection, sid: int, headers: dict[str, str], body: bytes) -> None:
        seen.update(headers)
        answer(conn, sid, body[5:])

    _, channel = serve(respond)
    big = "v" * 50000
    assert channel.unary(PATH, b"ping", [("x-big", big)], 5) == b"ping"
    assert seen["x-big"] == big and seen[":path"] == PATH and seen["te"] == "trailers"
    assert seen["grpc-timeout"].endswith("m")


def test_a_trailers_only_error_and_its_percent_encoded_message(serve: Any) -> None:
    def respond(conn: h2.connection.H2Connection, sid: int, headers: dict[str, str], body: bytes) -> None:
        conn.send_headers(
            sid, [*ok_headers(), ("grpc-status", "5"), ("grpc-message", "no%20such%20thing%3A%20x")], end_stream=True
        )

    _, channel = serve(respond)
    error = call_error(channel)
    assert error.code() is Status.NOT_FOUND
    assert error.details() == "no such thing: x"
    assert channel.active == 0


def test_an_http_error_without_a_grpc_status_maps_to_a_grpc_code(serve: Any) -> None:
    def respond(conn: h2.connection.H2Connection, sid: int, headers: dict[str, str], body: bytes) -> None:
        conn.send_headers(sid, [(":status", "503")], end_stream=True)

    _, channel = serve(respond)
    error = call_error(channel)
    assert error.code() is Status.UNAVAILABLE
    assert "503" in error.details()


def test_a_refused_stream_is_unavailable_and_the_connection_stays_usable(serve: Any) -> None:
    answers = iter(["refuse", "ok"])

    def respond(conn: h2.connection.H2Connection, sid: int, headers: dict[str, str], body: bytes) -> None:
        if next(answers) == "refuse":
            conn.reset_stream(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        answer(conn, sid, b"fine")

    peer, channel = serve(respond)
    error = call_error(channel)
    assert error.code() is Status.UNAVAILABLE
    assert channel.unary(PATH, b"", [], 5) == b"fine"
    assert peer.connections == 1


def test_goaway_below_our_stream_fails_the_call_and_retires_the_connection(serve: Any) -> None:
    calls = iter(["ok", "goaway", "ok"])

    def respond(conn: h2.connection.H2Connection, sid: int, headers: dict[str, str], body: bytes) -> None:
        if next(calls) == "goaway":
            conn.close_connection(last_stream_id=sid - 2)  # the server never took this call
            return
        answer(conn, sid, b"fine")

    peer, channel = serve(respond)
    assert channel.unary(PATH, b"", [], 5) == b"fine"
    error = call_error(channel)
    assert error.code() is Status.UNAVAILABLE
    assert "going away" in error.details()
    assert channel.unary(PATH, b"", [], 5) == b"fine"  # on a new connection
    assert peer.connections == 2 and channel.connections_made == 2


def test_a_compressed_message_is_refused(serve: Any) -> None:
    def respond(conn: h2.connection.H2Connection, sid: int, headers: dict[str, str], body: bytes) -> None:
        conn.send_headers(sid, ok_headers())
        conn.send_data(sid, message(b"zz", compressed=True))
        conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)

    _, channel = serve(respond)
    error = call_error(channel)
    assert error.code() is Status.INTERNAL
    assert "compressed" in error.details()


def test_a_ping_that_came_while_idle_is_answered_with_the_next_call(serve: Any) -> None:
    def respond(conn: h2.connection.H2Connection, sid: int, headers: dict[str, str], body: bytes) -> None:
        answer(conn, sid, b"fine")
        conn.ping(b"idle-png")  # arrives after the call ended: the connection sits in the pool

    peer, channel = serve(respond)
    assert channel.unary(PATH, b"", [], 5) == b"fine"
    assert channel.unary(PATH, b"", [], 5) == b"fine"
    acks = [e for e in peer.received if isinstance(e, h2.events.PingAckReceived)]
    assert acks and acks[0].ping_data == b"idle-png"
    assert peer.connections == 1


def test_a_ping_with_an_answer_is_acknowledged_after_the_next_request(serve: Any) -> None:
    """As Go's server does, the peer pings with each answer; the ack rides behind the next call's request.

    Go pings (to estimate bandwidth) on the first DATA it receives while no ping of its
    own is unanswered: an ack that comes after that DATA spares the next call a ping.
    """
    pings = iter([b"ping-one", b"ping-two", b"ping-thr"])

    def respond(conn: h2.connection.H2Connection, sid: int, headers: dict[str, str], body: bytes) -> None:
        conn.ping(next(pings))
        answer(conn, sid, b"fine")

    peer, channel = serve(respond)
    for _ in range(3):
        assert channel.unary(PATH, b"", [], 5) == b"fine"
    order = [
        f"ack {e.ping_data.decode()}" if isinstance(e, h2.events.PingAckReceived) else f"data {e.stream_id}"
        for e in peer.received
        if isinstance(e, (h2.events.PingAckReceived, h2.events.DataReceived))
    ]
    assert order == ["data 1", "data 3", "ack ping-one", "data 5", "ack ping-two"]
    assert peer.connections == 1


def test_a_reply_stream_that_ends_inside_a_message_is_an_error(serve: Any) -> None:
    """grpcio and grpc-go report a truncated message; it is never a clean end."""

    def respond(conn: h2.connection.H2Connection, sid: int, headers: dict[str, str], body: bytes) -> None:
        conn.send_headers(sid, ok_headers())
        conn.send_data(sid, message(b"a whole message")[:9])  # prefix says 15 bytes, 4 follow
        conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)

    _, channel = serve(respond)
    error = call_error(channel)
    assert error.code() is Status.INTERNAL
    assert "ended inside a message" in error.details()


def test_a_message_over_the_maximum_size_is_refused(serve: Any) -> None:
    """The limit is checked on the length prefix, before the message is buffered."""

    def respond(conn: h2.connection.H2Connection, sid: int, headers: dict[str, str], body: bytes) -> None:
        conn.send_headers(sid, ok_headers())
        conn.send_data(sid, struct.pack(">?I", False, 64 * 1024 * 1024) + b"x" * 100)  # claims 64 MiB

    peer, _ = serve(respond)
    channel = Channel(str(peer.path), max_receive_message_bytes=1024)
    try:
        error = call_error(channel)
        assert error.code() is Status.RESOURCE_EXHAUSTED
        assert "larger than the maximum (67108864 vs. 1024)" in error.details()
        assert Channel(str(peer.path)).max_receive_message_bytes == 4 * 1024 * 1024, "gRPC's default"
    finally:
        channel.close()


def test_a_reply_that_is_not_grpc_is_refused(serve: Any) -> None:
    def respond(conn: h2.connection.H2Connection, sid: int, headers: dict[str, str], body: bytes) -> None:
        conn.send_headers(sid, [(":status", "200"), ("content-type", "text/html")])
        conn.send_data(sid, b"<html>not grpc</html>", end_stream=True)

    _, channel = serve(respond)
    error = call_error(channel)
    assert error.code() is Status.INTERNAL
    assert "content-type is 'text/html'" in error.details()


@pytest.mark.parametrize("size", [0, 10_000, 16_379, 16_380, 200_000])
def test_a_unary_request_of_any_size_arrives_whole(serve: Any, size: int) -> None:
    """Up to one frame the request goes out at once; beyond it (or the 64 KiB window) it waits for room."""

    def echo_length(conn: h2.connection.H2Connection, sid: int, headers: dict[str, str], body: bytes) -> None:
        length = struct.unpack(">I", body[1:5])[0]
        answer(conn, sid, b"%d %d" % (length, len(body) - 5))

    request = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    _, channel = serve(echo_length)
    assert channel.unary(PATH, request, [], 5) == b"%d %d" % (size, size)
