"""The daemon ↔ CLI channel: JSON lines over a unix socket (mode 0600) in the run dir.

A client sends one request line ``{"op": ..., ...}``; the server answers with one
line ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": ..., "problems": [...]}``.
``logs`` with ``follow`` answers with one ``{"line": ...}`` per output line until
the client closes. Only the socket's owner (root, for the system daemon) can
connect, so requests carry no credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from fogwire.errors import ConfigError, FogwireError, Problem

if TYPE_CHECKING:
    from fogwire.agent import Agent

log = logging.getLogger(__name__)

MAX_LINE = 16 * 1024 * 1024
"""The largest request line accepted (a desired state of many documents fits)."""


class DaemonUnavailableError(FogwireError):
    """No daemon answers on the control socket."""


class ControlServer:
    """Serves an :class:`~fogwire.agent.Agent` on a unix socket."""

    def __init__(self, agent: Agent, path: Path) -> None:
        self.agent = agent
        self.path = path
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen on :attr:`path` (replacing a stale socket), readable by the owner only."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.path.exists() or self.path.is_symlink():
            if _alive(self.path):
                raise FogwireError(f"another fogwire daemon is listening on {self.path}; stop it first")
            self.path.unlink()
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._handle, path=str(self.path), limit=MAX_LINE)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        """Stop listening and remove the socket file."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            if not line:
                return
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("expected a JSON object")
            except ValueError as error:
                await _send(writer, {"ok": False, "error": f"bad request: {error}"})
                return
            if request.get("op") == "logs":
                await self._logs(request, writer)
                return
            try:
                result = await self._dispatch(request)
                reply: dict[str, Any] = {"ok": True, "result": result}
            except ConfigError as error:
                reply = {"ok": False, "error": str(error), "problems": [attrs.asdict(p) for p in error.problems]}
            except FogwireError as error:
                reply = {"ok": False, "error": str(error)}
            except Exception as error:  # report, don't kill the daemon
                log.exception("control request %r failed", request.get("op"))
                reply = {"ok": False, "error": f"{type(error).__name__}: {error}"}
            await _send(writer, reply)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _dispatch(self, request: dict[str, Any]) -> Any:
        op = request.get("op")
        agent = self.agent
        if op == "ping":
            return {"pid": os.getpid()}
        if op == "status":
            return await agent.status()
        if op == "apply":
            return await agent.apply(list(request.get("documents") or []), str(request.get("origin") or "apply"))
        if op == "plan":
            documents = request.get("documents")
            plan = await agent.plan(
                list(documents) if documents is not None else None, str(request.get("origin") or "plan")
            )
            return plan.as_dict()
        if op == "delete":
            return await agent.delete(str(request.get("name")))
        if op == "prune":
            return {"removed": await agent.prune()}
        raise FogwireError(f"unknown operation {op!r}")

    async def _logs(self, request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        tail = request.get("tail")
        lines = self.agent.logs(
            str(request.get("name")), tail=int(tail) if tail is not None else None, follow=bool(request.get("follow"))
        )
        try:
            async for line in lines:
                await _send(writer, {"stream": line.stream, "line": line.text})
            await _send(writer, {"ok": True, "end": True})
        except FogwireError as error:
            await _send(writer, {"ok": False, "error": str(error)})
        finally:
            # A client gone mid-follow must close the engine's stream (and its thread) now.
            aclose = getattr(lines, "aclose", None)
            if aclose is not None:
                await aclose()


async def _send(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    writer.write(json.dumps(message, default=str).encode() + b"\n")
    await writer.drain()


def _alive(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


class ControlClient:
    """The CLI side: one request per connection."""

    def __init__(self, path: Path, timeout: float = 600.0) -> None:
        self.path = path
        self.timeout = timeout

    def available(self) -> bool:
        """True when a daemon accepts connections on the socket."""
        return self.path.exists() and _alive(self.path)

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
        except OSError as error:
            sock.close()
            raise DaemonUnavailableError(
                f"no fogwire daemon on {self.path} ({error.strerror or error}); start it with 'fogwire daemon'"
            ) from error
        return sock

    def stream(self, op: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Send one request and yield every reply line."""
        with self._connect() as sock:
            sock.sendall(json.dumps({"op": op, **params}).encode() + b"\n")
            with sock.makefile("rb") as replies:
                for line in replies:
                    yield json.loads(line)

    def request(self, op: str, **params: Any) -> Any:
        """Send one request and return its result, raising the daemon's error."""
        for reply in self.stream(op, **params):
            if reply.get("ok"):
                return reply.get("result")
            problems = reply.get("problems")
            if problems:
                raise ConfigError([Problem(**p) for p in problems])
            raise FogwireError(str(reply.get("error")))
        raise FogwireError(f"the daemon on {self.path} closed the connection without answering")
