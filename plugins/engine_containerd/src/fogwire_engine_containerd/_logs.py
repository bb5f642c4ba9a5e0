"""Workload output: FIFOs the shim writes, drained by one thread into log files.

The read ends are opened ``O_RDONLY|O_NONBLOCK`` *before* ``Tasks.Create`` (the
shim's open for writing would block otherwise) and drained continuously (a pipe
holds 64 KiB; a full one stalls the workload). Each line becomes one JSON line in
the workload's log file under the agent's log dir: ``{"t": time, "s": stream, "l": text}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path


class _Stream:
    def __init__(self, fd: int, stream: str, log: Path) -> None:
        self.fd = fd
        self.stream = stream
        self.log = log
        self.partial = b""


class LogPump:
    """Drains every workload FIFO into its log file, on one daemon thread."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._pending: list[_Stream] = []
        self._closing = False
        self._on_eof: Callable[[Path, str], None] | None = None
        self._thread = threading.Thread(target=self._run, name="fogwire-containerd-logs", daemon=True)
        self._thread.start()

    @staticmethod
    def make_fifo(path: Path) -> int:
        """Create the FIFO ``path`` (if needed) and open its read end without blocking."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            os.mkfifo(path, 0o600)
        return os.open(path, os.O_RDONLY | os.O_NONBLOCK)

    def attach(self, fd: int, stream: str, log: Path) -> None:
        """Start draining ``fd`` (call once the shim holds the write end)."""
        with self._lock:
            self._pending.append(_Stream(fd, stream, log))
        os.write(self._wake_w, b"x")

    def close(self) -> None:
        """Stop the thread and close every FIFO read end."""
        self._closing = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._closing:
            for key, _ in self._selector.select(timeout=1.0):
                if key.data is None:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    with self._lock:
                        pending, self._pending = self._pending, []
                    for s in pending:
                        self._selector.register(s.fd, selectors.EVENT_READ, s)
                    continue
                self._drain(key.data)
        for key in list(self._selector.get_map().values()):
            if key.data is not None:
                self._drain(key.data, final=True)
                with contextlib.suppress(OSError):
                    os.close(key.data.fd)
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _drain(self, s: _Stream, final: bool = False) -> None:
        chunks: list[bytes] = []
        eof = False
        while True:
            try:
                chunk = os.read(s.fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                eof = True
                break
            if not chunk:
                eof = True
                break
            chunks.append(chunk)
        data = s.partial + b"".join(chunks)
        *lines, s.partial = data.split(b"\n")
        if (eof or final) and s.partial:
            lines.append(s.partial)
            s.partial = b""
        if lines:
            write_lines(s.log, s.stream, lines)
        if eof and not final:
            self._selector.unregister(s.fd)
            os.close(s.fd)


def write_lines(log: Path, stream: str, lines: list[bytes]) -> None:
    """Append ``lines`` of ``stream`` to the JSON-lines log file ``log``."""
    now = datetime.now(UTC).isoformat()
    out = "".join(
        json.dumps({"t": now, "s": stream, "l": line.decode("utf-8", errors="replace")}) + "\n" for line in lines
    )
    with open(log, "a", encoding="utf-8") as f:
        f.write(out)
