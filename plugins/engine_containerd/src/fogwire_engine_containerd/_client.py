"""The gRPC connection to containerd: stubs, the namespace header, error helpers.

The transport is the plugin's own small gRPC client over ``h2`` (:mod:`._grpc`),
on a private event loop that one thread of this client runs. grpcio's C core
would cost the idle agent about 9 MiB of resident memory more.

Every call here blocks its caller until the answer comes, as grpcio's sync API
does; the engine calls it from its worker threads. Only the engine module imports
this (it imports ``h2`` and the generated stubs).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
import time
from collections.abc import Coroutine, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from google.protobuf import empty_pb2
from google.protobuf.message_factory import GetMessageClass

from fogwire_engine_containerd._grpc import Channel, GrpcStream, Status, StatusError
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

T = TypeVar("T")


class RpcError(Exception):
    """A containerd call that failed: its gRPC status code and the server's message.

    A connection that could not be made or was lost is ``UNAVAILABLE``; a call
    past its timeout is ``DEADLINE_EXCEEDED``; a cancelled stream or a call on a
    closed client is ``CANCELLED``.
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


async def _translated(coro: Coroutine[Any, Any, T], stream: list[GrpcStream], timeout: float | None) -> T:
    """Await ``coro`` within ``timeout``, turning :class:`StatusError` into :class:`RpcError`.

    ``stream`` holds the call's stream once it is open, so a deadline or a
    cancellation can reset it.
    """
    try:
        async with asyncio.timeout(timeout):
            return await coro
    except StatusError as error:
        raise RpcError(error.status, error.message) from error
    except TimeoutError:
        for each in stream:
            each.cancel()
        raise RpcError(Status.DEADLINE_EXCEEDED, "deadline exceeded") from None
    except asyncio.CancelledError:
        for each in stream:
            each.cancel()
        raise RpcError(Status.CANCELLED, "cancelled") from None


