"""The trace-free ``h2`` connection: checked against the ``h2`` release installed, and answering every frame as ``h2``'s own.

Each scenario plays a server (``h2``'s own server side, plus raw frames where a
misbehaving server is needed) against two clients, ``h2``'s ``H2Connection`` and
:class:`TraceFreeConnection`, and records what each client reports (its events,
or the error it raises and that error's cause) and writes after every delivery.
The two records must be identical. The scenarios' own outcomes are checked on the
trace-free client too (a RST_STREAM and the events that come with it, or a
connection error with its GOAWAY); between them they take every branch of the
override's error handling.
"""

from __future__ import annotations

import hashlib
import inspect
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h2
import h2.config
import h2.connection
import h2.errors
import h2.exceptions
import hyperframe.frame
import pytest
from fogwire_engine_containerd import _grpc
from fogwire_engine_containerd._h2_connection import KNOWN_VERSIONS, TraceFreeConnection, new_connection

RECEIVE_FRAME_SOURCE_SHA256 = {
    "4.1.0": "4beae2c3c05681b0f5a501f24234fe2c673148c0734e61bcc3554102e2a3e961",
    **dict.fromkeys(
        ("4.2.0", "4.3.0", "4.4.0", "4.4.1"), "39b2e16b4fd74ed014ca144a0c6e388aef3dc51f116d6f0a874b70d92bd92873"
    ),
}
"""sha256 of ``inspect.getsource(H2Connection._receive_frame)`` in each release the override was checked against."""

SERVER_CONFIG = h2.config.H2Configuration(client_side=False, header_encoding=None)
REQUEST = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/test.Echo/Call"), (b":authority", b"x")]
RESPONSE = [(b":status", b"200"), (b"content-type", b"application/grpc")]
TRAILERS = [(b"grpc-status", b"0")]
STATIC_ONLY_BLOCK = b"\x82\x86\x84"
"""A header block of static-table indexes only (:method GET, :scheme http, :path /): decodable by any peer's HPACK state."""
STATUS_200_BLOCK = b"\x88"
"""``:status 200`` as a static-table index: a response header block any peer's HPACK state decodes."""


class Wire:
    """One client (of the class under test) and an ``h2`` server, with what the client did after each delivery."""

    def __init__(
        self,
        client_class: type[h2.connection.H2Connection],
        server_class: type[h2.connection.H2Connection] = h2.connection.H2Connection,
    ) -> None:
        self.client = client_class(_grpc._CONFIG)
        self.server = server_class(SERVER_CONFIG)
        self.record: list[tuple[Any, ...]] = []
        self.events: list[h2.events.Event] = []
        """Every event the client reported, as objects (the record holds their reprs)."""
        self.client.initiate_connection()
        self.server.initiate_connection()
        self.server.receive_data(self.client.data_to_send())
        self.deliver()
        self.server.receive_data(self.client.data_to_send())

    def request(self) -> int:
        """Open a stream with a complete request; the server reads it. Returns the stream id."""
        stream = self.client.get_next_available_stream_id()
        self.client.send_headers(stream, REQUEST)
        self.client.send_data(stream, b"\0\0\0\0\0", end_stream=True)
        self.server.receive_data(self.client.data_to_send())
        return stream

    def deliver(self, raw: bytes = b"") -> None:
        """Hand the client what the server wrote (then ``raw``); record its events, or its error, and what it wrote."""
        try:
            events = self.client.receive_data(self.server.data_to_send() + raw)
            self.record.append(("events", [repr(event) for event in events]))
            self.events += events
        except h2.exceptions.ProtocolError as error:
            cause = error.__cause__
            self.record.append(("raised", type(error).__name__, str(error), type(cause).__name__, str(cause)))
        self.record.append(("wrote", self.client.data_to_send()))

    def written_frames(self) -> list[hyperframe.frame.Frame]:
        """Every frame the client wrote in the record (the handshake's acknowledgement among them), parsed."""
        frames = []
        for entry in self.record[1:]:
            if entry[0] != "wrote":
                continue
            data = memoryview(entry[1])
            while data:
                frame, length = hyperframe.frame.Frame.parse_frame_header(data[:9])
                frame.parse_body(data[9 : 9 + length])
                frames.append(frame)
                data = data[9 + length :]
        return frames

    def raised(self) -> list[tuple[str, str]]:
        """The errors the client raised: each one's class name and its cause's (``NoneType`` for none)."""
        return [(entry[1], entry[3]) for entry in self.record if entry[0] == "raised"]


