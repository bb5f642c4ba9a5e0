"""The plugin's own gRPC client (``_grpc`` over ``h2``, behind ``_client``) against a real containerd.

Every case talks to the harness containerd, or to a private containerd started
and stopped here: statuses and their messages, deadlines, cancellation, server
and bidirectional streams past the HTTP/2 flow-control windows, many calls at
once on one connection, and reconnecting after containerd goes away.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fogwire_engine_containerd._client import (
    Client,
    RpcError,
    StatusCode,
    containers_pb2,
    content_pb2,
    events_pb2,
    tasks_pb2,
)
from fogwire_engine_containerd._daemon import EmbeddedContainerd
from google.protobuf import any_pb2, empty_pb2


@pytest.fixture
def client(harness_containerd_url: str) -> Iterator[Client]:
    """A client of the harness containerd in a namespace of its own."""
    c = Client(harness_containerd_url, f"grpc-test-{secrets.token_hex(3)}")
    try:
        yield c
    finally:
        c.close()


def _open_streams(c: Client) -> int:
    return c.channel.active


def test_a_unary_call_returns_the_reply_and_an_error_carries_status_and_message(client: Client) -> None:
    assert client.ping().startswith("1.")
    with pytest.raises(RpcError) as caught:
        client.containers.Get(containers_pb2.GetContainerRequest(id="nope"), metadata=client.md())
    assert caught.value.code() is StatusCode.NOT_FOUND
    assert caught.value.details() == f'container "nope" in namespace "{client.namespace}": not found'
    with pytest.raises(RpcError) as caught:
        client.containers.Get(containers_pb2.GetContainerRequest(id="nope"))  # no namespace header
    assert caught.value.code() is StatusCode.FAILED_PRECONDITION
    assert "namespace is required" in caught.value.details()
    assert _open_streams(client) == 0


def test_a_deadline_ends_the_call(client: Client) -> None:
    # Subscribe never answers on its own: the deadline must end it
    started = time.monotonic()
    stream = client.events.Subscribe(events_pb2.SubscribeRequest(filters=['topic=="/never"']), timeout=0.3)
    with pytest.raises(RpcError) as caught:
        next(iter(stream))
    assert caught.value.code() is StatusCode.DEADLINE_EXCEEDED
    assert 0.25 < time.monotonic() - started < 3
    assert _open_streams(client) == 0
    assert client.ping()  # the channel still works


def test_a_cancelled_future_resets_its_stream_and_the_connection_goes_on(client: Client) -> None:
    waiter = client.tasks.Wait.future(tasks_pb2.WaitRequest(container_id="nope"), metadata=client.md())
    # a Wait on a missing task fails at once: NOT_FOUND through the future
    with pytest.raises(RpcError) as caught:
        waiter.result(timeout=5)
    assert caught.value.code() is StatusCode.NOT_FOUND

    stream = client.events.Subscribe(events_pb2.SubscribeRequest(filters=['topic=="/never"']))
    deadline = time.monotonic() + 5
    while _open_streams(client) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _open_streams(client) == 1
    stream.cancel()
    with pytest.raises(RpcError) as caught:
        next(iter(stream))
    assert caught.value.code() is StatusCode.CANCELLED
    while _open_streams(client) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _open_streams(client) == 0
    assert client.ping()


def test_a_server_stream_delivers_published_events_in_order(client: Client) -> None:
    topic = f"/fogwire-test/{secrets.token_hex(4)}"
    stream = client.events.Subscribe(events_pb2.SubscribeRequest(filters=[f'topic=="{topic}"']))
    payloads = [f"event-{i}".encode() for i in range(50)]
    received: list[bytes] = []

    def read() -> None:
        for envelope in stream:
            received.append(envelope.event.value)
            if envelope.event.value == payloads[-1]:
                return

    reader = threading.Thread(target=read)
    reader.start()
    # markers until the subscription is live (events published before it are not delivered), then the 50
    marker = any_pb2.Any(type_url="fogwire.test", value=b"marker")
    deadline = time.monotonic() + 10
    while not received and time.monotonic() < deadline:
        client.events.Publish(events_pb2.PublishRequest(topic=topic, event=marker), metadata=client.md())
        time.sleep(0.05)
    for payload in payloads:
        client.events.Publish(
            events_pb2.PublishRequest(topic=topic, event=any_pb2.Any(type_url="fogwire.test", value=payload)),
            metadata=client.md(),
        )
    reader.join(10)
    stream.cancel()
    assert not reader.is_alive()
    assert [r for r in received if r != b"marker"] == payloads


def test_a_blob_larger_than_every_window_goes_in_and_comes_back_whole(client: Client) -> None:
    """8 MiB in 1 MiB messages: past HTTP/2's 64 KiB initial windows in both directions."""
    blob = os.urandom(8 * 1024 * 1024)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    ref = f"grpc-test-{secrets.token_hex(4)}"
    chunk = 1024 * 1024

    def requests() -> Iterator[content_pb2.WriteContentRequest]:
        for offset in range(0, len(blob), chunk):
            yield content_pb2.WriteContentRequest(
                action=content_pb2.WRITE,
                ref=ref,
                total=len(blob),
                expected=digest,
                offset=offset,
                data=blob[offset : offset + chunk],
            )
        yield content_pb2.WriteContentRequest(
            action=content_pb2.COMMIT, ref=ref, total=len(blob), expected=digest, offset=len(blob)
        )

    try:
        replies = client.content.Write(requests(), metadata=client.md(), timeout=60)
        assert len(replies) >= 9  # containerd answers every request
        assert replies[-1].action == content_pb2.COMMIT and replies[-1].digest == digest
        assert client.read_blob(digest) == blob
    finally:
        try:
            client.content.Delete(content_pb2.DeleteContentRequest(digest=digest), metadata=client.md())
        except RpcError as error:
            assert error.code() is StatusCode.NOT_FOUND
    assert _open_streams(client) == 0


