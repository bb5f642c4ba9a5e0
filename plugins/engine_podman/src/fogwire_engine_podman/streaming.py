"""Long-lived podman streams (events, followed logs), each on a connection nobody else uses.

Why not the engine's client: a stream is read in a thread of its own and closed
from the event loop (:func:`fogwire.streams.stream_in_thread`). Closing a
``requests`` response from another thread hands its connection back to the
pool while the reader, woken by the close, is still inside urllib3: the reader
then closes that connection again, under a request another thread has just
sent on it, and that request fails with ``http.client.ResponseNotReady``
(podman-py 5.8, requests 2.34, urllib3 2.8). So each stream gets its own
:class:`podman.api.APIClient`, only the socket is shut down from outside, and
the response and the client are closed by exactly one thread: the reader, or the
closer when no reader ever started.

A stream has no read timeout once its headers are in: podman sends nothing on a
quiet event or log stream, and the engine's ``timeout_s`` would end it. Podman
4.3 sends the headers of a followed log stream only with the workload's first
output, so that wait is unbounded too. Until the headers are in, :meth:`close`
cannot reach the socket: a followed stream of a silent workload closed that
early keeps its thread until the workload prints, stops or is removed.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import podman.api

from fogwire.errors import EngineError
from fogwire_engine_podman.transport import close_failed_connects, unreachable

T = TypeVar("T")


class DedicatedStream:
    """One streaming request to the podman service on an :class:`~podman.api.APIClient` of its own.

    :meth:`open` and :meth:`items` run in the reader thread; :meth:`close` may run
    in any thread, any number of times. ``on_release`` is called once, when the
    client is closed.
    """

    def __init__(self, url: str, timeout_s: float, on_release: Callable[[DedicatedStream], None]) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._on_release = on_release
        self._client = podman.api.APIClient(base_url=url)
        close_failed_connects(self._client)
        self._lock = threading.Lock()
        self._response: Any = None
        self._sock: socket.socket | None = None
        self._reading = False
        self._closing = False
        self._released = False

    @property
    def closing(self) -> bool:
        """Whether :meth:`close` was called (an error while reading is then the close itself)."""
        return self._closing

    def open(self, path: str, params: Mapping[str, Any], headers_within: bool = True) -> Any:
        """GET ``path`` (relative to ``/vX/libpod/``) as a stream; the response once its headers are in.

        Connecting is bounded by ``timeout_s``, and so is waiting for the headers
        if ``headers_within``; reading the body is not.
        """
        timeout = (self.timeout_s, self.timeout_s) if headers_within else (self.timeout_s, None)
        try:
            response = self._client.get(path, params=params, stream=True, timeout=timeout)
        except BaseException as error:
            self.release()
            if unreachable(error):
                raise EngineError(f"cannot reach the podman service at {self.url}: {error}; is it running?") from error
            raise
        sock = getattr(getattr(response.raw, "_connection", None), "sock", None)
        with self._lock:
            self._response = response
            self._sock = sock if isinstance(sock, socket.socket) else None
            released = self._released
        if released:  # closed while the request was under way
            response.close()
            raise EngineError(f"the stream {path!r} from podman at {self.url} was closed while opening")
        if self._sock is not None:
            self._sock.settimeout(None)
        return response

    def items(self, source: Iterable[T], what: str) -> Iterator[T]:
        """``source`` (read from the response), releasing the stream when it ends, fails or is closed.

        A failure caused by :meth:`close` ends the iteration quietly; any other
        becomes an :class:`~fogwire.errors.EngineError` naming ``what``.
        """
        with self._lock:
            if self._released:
                return
            self._reading = True
        try:
            yield from source
        except Exception as error:
            if self._closing:
                return
            if isinstance(error, EngineError):
                raise
            raise EngineError(
                f"{what} from podman at {self.url} broke off: {error}; is the service running?"
            ) from error
        finally:
            self.release()

    def close(self) -> None:
        """Stop the stream from any thread: wake the reader, or release at once if nobody reads."""
        with self._lock:
            self._closing = True
            sock, reading = self._sock, self._reading
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed by the reader
                sock.shutdown(socket.SHUT_RDWR)
        if not reading:
            self.release()

    def release(self) -> None:
        """Close the response and the client (once; later calls do nothing)."""
        with self._lock:
            if self._released:
                return
            self._released = True
            response = self._response
        try:
            if response is not None:
                response.close()
        finally:
            self._client.close()
            self._on_release(self)
