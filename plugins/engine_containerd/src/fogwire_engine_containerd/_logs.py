"""Workload output: FIFOs the shim writes, drained by one thread into log files.

The read ends are opened ``O_RDONLY|O_NONBLOCK`` *before* ``Tasks.Create`` (the
shim's open for writing would block otherwise) and drained continuously (a pipe
holds 64 KiB; a full one stalls the workload). Each line becomes one JSON line in
the workload's log file under the agent's log dir: ``{"t": time, "s": stream, "l": text}``.

Files are rotated as Docker's ``json-file`` driver rotates with ``max-size`` and
``max-file``: when ``<name>.log`` passes ``max_bytes`` it becomes ``<name>.log.1``
(the older ones shift up, the oldest beyond ``max_files`` is deleted), so a
chatty workload can't fill a small device's disk. :class:`LogReader` reads
across rotations: the tail of every kept file, and a follow that finishes the
rotated file before going on with the new one.
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
from typing import Literal

Stream = Literal["stdout", "stderr"]
"""Which of a workload's outputs a line came from."""

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_FILES = 3


class _Stream:
    def __init__(self, fd: int, stream: str, log: Path, max_bytes: int | None) -> None:
        self.fd = fd
        self.stream = stream
        self.log = log
        self.max_bytes = max_bytes
        self.partial = b""


class LogPump:
    """Drains every workload FIFO into its log file, on one daemon thread."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, max_files: int = DEFAULT_MAX_FILES) -> None:
        self.max_bytes = max_bytes
        self.max_files = max(1, max_files)
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

    def attach(self, fd: int, stream: str, log: Path, max_bytes: int | None = None) -> None:
        """Start draining ``fd`` (call once the shim holds the write end).

        ``max_bytes``: the workload's own log bound, per file of two (its spec's
        ``log_max_mib``); ``None``: the pump's default size and file count.
        """
        with self._lock:
            self._pending.append(_Stream(fd, stream, log, max_bytes))
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
            if s.max_bytes is None:
                write_lines(s.log, s.stream, lines, self.max_bytes, self.max_files)
            else:
                write_lines(s.log, s.stream, lines, s.max_bytes, 2)
        if eof and not final:
            self._selector.unregister(s.fd)
            os.close(s.fd)


def write_lines(
    log: Path, stream: str, lines: list[bytes], max_bytes: int = 0, max_files: int = DEFAULT_MAX_FILES
) -> None:
    """Append ``lines`` of ``stream`` to the JSON-lines log file ``log``; rotate it past ``max_bytes``."""
    now = datetime.now(UTC).isoformat()
    out = "".join(
        json.dumps({"t": now, "s": stream, "l": line.decode("utf-8", errors="replace")}) + "\n" for line in lines
    )
    with open(log, "a", encoding="utf-8") as f:
        f.write(out)
        size = f.tell()
    if max_bytes and size >= max_bytes:
        rotate(log, max_files)


def rotated(log: Path, max_files: int = 64) -> list[Path]:
    """``log``'s rotated files that exist, the oldest first."""
    found = []
    for i in range(1, max_files + 1):
        older = log.with_name(f"{log.name}.{i}")
        if not older.exists():
            break
        found.append(older)
    return found[::-1]


def rotate(log: Path, max_files: int) -> None:
    """``log`` becomes ``log.1``, ``log.1`` becomes ``log.2``…; at most ``max_files`` files are kept in all."""
    if max_files <= 1:
        log.unlink(missing_ok=True)
        return
    log.with_name(f"{log.name}.{max_files - 1}").unlink(missing_ok=True)
    for i in range(max_files - 2, 0, -1):
        older = log.with_name(f"{log.name}.{i}")
        if older.exists():
            os.replace(older, log.with_name(f"{log.name}.{i + 1}"))
    os.replace(log, log.with_name(f"{log.name}.1"))


def remove_logs(log: Path) -> None:
    """Delete ``log`` and every rotated file of it."""
    for path in [*rotated(log), log]:
        path.unlink(missing_ok=True)


class LogReader:
    """Reads a workload's JSON-lines log across rotations, keeping its place between calls.

    :meth:`read_all` returns what every kept file holds, the oldest first;
    :meth:`read_new` returns what was written since the last call. The place is
    the current file's inode and offset: when ``<name>.log`` has been rotated
    meanwhile, the rest of the old file (now ``<name>.log.1``) comes first.
    """

    def __init__(self, log: Path) -> None:
        self.log = log
        self._inode: int | None = None
        self._offset = 0

    def read_all(self) -> list[tuple[Stream, str]]:
        """Every ``(stream, text)`` line of the rotated files and the current one."""
        lines: list[tuple[Stream, str]] = []
        for older in rotated(self.log):
            lines.extend(self._parse(_read_from(older, 0)[0]))
        current, self._inode, self._offset = self._current(0)
        lines.extend(self._parse(current))
        return lines

    def read_new(self) -> list[tuple[Stream, str]]:
        """The lines written since the last call (across a rotation)."""
        try:
            f = open(self.log, "rb")
        except FileNotFoundError:
            return []
        with f:
            inode = os.fstat(f.fileno()).st_ino
            earlier = b""
            if self._inode is not None and inode != self._inode:
                earlier = self._rest_of_rotated(self._inode, self._offset)
                self._offset = 0
            self._inode = inode
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self._offset += end
        return self._parse(earlier + data[:end])

    def _rest_of_rotated(self, inode: int, offset: int) -> bytes:
        """What the file ``inode`` (rotated away since) holds from ``offset`` on."""
        for older in reversed(rotated(self.log)):  # the newest rotated file first
            with contextlib.suppress(FileNotFoundError):
                if older.stat().st_ino == inode:
                    return _read_from(older, offset)[0]
        return b""

    def _current(self, offset: int) -> tuple[bytes, int | None, int]:
        try:
            with open(self.log, "rb") as f:
                inode = os.fstat(f.fileno()).st_ino
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return b"", None, 0
        end = data.rfind(b"\n") + 1
        return data[:end], inode, offset + end

    @staticmethod
    def _parse(data: bytes) -> list[tuple[Stream, str]]:
        lines: list[tuple[Stream, str]] = []
        for raw in data.splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                doc = json.loads(raw)
                lines.append(("stderr" if doc["s"] == "stderr" else "stdout", str(doc["l"])))
        return lines


def _read_from(path: Path, offset: int) -> tuple[bytes, int]:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return b"", offset
    end = data.rfind(b"\n") + 1
    return data[:end], offset + end
