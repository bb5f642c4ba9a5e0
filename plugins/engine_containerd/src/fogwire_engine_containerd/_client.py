"""The gRPC connection to containerd: stubs, the namespace header, error helpers.

Imports ``grpc`` and the generated stubs, so only the engine module imports this.
Everything here blocks; the engine calls it from worker threads.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
from google.protobuf import empty_pb2
from google.protobuf.message_factory import GetMessageClass

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
MAX_MESSAGE = 16 * 1024 * 1024


def code_of(error: BaseException) -> grpc.StatusCode | None:
    """The gRPC status code of ``error``, or ``None`` if it is not an RPC error."""
    if isinstance(error, grpc.RpcError):
        code = error.code()
        return code if isinstance(code, grpc.StatusCode) else None
    return None


def is_not_found(error: BaseException) -> bool:
    """True if ``error`` is containerd's NOT_FOUND."""
    return code_of(error) is grpc.StatusCode.NOT_FOUND


def is_unavailable(error: BaseException) -> bool:
    """True if containerd did not answer (socket gone, daemon restarting)."""
    return code_of(error) in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


def details(error: BaseException) -> str:
    """The server's message of an RPC error, or ``str(error)``."""
    if isinstance(error, grpc.RpcError):
        return str(error.details())
    return str(error)


class Stub:
    """Callables for every RPC of one service, built from its descriptor.

    The same thing grpcio-tools' ``*_pb2_grpc`` modules do, without importing
    one more module per service (they cost import time and add nothing).
    """

    def __init__(self, channel: grpc.Channel, module: Any, service: str) -> None:
        descriptor = module.DESCRIPTOR.services_by_name[service]
        for method in descriptor.methods:
            path = f"/{descriptor.full_name}/{method.name}"
            request = GetMessageClass(method.input_type)
            response = GetMessageClass(method.output_type)
            if method.client_streaming and method.server_streaming:
                make = channel.stream_stream
            elif method.server_streaming:
                make = channel.unary_stream
            elif method.client_streaming:
                make = channel.stream_unary
            else:
                make = channel.unary_unary
            setattr(
                self,
                method.name,
                make(path, request_serializer=request.SerializeToString, response_deserializer=response.FromString),
            )

    def __getattr__(self, name: str) -> Any:  # for type checkers: RPCs are set in __init__
        raise AttributeError(name)


class Client:
    """One channel to containerd's gRPC socket and a stub per service."""

    def __init__(self, address: str, namespace: str) -> None:
        self.address = address
        self.namespace = namespace
        target = address if address.startswith("unix:") else f"unix://{address}"
        self.channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE),
                ("grpc.max_send_message_length", MAX_MESSAGE),
                # containerd's socket is local: reconnect fast after a restart
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 1000),
            ],
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
        """containerd's version; raises :class:`grpc.RpcError` if it does not answer in time."""
        resp = self.version.Version(empty_pb2.Empty(), timeout=timeout_s, wait_for_ready=True)
        return str(resp.version)

    def wait_ready(self, timeout_s: float) -> str:
        """Wait up to ``timeout_s`` for containerd to answer; return its version."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self.ping(min(2.0, max(0.1, deadline - time.monotonic())))
            except grpc.RpcError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)

    def read_blob(self, digest: str) -> bytes:
        """The whole content blob ``digest`` (manifests and configs: small)."""
        chunks = self.content.Read(content_pb2.ReadContentRequest(digest=digest), metadata=self.md(), timeout=60)
        return b"".join(chunk.data for chunk in chunks)

    def subscribe(self, filters: Sequence[str]) -> Iterator[Any]:
        """A stream of event envelopes (cancel it with ``.cancel()``)."""
        return self.events.Subscribe(events_pb2.SubscribeRequest(filters=list(filters)))  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()
