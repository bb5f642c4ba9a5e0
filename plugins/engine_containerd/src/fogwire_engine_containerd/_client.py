"""The gRPC connection to containerd: stubs, the namespace header, error helpers.

The transport is the plugin's own small blocking gRPC layer on ``h2`` (:mod:`._grpc`):
grpcio's C core would cost the idle agent about 10 MiB of resident memory more.
Calls block their caller, as grpcio's sync API does; the engine makes them from
its worker threads. Only the engine module imports this (it imports ``h2`` and
the generated stubs).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from google.protobuf import empty_pb2
from google.protobuf.message_factory import GetMessageClass

from fogwire_engine_containerd._grpc import DEFAULT_MAX_RECEIVE_BYTES, Call, Channel, RpcError, Status
from fogwire_engine_containerd._proto import (
    containers_pb2,
    content_pb2,
    diff_pb2,
    events_pb2,
    images_pb2,
    leases_pb2,
    runc_options_pb2,
    snapshots_pb2,
    task_events_pb2,
    tasks_pb2,
    types_pb2,
    version_pb2,
)

__all__ = [
    "Client",
    "RpcError",
    "StatusCode",
    "code_of",
    "containers_pb2",
    "content_pb2",
    "diff_pb2",
    "events_pb2",
    "images_pb2",
    "leases_pb2",
    "runc_options_pb2",
    "snapshots_pb2",
    "task_events_pb2",
    "tasks_pb2",
    "types_pb2",
]

NAMESPACE_HEADER = "containerd-namespace"
LEASE_HEADER = "containerd-lease"

StatusCode = Status
"""gRPC status codes (the same names as grpcio's ``StatusCode``)."""


def code_of(error: BaseException) -> Status | None:
    """The gRPC status code of ``error``, or ``None`` if it is not an RPC error."""
    return error.code() if isinstance(error, RpcError) else None


def is_not_found(error: BaseException) -> bool:
    """True if ``error`` is containerd's NOT_FOUND."""
    return code_of(error) is Status.NOT_FOUND


def is_unavailable(error: BaseException) -> bool:
    """True if containerd did not answer (socket gone, daemon restarting)."""
    return code_of(error) in (Status.UNAVAILABLE, Status.CANCELLED)


def details(error: BaseException) -> str:
    """The server's message of an RPC error, or ``str(error)``."""
    if isinstance(error, RpcError):
        return error.details()
    return str(error)


class ServerStream:
    """A server-streaming call's replies as a blocking iterator; :meth:`cancel` ends it from any thread.

    After a cancel, the iteration raises :class:`RpcError` ``CANCELLED``.
    """

    def __init__(self, call: Call, reply: Any) -> None:
        self._call = call
        self._reply = reply

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        data = self._call.recv()
        if data is None:
            raise StopIteration
        return self._reply.FromString(data)

    def cancel(self) -> None:
        """End the call."""
        self._call.cancel()

    def __del__(self) -> None:
        self._call.cancel()  # a stream dropped unread must not leave its connection open


class CallFuture:
    """A unary call running on a thread of its own: :meth:`result` waits, :meth:`cancel` ends it.

    What grpcio's ``method.future(...)`` gives, for the calls the engine starts
    before the action they wait on (``Tasks.Wait`` before ``Tasks.Kill``).
    """

    def __init__(self, channel: Channel, method: Method, request: Any, metadata: Any, timeout: float | None) -> None:
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._call: Call | None = None
        self._cancelled = False
        self._reply: Any = None
        self._error: BaseException | None = None
        args = (channel, method, request.SerializeToString(), metadata, timeout)
        threading.Thread(target=self._run, args=args, name="fogwire-containerd-call", daemon=True).start()

    def _started(self, call: Call) -> None:
        with self._lock:
            self._call = call
            cancelled = self._cancelled
        if cancelled:
            call.cancel()

    def _run(self, channel: Channel, method: Method, request: bytes, metadata: Any, timeout: float | None) -> None:
        try:
            data = channel.unary(method.path, request, metadata or (), timeout, started=self._started)
            self._reply = method.reply.FromString(data)
        except BaseException as error:  # handed to result()
            self._error = error
        finally:
            self._done.set()

    def result(self, timeout: float | None = None) -> Any:
        """The reply; raises :class:`RpcError`, or :class:`TimeoutError` if not done within ``timeout``."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"no answer in {timeout}s")
        if self._error is not None:
            raise self._error
        return self._reply

    def cancel(self) -> None:
        """End the call (its thread then ends too)."""
        with self._lock:
            self._cancelled = True
            call = self._call
        if call is not None:
            call.cancel()


class Method:
    """One RPC of a service, called synchronously (``method(request, metadata=…, timeout=…)``).

    The call shapes are grpcio's: a unary call returns the reply, a server stream
    returns a :class:`ServerStream`, and a bidirectional call takes an iterable
    of requests and returns the replies. ``future(…)`` starts a unary call and
    returns a :class:`CallFuture`.
    """

    def __init__(self, channel: Channel, path: str, streams: tuple[bool, bool], request: Any, reply: Any) -> None:
        self._channel = channel
        self.path = path
        self._client_streaming, self._server_streaming = streams
        self.request = request
        self.reply = reply

    def __call__(self, request: Any, *, metadata: Any = None, timeout: float | None = None) -> Any:
        """Make the call and wait for its answer (see the class docstring for the shapes)."""
        md: Sequence[tuple[str, str]] = metadata or ()
        if self._client_streaming and self._server_streaming:
            messages: Iterable[Any] = request
            replies = self._channel.bidi(self.path, (m.SerializeToString() for m in messages), md, timeout)
            return [self.reply.FromString(data) for data in replies]
        if self._server_streaming:
            return ServerStream(self._channel.stream(self.path, request.SerializeToString(), md, timeout), self.reply)
        if self._client_streaming:
            raise NotImplementedError(f"{self.path}: client-streaming calls are not used by this plugin")
        return self.reply.FromString(self._channel.unary(self.path, request.SerializeToString(), md, timeout))

    def future(self, request: Any, *, metadata: Any = None, timeout: float | None = None) -> CallFuture:
        """Start a unary call on its own thread."""
        return CallFuture(self._channel, self, request, metadata, timeout)


class Stub:
    """A :class:`Method` for every RPC of one service, built from its descriptor.

    The same thing grpcio-tools' ``*_pb2_grpc`` modules do, without a module per
    service.
    """

    def __init__(self, channel: Channel, module: Any, service: str) -> None:
        descriptor = module.DESCRIPTOR.services_by_name[service]
        for method in descriptor.methods:
            setattr(
                self,
                method.name,
                Method(
                    channel,
                    f"/{descriptor.full_name}/{method.name}",
                    (method.client_streaming, method.server_streaming),
                    GetMessageClass(method.input_type),
                    GetMessageClass(method.output_type),
                ),
            )

    def __getattr__(self, name: str) -> Any:  # for type checkers: RPCs are set in __init__
        raise AttributeError(name)


class Client:
    """A pool of connections to containerd's gRPC socket and a stub per service.

    A connection is made when a call finds none idle, and made again after
    containerd restarted: a call never needs a reconnect of its own.
    """

    def __init__(
        self, address: str, namespace: str, max_receive_message_bytes: int = DEFAULT_MAX_RECEIVE_BYTES
    ) -> None:
        self.address = address
        self.namespace = namespace
        self.channel = Channel(
            address.removeprefix("unix://").removeprefix("unix:"), max_receive_message_bytes=max_receive_message_bytes
        )
        self.version = Stub(self.channel, version_pb2, "Version")
        self.containers = Stub(self.channel, containers_pb2, "Containers")
        self.tasks = Stub(self.channel, tasks_pb2, "Tasks")
        self.images = Stub(self.channel, images_pb2, "Images")
        self.content = Stub(self.channel, content_pb2, "Content")
        self.snapshots = Stub(self.channel, snapshots_pb2, "Snapshots")
        self.diff = Stub(self.channel, diff_pb2, "Diff")
        self.leases = Stub(self.channel, leases_pb2, "Leases")
        self.events = Stub(self.channel, events_pb2, "Events")

    def md(self, lease: str | None = None) -> Sequence[tuple[str, str]]:
        """Call metadata: the namespace header, and the lease header if given."""
        if lease:
            return ((NAMESPACE_HEADER, self.namespace), (LEASE_HEADER, lease))
        return ((NAMESPACE_HEADER, self.namespace),)

    def ping(self, timeout_s: float = 2.0) -> str:
        """containerd's version; raises :class:`RpcError` if it does not answer in time."""
        resp = self.version.Version(empty_pb2.Empty(), timeout=timeout_s)
        return str(resp.version)

    def wait_ready(self, timeout_s: float) -> str:
        """Wait up to ``timeout_s`` for containerd to answer; return its version."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self.ping(min(2.0, max(0.1, deadline - time.monotonic())))
            except RpcError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)

    def read_blob(self, digest: str) -> bytes:
        """The whole content blob ``digest`` (manifests and configs: small)."""
        chunks = self.content.Read(content_pb2.ReadContentRequest(digest=digest), metadata=self.md(), timeout=60)
        return b"".join(chunk.data for chunk in chunks)

    def subscribe(self, filters: Sequence[str]) -> ServerStream:
        """A stream of event envelopes (end it with ``.cancel()``)."""
        stream: ServerStream = self.events.Subscribe(events_pb2.SubscribeRequest(filters=list(filters)))
        return stream

    def close(self) -> None:
        """Close the idle connections; calls still running end on their own."""
        self.channel.close()