def test_a_bidirectional_call_stops_drawing_requests_once_the_server_fails_it(client: Client) -> None:
    """containerd rejects a write at the wrong offset at once; the rest (downloads, in a pull) is never drawn."""
    ref = f"grpc-test-{secrets.token_hex(4)}"
    chunk = os.urandom(64 * 1024)
    drawn = 0

    def requests() -> Iterator[content_pb2.WriteContentRequest]:
        nonlocal drawn
        for i in range(100):
            drawn += 1
            offset = i * len(chunk) if i != 1 else 10 * len(chunk)  # the second one is out of place
            yield content_pb2.WriteContentRequest(action=content_pb2.WRITE, ref=ref, offset=offset, data=chunk)
            time.sleep(0.005)

    with pytest.raises(RpcError) as caught:
        client.content.Write(requests(), metadata=client.md(), timeout=30)
    assert caught.value.code() is StatusCode.OUT_OF_RANGE
    assert "must occur at current offset" in caught.value.details()
    assert drawn < 50
    assert _open_streams(client) == 0
    client.content.Abort(content_pb2.AbortRequest(ref=ref), metadata=client.md())


def test_many_calls_at_once_from_many_threads_share_a_pool_of_connections(client: Client) -> None:
    def call(i: int) -> StatusCode:
        try:
            client.containers.Get(containers_pb2.GetContainerRequest(id=f"missing-{i}"), metadata=client.md())
        except RpcError as error:
            return error.code()
        raise AssertionError("a missing container was found")

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        codes = list(pool.map(call, range(400)))
    assert codes == [StatusCode.NOT_FOUND] * 400
    # the pool never holds more connections than calls ran at once
    assert client.channel.connections_made <= 32
    assert _open_streams(client) == 0


def test_an_unreachable_socket_is_unavailable_and_names_the_path() -> None:
    path = Path(tempfile.gettempdir()) / f"no-containerd-{secrets.token_hex(3)}.sock"
    c = Client(f"unix://{path}", "x")
    try:
        with pytest.raises(RpcError) as caught:
            c.ping(0.5)
        assert caught.value.code() is StatusCode.UNAVAILABLE
        assert str(path) in caught.value.details()
    finally:
        c.close()
    with pytest.raises(RpcError) as caught:
        c.ping()
    assert caught.value.code() is StatusCode.CANCELLED
    assert "closed" in caught.value.details()


def test_containerd_going_away_ends_open_calls_and_the_next_call_reconnects(tmp_path: Path) -> None:
    daemon = EmbeddedContainerd("containerd", tmp_path / "data", tmp_path / "run", tmp_path / "log")
    daemon.start()
    try:
        daemon.wait_socket(30)
        c = Client(daemon.address, "x")
        try:
            c.wait_ready(30)
            stream = c.events.Subscribe(events_pb2.SubscribeRequest(filters=['topic=="/never"']))
            deadline = time.monotonic() + 5
            while _open_streams(c) == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            daemon.stop()  # SIGTERM: containerd sends GOAWAY and closes the connection
            with pytest.raises(RpcError) as caught:
                next(iter(stream))
            assert caught.value.code() is StatusCode.UNAVAILABLE
            with pytest.raises(RpcError) as caught:
                c.ping(1)
            assert caught.value.code() is StatusCode.UNAVAILABLE
            daemon.start()
            daemon.wait_socket(30)
            assert c.wait_ready(30).startswith("1.")
            assert c.version.Version(empty_pb2.Empty(), timeout=5).version
        finally:
            c.close()
    finally:
        daemon.stop()
