"""A real HTTP proxy for tests: Debian's ``tinyproxy`` on a free loopback port, with Basic auth and a log.

Each :func:`tinyproxy` call starts its own instance from a config it writes into
the directory it is given, and stops it (the process it started, by pid) on exit,
so tests never share a proxy's log and nothing is left running. ``tinyproxy``
handles ``CONNECT`` (HTTPS) and absolute-URI requests (plain HTTP) and answers
``407`` to a request without the right ``Proxy-Authorization``.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.services import HarnessError

USER = "fwproxy"
PASSWORD = "fogwire-proxy-secret"


@dataclass(frozen=True)
class TinyProxy:
    """A running tinyproxy: where it listens, its credentials and its log."""

    host: str
    port: int
    username: str
    password: str
    log: Path

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``http://user:password@host:port``, as ``HTTPS_PROXY`` holds it."""
        return f"http://{self.username}:{self.password}@{self.address}"

    def requests(self) -> list[str]:
        """The request lines the proxy received so far (``CONNECT host:port HTTP/1.1``, ``GET http://… HTTP/1.1``)."""
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [line.split("): ", 1)[1] for line in text.splitlines() if "Request (file descriptor" in line]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def tinyproxy(directory: Path, username: str = USER, password: str = PASSWORD) -> Iterator[TinyProxy]:
    """Run a tinyproxy on 127.0.0.1 demanding ``username``/``password``; its config and log live in ``directory``."""
    binary = shutil.which("tinyproxy")
    if binary is None:
        raise HarnessError("tinyproxy is not installed (scripts/debian-packages.txt; run 'make setup')")
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / "tinyproxy.log"
    for _attempt in range(5):
        port = _free_port()
        config = directory / "tinyproxy.conf"
        config.write_text(
            f"Port {port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 50\nLogLevel Connect\n"
            f'LogFile "{log}"\nBasicAuth {username} {password}\nDisableViaHeader Yes\n'
        )
        output = (directory / "tinyproxy.out").open("wb")
        process = subprocess.Popen([binary, "-d", "-c", str(config)], stdout=output, stderr=subprocess.STDOUT)
        output.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            time.sleep(0.05)
        if process.poll() is None:
            break
    else:
        raise HarnessError(f"tinyproxy did not start: {(directory / 'tinyproxy.out').read_text(errors='replace')}")
    try:
        yield TinyProxy("127.0.0.1", port, username, password, log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