class _IoLoop:
    """A private event loop on a thread of its own: it carries every call of one client.

    Keeping the transport off the engine's loop lets the engine's worker threads (and
    tests, and the address probe) call containerd synchronously from anywhere.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.closed = False
        self._thread = threading.Thread(target=self.loop.run_forever, name="fogwire-containerd-grpc", daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; its errors are already :class:`RpcError`."""
        if self.closed:
            coro.close()
            raise RpcError(Status.CANCELLED, "the containerd client is closed")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result (never from the loop itself)."""
        try:
            return self.submit(coro).result()
        except concurrent.futures.CancelledError:
            raise RpcError(Status.CANCELLED, "cancelled") from None

    def close(self, channel: Channel) -> None:
        """Close ``channel`` on the loop, then stop the loop and its thread."""
        if self.closed:
            return

        async def shut() -> None:
            channel.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.call(shut())
        finally:
            self.closed = True
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            if not self._thread.is_alive():
                self.loop.close()


class ServerStream:
    """A blocking iterator over a server-streaming call's messages.

    Messages are read on the client's loop into a queue as they come; iterating
    waits on the queue. :meth:`cancel` (from any thread) ends the call, and the
    iteration then raises :class:`RpcError` ``CANCELLED``.
    """

    _END = object()

    def __init__(self, io: _IoLoop, method: Method, request: Any, metadata: Any, timeout: float | None) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._future = io.submit(self._pump(method, request, metadata, timeout))

    async def _pump(self, method: Method, request: Any, metadata: Any, timeout: float | None) -> None:
        opened: list[GrpcStream] = []

        async def read() -> None:
            stream = await method.open(metadata, timeout)
            opened.append(stream)
            await stream.send(request.SerializeToString(), end=True)
            while (data := await stream.recv()) is not None:
                self._queue.put(method.reply.FromString(data))

        try:
            await _translated(read(), opened, timeout)
        except RpcError as error:
            self._queue.put(error)
        else:
            self._queue.put(self._END)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        item = self._queue.get()
        if item is self._END:
            self._queue.put(item)  # the end stays the end for every later call
            raise StopIteration
        if isinstance(item, RpcError):
            self._queue.put(item)
            raise item
        return item

    def cancel(self) -> None:
        """End the call; a waiting iteration raises ``CANCELLED``."""
        if self._future.cancel():
            self._queue.put(RpcError(Status.CANCELLED, "the stream was cancelled"))


class Method:
    """One RPC of a service, called synchronously (``method(request, metadata=…, timeout=…)``).

    The call signature is grpcio's: a unary call returns the reply, a server
    stream returns a :class:`ServerStream`, and a bidirectional call takes an
    iterable of requests (drawn on a worker thread, so it may block) and returns
    the replies. ``future(…)`` starts a unary call and returns a
    :class:`concurrent.futures.Future` of its reply.
    """

    def __init__(
        self, io: _IoLoop, channel: Channel, path: str, streams: tuple[bool, bool], request: type, reply: Any
    ) -> None:
        self._io = io
        self._channel = channel
        self.path = path
        self._client_streaming, self._server_streaming = streams
        self.request = request
        self.reply = reply

    async def open(self, metadata: Any, timeout: float | None) -> GrpcStream:
        """Start the call on the client's loop."""
        return await self._channel.open(self.path, metadata or (), timeout)

    async def _unary(self, request: Any, metadata: Any, timeout: float | None) -> Any:
        opened: list[GrpcStream] = []

        async def call() -> Any:
            stream = await self.open(metadata, timeout)
            opened.append(stream)
            await stream.send(request.SerializeToString(), end=True)
            data = await stream.recv()
            if data is None:
                raise StatusError(Status.INTERNAL, f"{self.path}: the server sent no reply")
            if await stream.recv() is not None:
                raise StatusError(Status.INTERNAL, f"{self.path}: the server sent more than one reply")
            return self.reply.FromString(data)

        return await _translated(call(), opened, timeout)

    async def _bidi(self, requests: Iterable[Any], metadata: Any, timeout: float | None) -> list[Any]:
        loop = asyncio.get_running_loop()
        source: Iterator[Any] = iter(requests)
        end: Any = object()
        opened: list[GrpcStream] = []

        async def call() -> list[Any]:
            stream = await self.open(metadata, timeout)
            opened.append(stream)

            async def send() -> None:
                while (message := await loop.run_in_executor(None, next, source, end)) is not end:
                    await stream.send(message.SerializeToString())
                await stream.end()

            sender = asyncio.ensure_future(send())
            try:
                replies = []
                while (data := await stream.recv()) is not None:
                    replies.append(self.reply.FromString(data))
                await sender
                return replies
            finally:
                sender.cancel()

        return await _translated(call(), opened, timeout)

    def __call__(self, request: Any, *, metadata: Any = None, timeout: float | None = None) -> Any:
        """Make the call and wait for its answer (see the class docstring for the shapes)."""
        if self._client_streaming and self._server_streaming:
            return self._io.call(self._bidi(request, metadata, timeout))
        if self._server_streaming:
            return ServerStream(self._io, self, request, metadata, timeout)
        if self._client_streaming:
            raise NotImplementedError(f"{self.path}: client-streaming calls are not used by this plugin")
        return self._io.call(self._unary(request, metadata, timeout))

    def future(
        self, request: Any, *, metadata: Any = None, timeout: float | None = None
    ) -> concurrent.futures.Future[Any]:
        """Start a unary call; the future's result is the reply (or :class:`RpcError`)."""
        return self._io.submit(self._unary(request, metadata, timeout))


class Stub:
    """A :class:`Method` for every RPC of one service, built from its descriptor.

    The same thing grpcio-tools' ``*_pb2_grpc`` modules do, without a module per
    service.
    """

    def __init__(self, io: _IoLoop, channel: Channel, module: Any, service: str) -> None:
        descriptor = module.DESCRIPTOR.services_by_name[service]
        for method in descriptor.methods:
            setattr(
                self,
                method.name,
                Method(
                    io,
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
    """One HTTP/2 connection to containerd's gRPC socket and a stub per service.

    The connection is made on the first call and made again on the next call
    after it is lost (containerd restarted), as grpcio's channel does.
    """

    def __init__(self, address: str, namespace: str) -> None:
        self.address = address
        self.namespace = namespace
        self._io = _IoLoop()
        self.channel = Channel(address.removeprefix("unix://").removeprefix("unix:"))
        self.version = Stub(self._io, self.channel, version_pb2, "Version")
        self.containers = Stub(self._io, self.channel, containers_pb2, "Containers")
        self.tasks = Stub(self._io, self.channel, tasks_pb2, "Tasks")
        self.images = Stub(self._io, self.channel, images_pb2, "Images")
        self.content = Stub(self._io, self.channel, content_pb2, "Content")
        self.snapshots = Stub(self._io, self.channel, snapshots_pb2, "Snapshots")
        self.diff = Stub(self._io, self.channel, diff_pb2, "Diff")
        self.leases = Stub(self._io, self.channel, leases_pb2, "Leases")
        self.events = Stub(self._io, self.channel, events_pb2, "Events")

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
        """Close the connection and stop the client's loop thread."""
        self._io.close(self.channel)
