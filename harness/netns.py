"""Network namespaces that play other hosts, for the firewall tests of every engine.

``outside_namespace`` is a host on the LAN routed to this host; ``bridge_namespace``
is a host on a workload bridge's subnet whose 127.0.0.1 is routed to this host (the
CVE-2020-8558 probe); ``loopback_service`` is a service bound to the host's
127.0.0.1 only. ``connects`` probes a TCP connect from a namespace.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
from collections.abc import Iterator

TWO_SERVERS = ("sh", "-c", "httpd -p 8081 -h /; exec httpd -f -p 8080 -h /")
"""A busybox command serving HTTP on 8080 (to publish) and 8081 (left unpublished)."""


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def connects(netns: str, host: str, port: int) -> bool:
    """Whether a TCP connect from ``netns`` to ``host:port`` succeeds within 2 s."""
    probe = (
        "import socket,sys\n"
        "s=socket.socket(); s.settimeout(2)\n"
        f"sys.exit(0 if s.connect_ex(({host!r},{port}))==0 else 1)\n"
    )
    return sh("ip", "netns", "exec", netns, "python3", "-c", probe, check=False).returncode == 0


@contextlib.contextmanager
def outside_namespace(suffix: str) -> Iterator[tuple[str, str]]:
    """A namespace routed to the host over a veth pair: ``(netns, the host's address on it)``."""
    name, host_if, ns_if = f"fwfo{suffix}", f"fwh{suffix}", f"fwn{suffix}"
    octet = int(suffix, 16) % 250 + 1
    host_ip, ns_ip = f"10.251.{octet}.1", f"10.251.{octet}.2"
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", name)
        sh("ip", "addr", "add", f"{host_ip}/30", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "-n", name, "addr", "add", f"{ns_ip}/30", "dev", ns_if)
        sh("ip", "-n", name, "link", "set", ns_if, "up")
        sh("ip", "-n", name, "link", "set", "lo", "up")
        sh("ip", "-n", name, "route", "add", "default", "via", host_ip)
        yield name, host_ip
    finally:
        sh("ip", "link", "del", host_if, check=False)
        sh("ip", "netns", "del", name, check=False)


@contextlib.contextmanager
def bridge_namespace(suffix: str, bridge: str, address: str, gateway: str) -> Iterator[str]:
    """A namespace on ``bridge`` (a host of its subnet) whose 127.0.0.1 is routed to the host, not its own."""
    name, host_if, ns_if = f"fwfb{suffix}", f"fwb{suffix}", f"fwc{suffix}"
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", name)
        sh("ip", "link", "set", host_if, "master", bridge)
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "-n", name, "addr", "add", address, "dev", ns_if)
        sh("ip", "-n", name, "link", "set", ns_if, "up")
        sh("ip", "netns", "exec", name, "sysctl", "-qw", f"net.ipv4.conf.{ns_if}.route_localnet=1")
        # lo stays down: the namespace has no 127.0.0.0/8 of its own, so 127.0.0.1 is routed to the host
        sh("ip", "-n", name, "route", "add", "127.0.0.1/32", "via", gateway, "dev", ns_if, "onlink")
        yield name
    finally:
        sh("ip", "link", "del", host_if, check=False)
        sh("ip", "netns", "del", name, check=False)


@contextlib.contextmanager
def loopback_service() -> Iterator[int]:
    """A TCP service bound to the host's 127.0.0.1 only; yields its port."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                server.accept()[0].close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        server.close()
