"""The bridge publishes only what is asked: checked from network namespaces routed to it, as other hosts would be.

A workload serves HTTP on two ports and publishes one. From a namespace routed to
the host (another host on the LAN): the published port answers through the host's
address and at the workload's own address; the unpublished one does not. From a
namespace attached to the bridge (a host on the bridge's subnet) that sends to
127.0.0.1 through the host: a service bound to the host's loopback is not reached,
although ``route_localnet`` is on for 127.0.0.1 publishing. The host-wide rules go
with the bridge's last workload and are not duplicated by an engine restart.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fogwire_engine_containerd._cni import LOCALNET_GUARD
from fogwire_engine_containerd.engine import ContainerdEngine

from fogwire.engine import PortMapping, WorkloadSpec
from fogwire.testing import ContractRegistry

TWO_SERVERS = ("sh", "-c", "httpd -p 8081 -h /; exec httpd -f -p 8080 -h /")


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


def rules() -> str:
    return sh("iptables-save").stdout


@pytest.fixture
def suffix() -> str:
    return secrets.token_hex(2)


@pytest.fixture
async def engine_on_own_bridge(harness_engine: Callable[..., Any], suffix: str) -> AsyncIterator[ContainerdEngine]:
    octet = int(suffix, 16) % 200 + 20
    options = {"cniBridge": f"fwfw{suffix}", "cniSubnet": f"10.{octet}.77.0/24"}
    try:
        async with harness_engine("fw", **options) as engine:
            yield engine
    finally:
        sh("ip", "link", "del", options["cniBridge"], check=False)


async def test_only_published_ports_are_reachable_and_host_loopback_stays_private(
    engine_on_own_bridge: ContainerdEngine, fogwire_registry: ContractRegistry, suffix: str
) -> None:
    engine = engine_on_own_bridge
    bridge = engine.network.cni.bridge
    name = f"fw-{engine.context.agent_id}"
    published = free_port()
    spec = WorkloadSpec(name, fogwire_registry.image, command=TWO_SERVERS, ports=(PortMapping(8080, published),))
    await engine.create(spec)
    await engine.start_workload(name)
    address = (await engine.workload_addresses())[name]
    gateway = await engine.host_address()
    assert gateway

    with outside_namespace(suffix) as (outside, host_ip):
        for _ in range(50):  # httpd binds a moment after the task starts
            if connects(outside, host_ip, published):
                break
        assert connects(outside, host_ip, published), "the published port answers through the host's address"
        assert connects(outside, address, 8080), "the published port answers at the workload's own address"
        assert not connects(outside, address, 8081), "an unpublished port of the same workload is not reachable"

    assert Path(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet").read_text().strip() == "1"
    assert "fogwire: loopback only from the host" in rules()
    subnet_host = address.rsplit(".", 1)[0] + ".250/24"
    with loopback_service() as port, bridge_namespace(suffix, bridge, subnet_host, gateway) as on_bridge:
        assert not connects(on_bridge, "127.0.0.1", port), "the host's loopback service was reached from the bridge"
        # the check is real: without the guard the same connect succeeds
        sh("iptables", "-D", "INPUT", *LOCALNET_GUARD)
        try:
            assert connects(on_bridge, "127.0.0.1", port), "the probe can't reach loopback even unguarded"
        finally:
            sh("iptables", "-I", "INPUT", "1", *LOCALNET_GUARD)

    await engine.remove(name)
    after = rules()
    assert engine.network.cni.forward_chain not in after, "the bridge's rules went with its last workload"
    assert f"fogwire:{engine.namespace}-{name}" not in after
    assert Path(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet").read_text().strip() == "0"


async def test_host_rules_are_not_duplicated_by_a_restart(
    engine_on_own_bridge: ContainerdEngine, fogwire_registry: ContractRegistry
) -> None:
    engine = engine_on_own_bridge
    cni = engine.network.cni
    name = f"fwd-{engine.context.agent_id}"
    await engine.create(
        WorkloadSpec(name, fogwire_registry.image, command=TWO_SERVERS, ports=(PortMapping(8080, free_port()),))
    )
    await engine.start_workload(name)
    before = rules().count(cni.forward_chain)
    type(cni)._ready.discard((cni.subnet, cni.bridge))  # a new agent process: nothing known to be set up
    cni.setup()
    assert rules().count(cni.forward_chain) == before
    await engine.remove(name)