Scenario = Callable[[Wire], None]


def full_reply(wire: Wire) -> None:
    """A reply with everything a server may send: settings, ping, padding, priority, an unknown frame, trailers, GOAWAY."""
    stream = wire.request()
    wire.server.update_settings({h2.settings.SettingCodes.MAX_FRAME_SIZE: 32768})
    wire.server.ping(b"12345678")
    wire.server.send_headers(stream, RESPONSE)
    wire.deliver()
    wire.server.receive_data(wire.client.data_to_send())
    body = b"\x00\x00\x00\xbb\x80" + b"m" * 48000
    for start in range(0, len(body), 16000):
        wire.server.send_data(stream, body[start : start + 16000], pad_length=17)
    wire.server.increment_flow_control_window(1024, stream_id=stream)
    # by hand: hyperframe's ExtensionFrame.serialize writes a length of 0
    unknown = struct.pack(">I", len(b"extension"))[1:] + struct.pack(">BBI", 0xFA, 0, stream) + b"extension"
    priority = hyperframe.frame.PriorityFrame(stream, depends_on=0, stream_weight=31)
    wire.deliver(priority.serialize() + unknown)
    wire.server.send_headers(stream, TRAILERS, end_stream=True)
    wire.server.close_connection(last_stream_id=stream)
    wire.deliver()


def reply_on_a_stream_it_reset(wire: Wire) -> None:
    """The client resets its stream; the reply's headers, already on their way, arrive."""
    stream = wire.request()
    wire.client.reset_stream(stream, h2.errors.ErrorCodes.CANCEL)
    wire.server.send_headers(stream, RESPONSE)
    wire.deliver()


def reply_on_a_reset_stream_it_forgot(wire: Wire) -> None:
    """As above, after a newer stream made the client forget the reset one."""
    stream = wire.request()
    wire.client.reset_stream(stream, h2.errors.ErrorCodes.CANCEL)
    wire.request()
    assert stream not in wire.client.streams
    wire.deliver(hyperframe.frame.HeadersFrame(stream, data=STATUS_200_BLOCK, flags=["END_HEADERS"]).serialize())


def ended_reply(wire: Wire) -> int:
    """A complete reply on a new stream; returns the stream."""
    stream = wire.request()
    wire.server.send_headers(stream, RESPONSE)
    wire.server.send_headers(stream, TRAILERS, end_stream=True)
    wire.deliver()
    return stream


def data_after_the_stream_ended(wire: Wire) -> None:
    """A server that sends DATA on a stream it already ended (``h2``'s DATA handler resets the stream itself)."""
    stream = ended_reply(wire)
    wire.deliver(hyperframe.frame.DataFrame(stream, data=b"late").serialize())


def headers_after_the_reply_ended_while_the_request_is_open(wire: Wire) -> None:
    """HEADERS after the server ended its reply while the client's request is still open (``h2`` resets the stream)."""
    stream = wire.client.get_next_available_stream_id()
    wire.client.send_headers(stream, REQUEST)
    wire.server.receive_data(wire.client.data_to_send())
    wire.server.send_headers(stream, RESPONSE)
    wire.server.send_headers(stream, TRAILERS, end_stream=True)
    wire.deliver()
    wire.deliver(hyperframe.frame.HeadersFrame(stream, data=STATUS_200_BLOCK, flags=["END_HEADERS"]).serialize())


def headers_after_the_stream_ended(wire: Wire) -> None:
    """A server that sends HEADERS on a stream it already ended (a connection error)."""
    stream = ended_reply(wire)
    late = hyperframe.frame.HeadersFrame(stream, data=STATUS_200_BLOCK, flags=["END_HEADERS"])
    wire.deliver(late.serialize())


