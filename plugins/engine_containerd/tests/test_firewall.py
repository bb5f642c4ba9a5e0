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

import secrets
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from fogwire_engine_containerd.engine import ContainerdEngine

from fogwire.engine import PortMapping, WorkloadSpec
from fogwire.firewall import ensure_loopback_guard, remove_loopback_guard
from fogwire.testing import ContractRegistry
from harness.netns import TWO_SERVERS, bridge_namespace, connects, free_port, loopback_service, outside_namespace, sh


def rules() -> str:
    return subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout


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
        remove_loopback_guard()
        try:
            assert connects(on_bridge, "127.0.0.1", port), "the probe can't reach loopback even unguarded"
        finally:
            ensure_loopback_guard()

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
