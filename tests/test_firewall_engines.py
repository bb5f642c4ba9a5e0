"""What docker's and podman's own defaults publish, checked as the containerd plugin's firewall is.

The same probes as ``plugins/engine_containerd/tests/test_firewall.py``: a workload
serving on 8080 (published) and 8081 (not), reached from a namespace routed to the
host (another host on the LAN), and the host's 127.0.0.1 probed from a namespace on
the engine's bridge. docs/engines.md records the results:

* docker: the published port answers through the host and at the workload's
  address; the unpublished one does not (its ``DOCKER`` chain accepts published
  ports only, and dockerd sets the ``FORWARD`` policy to DROP); ``route_localnet``
  stays off (127.0.0.1 publishing goes through docker-proxy), so loopback is safe.
* podman (netavark 1.4): its ``FORWARD`` rules accept only replies and traffic
  from its subnet, so new connections from other hosts, published or not, meet the
  host's ``FORWARD`` policy: dropped where dockerd runs (this host), all accepted
  where the policy is ACCEPT. netavark turns ``route_localnet`` on for its bridge
  and adds no guard: a service on the host's 127.0.0.1 is reachable from the bridge
  (CVE-2020-8558's pattern) until the podman plugin's start adds fogwire's guard
  (:data:`fogwire.firewall.LOCALNET_GUARD`).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fogwire.engine import Engine, PortMapping, RegistryAuth, WorkloadSpec
from fogwire.firewall import LOCALNET_GUARD
from harness import agents, images
from harness.netns import TWO_SERVERS, bridge_namespace, connects, free_port, loopback_service, outside_namespace, sh

ENGINES = [k for k in agents.installed_engines() if k in ("docker", "podman")]


def forward_policy() -> str:
    return subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True, check=True).stdout.split()[2]


@pytest.mark.parametrize("kind", ENGINES)
async def test_what_the_engines_own_defaults_publish(
    kind: str, tmp_path: Path, harness_images: images.TestImages
) -> None:
    async with agents.harness_engine(kind, tmp_path, f"fwe{secrets.token_hex(3)}") as engine:
        await _probe(kind, engine, harness_images)


async def _probe(kind: str, engine: Engine, harness_images: images.TestImages) -> None:
    name = f"fwe-{engine.context.agent_id}"
    port = free_port()
    try:
        auth = RegistryAuth(harness_images.registry, harness_images.username, harness_images.password, insecure=True)
        await engine.pull(harness_images.ref_v1, auth)
        await engine.create(
            WorkloadSpec(name, harness_images.ref_v1, command=TWO_SERVERS, ports=(PortMapping(8080, port),))
        )
        await engine.start_workload(name)
        address = (await engine.workload_addresses())[name]
        gateway = await engine.host_address()
        assert gateway
        route = sh("ip", "-o", "route", "get", address).stdout
        bridge = route.split(" dev ")[1].split()[0]
        prefix = sh("ip", "-o", "-4", "addr", "show", "dev", bridge).stdout.split(" inet ")[1].split()[0].split("/")[1]
        suffix = secrets.token_hex(2)
        policy_accepts = forward_policy() == "ACCEPT"
        await _serving(address, 8080)
        with outside_namespace(suffix) as (outside, host_ip):
            via_host = connects(outside, host_ip, port)
            direct = connects(outside, address, 8080)
            unpublished = connects(outside, address, 8081)
        if kind == "docker":
            assert (via_host, direct, unpublished) == (True, True, False)
            assert Path(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet").read_text().strip() == "0"
        else:
            assert (via_host, direct, unpublished) == (policy_accepts,) * 3
        host_on_bridge = address.rsplit(".", 1)[0] + ".250/" + prefix
        with loopback_service() as loopback, bridge_namespace(suffix, bridge, host_on_bridge, gateway) as on_bridge:
            with without_fogwires_loopback_guard():
                unguarded = connects(on_bridge, "127.0.0.1", loopback)
            # docker leaves route_localnet off; podman's netavark turns it on with no guard of its own
            assert unguarded == (kind == "podman")
            assert not connects(on_bridge, "127.0.0.1", loopback), "with the plugin's guard, loopback stays private"
        if kind == "podman":
            assert sh("iptables", "-C", "INPUT", *LOCALNET_GUARD, check=False).returncode == 0, "podman's start adds it"
    finally:
        await engine.remove(name)


async def _serving(address: str, port: int) -> None:
    """Wait until the workload answers from the host itself (which no forwarding rule concerns)."""
    for _ in range(100):
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), 1)
        except (OSError, TimeoutError):
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise AssertionError(f"{address}:{port} never answered from the host")


@contextlib.contextmanager
def without_fogwires_loopback_guard() -> Iterator[None]:
    """The engine's own rules alone: fogwire's INPUT guard (left while any bridge has route_localnet) lifted."""
    removed = 0
    while sh("iptables", "-D", "INPUT", *LOCALNET_GUARD, check=False).returncode == 0:
        removed += 1
    try:
        yield
    finally:
        for _ in range(removed):
            sh("iptables", "-I", "INPUT", "1", *LOCALNET_GUARD)
