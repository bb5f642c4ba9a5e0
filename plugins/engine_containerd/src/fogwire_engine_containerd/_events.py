"""containerd's task events, read on a thread of their own, and the engine's event subscribers.

:class:`TaskEvents` keeps one subscription to containerd's event service for the
namespace's task starts, exits and OOM kills, and resubscribes after containerd
restarts. A subscription counts as live only once a marker event published after
it comes through, so no exit slips between a check and the subscription; after a
resubscribe the engine is told to reconcile. Each event is handed to the loop.

:class:`Subscribers` fans the engine's own events out to every ``events()`` reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from google.protobuf import any_pb2

from fogwire.engine import EngineEvent
from fogwire_engine_containerd._client import Client, RpcError, details, events_pb2, task_events_pb2

log = logging.getLogger(__name__)

MARKER_TOPIC = "/fogwire/subscribed"
"""The topic of the marker event that proves a subscription live."""
MARKER_TYPE_URL = "fogwire.containerd/marker"


class Subscribers:
    """Every reader of the engine's events, one queue each; ``None`` tells a reader the engine closed."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[EngineEvent | None]] = set()

    async def events(self) -> AsyncIterator[EngineEvent]:
        """The engine's events from now on, until the reader stops or the engine closes."""
        queue: asyncio.Queue[EngineEvent | None] = asyncio.Queue()
        self._queues.add(queue)
        try:
            while True:
                event = await queue.get()
                if event is None:
                    return
                yield event
        finally:
            self._queues.discard(queue)

    def emit(self, event: EngineEvent) -> None:
        """Hand ``event`` to every reader (on the loop)."""
        for queue in list(self._queues):
            queue.put_nowait(event)

    def close(self) -> None:
        """End every reader's iteration."""
        for queue in list(self._queues):
            queue.put_nowait(None)


class TaskEvents:
    """The subscriber thread: containerd task events → handlers on the loop.

    :param client: the engine's started client.
    :param namespace: the containerd namespace whose tasks are watched.
    :param closing: set when the engine closes; the thread ends.
    :param call_soon: runs a handler on the engine's loop (thread-safe).
    :param on_exit: ``(container, pid, status, when)`` for a workload's exit (not an exec'd check's).
    :param on_start: ``(container, when)`` for a task start.
    :param on_oom: ``(container, when)`` for an OOM kill.
    :param on_resubscribed: after a resubscribe (containerd restarted): exits may have been missed.
    """

    def __init__(
        self,
        *,
        client: Callable[[], Client],
        namespace: str,
        closing: threading.Event,
        call_soon: Callable[..., None],
        on_exit: Callable[[str, int, int, datetime], None],
        on_start: Callable[[str, datetime], None],
        on_oom: Callable[[str, datetime], None],
        on_resubscribed: Callable[[], None],
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._closing = closing
        self._call_soon = call_soon
        self._on_exit = on_exit
        self._on_start = on_start
        self._on_oom = on_oom
        self._on_resubscribed = on_resubscribed
        self._stream: Any = None
        self._thread: threading.Thread | None = None
        self.subscribed = threading.Event()
        """Set once the subscription is known to be live."""

    def start(self) -> None:
        """Start the subscriber thread (:attr:`subscribed` is set once it is live)."""
        self._thread = threading.Thread(target=self._run, name="fogwire-containerd-events", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """End the subscription and wait for the thread (blocking; ``closing`` must be set first)."""
        stream = self._stream
        if stream is not None:
            stream.cancel()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        filters = [
            f'namespace=="{self._namespace}",topic~="^/tasks/(start|exit|oom)$"',
            f'namespace=="{self._namespace}",topic=="{MARKER_TOPIC}"',
        ]
        backoff = 0.1
        first = True
        while not self._closing.is_set():
            token = os.urandom(8).hex()
            live = threading.Event()
            try:
                stream = self._client().subscribe(filters)
                self._stream = stream
                threading.Thread(target=self._mark, args=(token, live), daemon=True).start()
                for envelope in stream:
                    backoff = 0.1
                    if envelope.topic == MARKER_TOPIC:
                        if envelope.event.value == token.encode() and not live.is_set():
                            live.set()
                            self.subscribed.set()
                            if not first:
                                self._call_soon(self._on_resubscribed)
                            first = False
                        continue
                    self.dispatch(envelope)
            except RpcError as error:
                if self._closing.is_set():
                    return
                log.debug("containerd event stream ended: %s", details(error))
            finally:
                live.set()  # stops the marker thread
            if self._closing.wait(backoff):
                return
            backoff = min(backoff * 2, 2.0)

    def _mark(self, token: str, live: threading.Event) -> None:
        """Publish the marker event until the subscriber thread has seen it."""
        event = any_pb2.Any(type_url=MARKER_TYPE_URL, value=token.encode())
        while not live.is_set() and not self._closing.is_set():
            with contextlib.suppress(RpcError, ValueError):
                c = self._client()
                c.events.Publish(events_pb2.PublishRequest(topic=MARKER_TOPIC, event=event), metadata=c.md(), timeout=5)
            live.wait(0.05)

    def dispatch(self, envelope: Any) -> None:
        """Hand one task event to its handler on the loop."""
        type_url = envelope.event.type_url.rsplit("/", 1)[-1]
        when = datetime.fromtimestamp(envelope.timestamp.seconds + envelope.timestamp.nanos / 1e9, UTC)
        if type_url == "containerd.events.TaskExit":
            ev = task_events_pb2.TaskExit.FromString(envelope.event.value)
            if ev.id and ev.id != ev.container_id:
                return  # an exec'd process (health check), not the workload
            self._call_soon(self._on_exit, ev.container_id, int(ev.pid), int(ev.exit_status), when)
        elif type_url == "containerd.events.TaskStart":
            ev = task_events_pb2.TaskStart.FromString(envelope.event.value)
            self._call_soon(self._on_start, ev.container_id, when)
        elif type_url == "containerd.events.TaskOOM":
            ev = task_events_pb2.TaskOOM.FromString(envelope.event.value)
            self._call_soon(self._on_oom, ev.container_id, when)