def push_promise(promised: int) -> hyperframe.frame.PushPromiseFrame:
    """A raw PUSH_PROMISE on stream 1 promising ``promised``."""
    return hyperframe.frame.PushPromiseFrame(
        1, promised_stream_id=promised, data=STATIC_ONLY_BLOCK, flags=["END_HEADERS"]
    )


def forget_closed_streams(wire: Wire) -> None:
    """Make the client forget its closed pushed streams (``h2`` does when it counts the open ones)."""
    assert wire.client.open_inbound_streams >= 0
    assert 2 not in wire.client.streams


def pushed(wire: Wire) -> int:
    """The server pushes streams 2 and 4 on a new request's stream; returns that stream."""
    parent = wire.request()
    wire.server.push_stream(
        parent, 2, [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/p"), (b":authority", b"x")]
    )
    wire.server.push_stream(
        parent, 4, [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/q"), (b":authority", b"x")]
    )
    wire.deliver()
    return parent


def push_reusing_a_stream_it_reset(wire: Wire) -> None:
    """A PUSH_PROMISE for a pushed stream id the client reset and forgot (a stream error)."""
    pushed(wire)
    wire.client.reset_stream(2, h2.errors.ErrorCodes.CANCEL)
    forget_closed_streams(wire)
    wire.deliver(push_promise(2).serialize())


def push_reusing_a_stream_that_ended(wire: Wire) -> None:
    """A PUSH_PROMISE for a pushed stream id that ended and was forgotten (a connection error)."""
    pushed(wire)
    wire.server.send_headers(2, RESPONSE, end_stream=True)
    wire.deliver()
    forget_closed_streams(wire)
    wire.deliver(push_promise(2).serialize())


def push_below_the_highest(wire: Wire) -> None:
    """A PUSH_PROMISE for a stream id below one already pushed, never used (a connection error)."""
    parent = wire.request()
    wire.server.push_stream(
        parent, 4, [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/q"), (b":authority", b"x")]
    )
    wire.deliver()
    wire.deliver(push_promise(2).serialize())


SCENARIOS = [
    full_reply,
    reply_on_a_stream_it_reset,
    reply_on_a_reset_stream_it_forgot,
    data_after_the_stream_ended,
    headers_after_the_reply_ended_while_the_request_is_open,
    headers_after_the_stream_ended,
    push_reusing_a_stream_it_reset,
    push_reusing_a_stream_that_ended,
    push_below_the_highest,
]


def played(
    scenario: Scenario,
    client_class: type[h2.connection.H2Connection],
    server_class: type[h2.connection.H2Connection] = h2.connection.H2Connection,
) -> Wire:
    """``scenario`` played against a client of ``client_class`` (by a server of ``server_class``)."""
    wire = Wire(client_class, server_class)
    scenario(wire)
    return wire


def test_the_installed_h2_is_a_release_the_override_was_checked_against() -> None:
    assert h2.__version__ in KNOWN_VERSIONS, (
        f"h2 {h2.__version__} is new: check its H2Connection._receive_frame against "
        "fogwire_engine_containerd._h2_connection.TraceFreeConnection, then add the release to KNOWN_VERSIONS "
        "and its source hash to this test"
    )
    source = inspect.getsource(h2.connection.H2Connection._receive_frame)
    assert hashlib.sha256(source.encode()).hexdigest() == RECEIVE_FRAME_SOURCE_SHA256[h2.__version__], (
        f"h2 {h2.__version__}'s H2Connection._receive_frame is not the one checked: compare it with TraceFreeConnection"
    )
    assert set(RECEIVE_FRAME_SOURCE_SHA256) == KNOWN_VERSIONS


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[scenario.__name__ for scenario in SCENARIOS])
def test_every_frame_is_answered_as_h2_answers_it(scenario: Scenario) -> None:
    ours = played(scenario, TraceFreeConnection)
    theirs = played(scenario, h2.connection.H2Connection)
    assert ours.record == theirs.record


def test_a_full_reply_reaches_the_client() -> None:
    wire = played(full_reply, TraceFreeConnection)
    kinds = {type(event) for event in wire.events}
    assert {
        h2.events.ResponseReceived,
        h2.events.PingReceived,
        h2.events.PriorityUpdated,
        h2.events.UnknownFrameReceived,
        h2.events.TrailersReceived,
        h2.events.StreamEnded,
        h2.events.ConnectionTerminated,
    } <= kinds
    body = b"".join(event.data for event in wire.events if isinstance(event, h2.events.DataReceived))
    assert body == b"\x00\x00\x00\xbb\x80" + b"m" * 48000
    assert not wire.raised()


@pytest.mark.parametrize(
    ("scenario", "stream"),
    [
        (reply_on_a_stream_it_reset, 1),
        (reply_on_a_reset_stream_it_forgot, 1),
        (push_reusing_a_stream_it_reset, 2),
        (data_after_the_stream_ended, 1),
        (headers_after_the_reply_ended_while_the_request_is_open, 1),
    ],
)
def test_a_frame_on_a_closed_stream_is_a_stream_error(scenario: Scenario, stream: int) -> None:
    wire = played(scenario, TraceFreeConnection)
    assert not wire.raised()
    resets = [
        (f.stream_id, f.error_code) for f in wire.written_frames() if isinstance(f, hyperframe.frame.RstStreamFrame)
    ]
    # the client's own resets are CANCEL: the one STREAM_CLOSED is the answer to the frame
    assert resets.count((stream, h2.errors.ErrorCodes.STREAM_CLOSED)) == 1
    assert not any(isinstance(f, hyperframe.frame.GoAwayFrame) for f in wire.written_frames())


def test_the_events_of_a_stream_h2_reset_are_reported() -> None:
    wire = played(headers_after_the_reply_ended_while_the_request_is_open, TraceFreeConnection)
    resets = [event for event in wire.events if isinstance(event, h2.events.StreamReset)]
    assert [(r.stream_id, r.error_code, r.remote_reset) for r in resets] == [
        (1, h2.errors.ErrorCodes.STREAM_CLOSED, False)
    ]


@pytest.mark.parametrize(
    ("scenario", "error", "cause", "code"),
    [
        (headers_after_the_stream_ended, "StreamClosedError", "NoneType", h2.errors.ErrorCodes.STREAM_CLOSED),
        (
            push_reusing_a_stream_that_ended,
            "StreamClosedError",
            "StreamIDTooLowError",
            h2.errors.ErrorCodes.STREAM_CLOSED,
        ),
        (push_below_the_highest, "StreamIDTooLowError", "NoneType", h2.errors.ErrorCodes.PROTOCOL_ERROR),
    ],
)
def test_a_frame_on_a_stream_that_ended_is_a_connection_error(
    scenario: Scenario, error: str, cause: str, code: int
) -> None:
    wire = played(scenario, TraceFreeConnection)
    assert wire.raised() == [(error, cause)]
    goaways = [f for f in wire.written_frames() if isinstance(f, hyperframe.frame.GoAwayFrame)]
    assert [f.error_code for f in goaways] == [code]


def test_received_frames_are_not_formatted(monkeypatch: pytest.MonkeyPatch) -> None:
    formatted: list[str] = []
    original = hyperframe.frame.Frame.__repr__

    def counting_repr(frame: hyperframe.frame.Frame) -> str:
        formatted.append(type(frame).__name__)
        return original(frame)

    monkeypatch.setattr(hyperframe.frame.Frame, "__repr__", counting_repr)
    # the server is trace-free in both plays: what is formatted is the client's doing
    played(full_reply, TraceFreeConnection, TraceFreeConnection)
    assert formatted == []
    played(full_reply, h2.connection.H2Connection, TraceFreeConnection)
    assert "DataFrame" in formatted  # what the override spares: h2's own formats every frame


def test_an_unknown_h2_release_gets_h2s_own_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    assert type(new_connection(_grpc._CONFIG)) is TraceFreeConnection
    monkeypatch.setattr(h2, "__version__", "99.0.0")
    assert type(new_connection(_grpc._CONFIG)) is h2.connection.H2Connection


def test_the_client_s_connections_are_trace_free(tmp_path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "grpc.sock"))
    listener.listen()
    try:
        connection = _grpc._Connection(str(tmp_path / "grpc.sock"), 5, _grpc._HeaderBlocks())
        try:
            assert type(connection.h2) is TraceFreeConnection
        finally:
            connection.close()
    finally:
        listener.close()
