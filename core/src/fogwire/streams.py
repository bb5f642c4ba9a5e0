"""Blocking HTTP streams (logs, events) turned into async iterators, and small parsers.

For engine plugins whose SDK reads streams with blocking calls (the docker and
podman SDKs, and any third party's like them). Each stream gets its own
daemon thread that hands items to the event loop; closing the async iterator
shuts the HTTP connection down, which ends the thread's blocking read.

Only the reader thread closes (releases) a response: closing it from the loop
while the reader is still inside urllib3 hands the connection back to the
shared pool too early, and the reader, woken up, then closes it under a request
another thread has just sent on it (``http.client.ResponseNotReady``). So an
opener may return a separate ``interrupt`` that only wakes the reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

T = TypeVar("T")

_ITEM, _ERROR, _END = 0, 1, 2

Opener = Callable[
    [], tuple[Iterable[T], Callable[[], None]] | tuple[Iterable[T], Callable[[], None], Callable[[], None]]
]
"""Runs in the stream's thread: opens the stream, returns ``(items, close)`` or ``(items, release, interrupt)``.

With two elements, ``close`` is called from the loop's side when the consumer
stops, so it must be safe from any thread. With three, ``interrupt`` (any
thread: e.g. :func:`shutdown_response`) wakes the reader, and ``release`` is
called by the reader thread itself once it has stopped reading.
"""


async def stream_in_thread(opener: Opener[T], name: str) -> AsyncIterator[T]:
    """Iterate what ``opener`` opens, in a thread of its own, without blocking the loop.

    An exception raised while opening or reading is re-raised here. When the
    consumer stops (``break``, ``aclose()``, cancellation) the stream's
    ``interrupt`` (or ``close``) is called from the loop's side to unblock the
    thread; see :data:`Opener`.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
    cancelled = threading.Event()
    closers: list[Callable[[], None]] = []

    def put(kind: int, value: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens any more
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

    def run() -> None:
        release: Callable[[], None] | None = None
        try:
            opened = opener()
            items = opened[0]
            if len(opened) == 3:
                release = opened[1]
                closers.append(opened[2])
            else:
                closers.append(opened[1])
            if cancelled.is_set():
                if release is None:
                    opened[1]()
                return
            for item in items:
                if cancelled.is_set():
                    break
                put(_ITEM, item)
        except BaseException as error:
            if not cancelled.is_set():
                put(_ERROR, error)
        finally:
            if release is not None:
                with contextlib.suppress(Exception):
                    release()
            put(_END, None)

    threading.Thread(target=run, name=name, daemon=True).start()
    try:
        while True:
            kind, value = await queue.get()
            if kind == _ITEM:
                yield value
            elif kind == _ERROR:
                raise value
            else:
                return
    finally:
        cancelled.set()
        for close in closers:
            with contextlib.suppress(Exception):
                close()


def shutdown_response(response: Any) -> None:
    """Shut down the socket under a streaming ``requests`` response (from any thread).

    A plain ``close()`` does not wake a thread blocked reading the socket;
    ``shutdown`` does, and leaves the response for its reader to close.
    """
    fp = getattr(getattr(response, "raw", None), "_fp", None)
    raw = getattr(getattr(fp, "fp", None), "raw", None)
    sock = getattr(raw, "_sock", None) or getattr(raw, "sock", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _read_exact(raw: Any, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = raw.read(size - len(data))
        if not chunk:
            return data
        data += chunk
    return data


def iter_log_frames(raw: Any) -> Iterator[tuple[str, str]]:
    """``(stream, line)`` pairs from a multiplexed (non-TTY) log stream.

    Each frame is an 8-byte header (stream id, 3 zero bytes, big-endian size)
    and its payload; payloads are split into lines per stream, so a line cut
    across frames comes out whole.
    """
    pending = {1: b"", 2: b""}
    while True:
        header = _read_exact(raw, 8)
        if len(header) < 8:
            break
        stream_id = 2 if header[0] == 2 else 1
        payload = _read_exact(raw, int.from_bytes(header[4:8], "big"))
        *lines, rest = (pending[stream_id] + payload).split(b"\n")
        pending[stream_id] = rest
        for line in lines:
            yield ("stderr" if stream_id == 2 else "stdout"), line.decode("utf-8", "replace")
    for stream_id, rest in pending.items():
        if rest:
            yield ("stderr" if stream_id == 2 else "stdout"), rest.decode("utf-8", "replace")


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 timestamp with nanoseconds as engines write it; ``None`` for the zero time."""
    if not value or value.startswith("0001-01-01"):
        return None
    parsed = datetime.fromisoformat(value.strip())  # 3.11+: "Z" and nanoseconds are fine
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def time_from_nanos(nanos: int | None, seconds: int | None = None) -> datetime:
    """An event's time from ``timeNano`` (or ``time``), in UTC; now if neither is given."""
    if nanos:
        return datetime.fromtimestamp(nanos / 1e9, UTC)
    if seconds:
        return datetime.fromtimestamp(seconds, UTC)
    return datetime.now(UTC)
