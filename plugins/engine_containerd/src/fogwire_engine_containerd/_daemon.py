"""The embedded containerd: a child process with everything under the agent's dirs.

Config, root (``data_dir/containerd/root``), state and socket
(``run_dir/containerd/``) belong to the agent; the daemon's output goes to
``log_dir/containerd.log``. A supervisor thread restarts it with exponential
backoff when it dies, and :meth:`EmbeddedContainerd.stop` ends it cleanly
(SIGTERM, then SIGKILL). Running workloads survive a restart: their shims keep
running and the new daemon reconnects to them.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from fogwire.errors import EngineError

log = logging.getLogger("fogwire.engine.containerd")

SOCKET_PATH_MAX = 107


class EmbeddedContainerd:
    """Starts, supervises and stops the agent's own containerd."""

    def __init__(
        self,
        binary: str,
        data_dir: Path,
        run_dir: Path,
        log_dir: Path,
        on_restart: Callable[[], None] | None = None,
    ) -> None:
        self.binary = binary
        self.root = data_dir / "containerd" / "root"
        self.base = run_dir / "containerd"
        self.state = self.base / "state"
        self.socket = self.base / "containerd.sock"
        self.config = self.base / "config.toml"
        self.log_file = log_dir / "containerd.log"
        self.on_restart = on_restart
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        """The ``unix://`` address of the daemon's gRPC socket."""
        return f"unix://{self.socket}"

    @property
    def pid(self) -> int | None:
        """PID of the running daemon, if any."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def write_config(self) -> None:
        """Write the daemon's config (no CRI; every path under the agent's dirs)."""
        if len(str(self.socket)) + len(".ttrpc") > SOCKET_PATH_MAX:
            raise EngineError(
                f"embedded containerd: socket path {self.socket} is too long for a unix socket; "
                "use a shorter agent run dir"
            )
        for d in (self.root, self.state, self.base, self.log_file.parent):
            d.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            "\n".join(
                [
                    "version = 2",
                    f'root = "{self.root}"',
                    f'state = "{self.state}"',
                    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
                    "[grpc]",
                    f'  address = "{self.socket}"',
                    "[ttrpc]",
                    f'  address = "{self.socket}.ttrpc"',
                    "[debug]",
                    '  address = ""',
                    '  level = "info"',
                    "[metrics]",
                    '  address = ""',
                    '[plugins."io.containerd.internal.v1.opt"]',
                    f'  path = "{self.root / "opt"}"',
                    "",
                ]
            )
        )

    def _spawn(self) -> None:
        import shutil  # only here: it pulls in bz2/lzma

        resolved = shutil.which(self.binary)
        if resolved is None:
            raise EngineError(
                f"embedded containerd: binary {self.binary!r} not found; install containerd "
                "or set containerEngineUrl to an external containerd"
            )
        self.socket.unlink(missing_ok=True)
        with open(self.log_file, "ab") as out:
            self.proc = subprocess.Popen(
                [resolved, "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        log.info("embedded containerd started, pid %s, socket %s", self.proc.pid, self.socket)

    def start(self) -> None:
        """Write the config, spawn the daemon and start supervising it."""
        self.write_config()
        self._stopping.clear()
        with self._lock:
            self._spawn()
        self._thread = threading.Thread(target=self._supervise, name="fogwire-containerd-supervisor", daemon=True)
        self._thread.start()

    def wait_socket(self, timeout_s: float) -> None:
        """Wait until the socket file exists (readiness is checked over gRPC by the caller)."""
        deadline = time.monotonic() + timeout_s
        while not self.socket.exists():
            proc = self.proc
            if proc is not None and proc.poll() is not None and self.restarts == 0:
                raise EngineError(
                    f"embedded containerd exited with status {proc.returncode} at start; see {self.log_file}"
                )
            if time.monotonic() > deadline:
                raise EngineError(
                    f"embedded containerd did not create {self.socket} in {timeout_s:.0f}s; see {self.log_file}"
                )
            time.sleep(0.02)

    def _supervise(self) -> None:
        backoff = 0.2
        while not self._stopping.is_set():
            proc = self.proc
            if proc is None:
                return
            started = time.monotonic()
            code = proc.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - started > 30:
                backoff = 0.2
            log.warning("embedded containerd (pid %s) exited with %s; restarting in %.1fs", proc.pid, code, backoff)
            if self._stopping.wait(backoff):
                return
            backoff = min(backoff * 2, 10.0)
            with self._lock:
                if self._stopping.is_set():
                    return
                try:
                    self._spawn()
                except EngineError as error:
                    log.error("%s", error)
                    continue
                self.restarts += 1
            if self.on_restart is not None:
                try:
                    self.on_restart()
                except Exception:  # a callback bug must not stop supervision
                    log.exception("containerd restart callback failed")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop supervising and end the daemon: SIGTERM, then SIGKILL after ``timeout_s``."""
        self._stopping.set()
        with self._lock:
            proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout_s)
        log.info("embedded containerd stopped")

    def kill(self) -> None:
        """SIGKILL the daemon (fault tests); the supervisor restarts it."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
