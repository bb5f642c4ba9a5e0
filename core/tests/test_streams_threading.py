"""``fogwire.streams.stream_in_thread``: who wakes the reader and who releases the stream.

Releasing a pooled HTTP response from the loop while its reader thread is still
reading is the race that made podman calls fail with ``ResponseNotReady``; with a
three-element opener the loop only interrupts, and the reader thread releases.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Iterator

from fogwire.streams import stream_in_thread


class Blocking:
    """An iterable that yields its items, then blocks until interrupted (as a quiet stream does)."""

    def __init__(self, items: list[int]) -> None:
        self.items = items
        self.wake: queue.Queue[None] = queue.Queue()
        self.calls: list[tuple[str, str]] = []

    def __iter__(self) -> Iterator[int]:
        yield from self.items
        self.wake.get(timeout=10)  # the "socket shutdown" ends the blocking read

    def interrupt(self) -> None:
        self.calls.append(("interrupt", threading.current_thread().name))
        self.wake.put(None)

    def release(self) -> None:
        self.calls.append(("release", threading.current_thread().name))


async def _take(stream: Blocking, opener: Callable[[], tuple], count: int) -> list[int]:  # type: ignore[type-arg]
    got = []
    async with contextlib.aclosing(stream_in_thread(opener, "fw-test-stream")) as items:
        async for item in items:
            got.append(item)
            if len(got) == count:
                break
    return got


async def test_the_loop_interrupts_and_the_reader_releases() -> None:
    stream = Blocking([1, 2, 3])
    got = await _take(stream, lambda: (stream, stream.release, stream.interrupt), 2)
    assert got == [1, 2]
    for _ in range(100):
        if len(stream.calls) == 2:
            break
        await asyncio.sleep(0.02)
    assert stream.calls == [("interrupt", threading.current_thread().name), ("release", "fw-test-stream")]


async def test_a_two_element_opener_is_closed_from_the_loop() -> None:
    stream = Blocking([1, 2, 3])
    got = await _take(stream, lambda: (stream, stream.interrupt), 1)
    assert got == [1]
    assert stream.calls == [("interrupt", threading.current_thread().name)]


async def test_a_stream_that_ends_by_itself_is_released_by_its_reader() -> None:
    stream = Blocking([7])
    stream.wake.put(None)  # no blocking at the end: the stream ends on its own
    got = [item async for item in stream_in_thread(lambda: (stream, stream.release, stream.interrupt), "fw-test-end")]
    assert got == [7]
    assert ("release", "fw-test-end") in stream.calls
