"""Helpers of the skrouter sink tests: free ports, the base router file, a running in-process peer."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import attrs

sys.path.insert(0, str(Path(__file__).parent))

from mgmt_peer import ManagementState, PeerThread


def free_port() -> int:
    """A TCP port nobody listens on right now (loopback)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@attrs.define
class Peer:
    """A running peer: its state, its management port, its thread."""

    state: ManagementState
    port: int
    thread: PeerThread

    @property
    def url(self) -> str:
        return f"amqp://127.0.0.1:{self.port}"

    def restart(self, sections: list[Any] | None = None) -> None:
        """Stop and start a fresh peer on the same port (a router restart: live changes lost)."""
        self.thread.stop()
        self.state = ManagementState()
        self.state.configure(sections if sections is not None else base_sections(self.port))
        self.thread = PeerThread(self.state).start()


def base_sections(port: int) -> list[Any]:
    """The file a fresh peer starts from: the router and the management listener."""
    return [
        ["router", {"id": "r1", "mode": "edge"}],
        ["listener", {"name": "amqp", "host": "127.0.0.1", "port": port, "role": "normal"}],
    ]
