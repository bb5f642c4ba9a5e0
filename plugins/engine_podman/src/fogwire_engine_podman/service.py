"""A supervised ``podman system service --time=0``, for hosts where none runs.

The engine starts it when no socket is configured and no default socket
answers; it is restarted if it dies and stopped when the engine closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import logging
import os
import shutil
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from fogwire.errors import EngineError

log = logging.getLogger(__name__)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def socket_answers(path: str | os.PathLike[str], timeout: float = 2.0) -> bool:
    """True if a podman (or docker) API answers ``GET /_ping`` on the unix socket ``path``."""
    connection = _UnixConnection(os.fspath(path), timeout)
    try:
        connection.request("GET", "/_ping")
        response = connection.getresponse()
        return response.status == 200 and response.read().strip() == b"OK"
    except OSError:
        return False
    finally:
        connection.close()


def default_sockets() -> list[Path]:
    """Where a system or user podman service usually listens."""
    candidates = [Path("/run/podman/podman.sock")]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        candidates.append(Path(runtime) / "podman" / "podman.sock")
    return candidates


class PodmanService:
    """One ``podman system service`` process on ``socket_path``, restarted if it dies."""

    def __init__(self, socket_path: Path, log_path: Path, global_args: Sequence[str] = ()) -> None:
        self.socket_path = socket_path
        self.log_path = log_path
        self.global_args = tuple(global_args)
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def url(self) -> str:
        """``unix://…`` of the service's socket."""
        return f"unix://{self.socket_path}"

    async def _spawn(self) -> None:
        podman = shutil.which("podman")
        if podman is None:
            raise EngineError("no podman socket answers and podman is not installed: install podman or set the URL")
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        argv = [podman, *self.global_args, "system", "service", "--time=0", self.url]
        with self.log_path.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                # conmon writes an `oom` file into the service's working directory after an
                # OOM kill: keep it in the service's own directory, not wherever the agent runs.
                cwd=self.socket_path.parent,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.returncode is not None:
                break
            if await asyncio.to_thread(socket_answers, self.socket_path, 1.0):
                log.info("started podman service (pid %s) on %s", self.process.pid, self.url)
                return
            await asyncio.sleep(0.1)
        await self._terminate()
        raise EngineError(f"podman system service did not answer on {self.url} within 30 s; see {self.log_path}")

    async def start(self) -> None:
        """Start the service and its supervisor."""
        await self._spawn()
        self._supervisor = asyncio.create_task(self._supervise(), name="fogwire-podman-service")

    async def _supervise(self) -> None:
        delay = 0.5
        while not self._closing:
            process = self.process
            assert process is not None
            code = await process.wait()
            if self._closing:  # set by close() while we waited (mypy can't see that)
                return  # type: ignore[unreachable]
            log.warning("podman service (pid %s) exited with %s; restarting it in %.1f s", process.pid, code, delay)
            await asyncio.sleep(delay)
            try:
                await self._spawn()
                self.restarts += 1
                delay = 0.5
            except EngineError as error:
                log.error("restarting the podman service failed: %s", error)
                delay = min(delay * 2, 30.0)

    async def _terminate(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    async def stop(self) -> None:
        """Stop the supervisor and the service; remove the socket."""
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        await self._terminate()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
