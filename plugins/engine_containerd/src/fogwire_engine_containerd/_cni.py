"""CNI for workloads with their own network namespace: bridge + portmap.

The plugin calls the CNI plugin binaries itself (Debian's
``containernetworking-plugins`` in ``/usr/lib/cni``), chaining ``bridge`` (with
``host-local`` IPAM) and ``portmap``. ``portmap``'s SNAT mode makes published
ports reachable on ``127.0.0.1`` too.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fogwire.engine import PortMapping
from fogwire.errors import EngineError, PortInUseError

CNI_VERSION = "1.0.0"


class Cni:
    """One CNI network (a bridge and a subnet) shared by the agent's workloads."""

    def __init__(self, bin_dir: Path, bridge: str, subnet: str, network: str = "fogwire") -> None:
        self.bin_dir = bin_dir
        self.bridge = bridge
        self.subnet = subnet
        self.network = network

    def _bridge_conf(self) -> dict[str, Any]:
        return {
            "cniVersion": CNI_VERSION,
            "name": self.network,
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": True,
            # one MASQUERADE rule for the subnet (ensure_masquerade) instead of a chain per
            # workload: the bridge plugin can only remove its chain while the netns exists
            "ipMasq": False,
            "hairpinMode": True,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": self.subnet}]], "routes": [{"dst": "0.0.0.0/0"}]},
        }

    def _portmap_conf(self, ports: Sequence[PortMapping], prev: dict[str, Any] | None) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "cniVersion": CNI_VERSION,
            "name": self.network,
            "type": "portmap",
            "capabilities": {"portMappings": True},
            "snat": True,
            "runtimeConfig": {
                "portMappings": [
                    {
                        "hostPort": p.host_port,
                        "containerPort": p.container_port,
                        "protocol": p.protocol,
                        **({"hostIP": p.host_ip} if p.host_ip else {}),
                    }
                    for p in ports
                ]
            },
        }
        if prev is not None:
            conf["prevResult"] = prev
        return conf

    def _run(self, command: str, conf: dict[str, Any], container_id: str, netns: str) -> dict[str, Any]:
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": netns,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(self.bin_dir),
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        }
        binary = self.bin_dir / conf["type"]
        try:
            proc = subprocess.run(
                [str(binary)], input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=60, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise EngineError(
                f"CNI plugin {binary} could not run ({error}); install containernetworking-plugins "
                "or set the engine option cni_bin_dir"
            ) from error
        if proc.returncode != 0:
            try:
                msg = json.loads(proc.stdout).get("msg", "")
                detail = json.loads(proc.stdout).get("details", "")
            except ValueError:
                msg, detail = proc.stdout.decode(errors="replace"), ""
            raise EngineError(
                f"CNI {conf['type']} {command} for {container_id} failed: {msg} {detail} "
                f"{proc.stderr.decode(errors='replace')[:300]}".strip()
            )
        return json.loads(proc.stdout) if proc.stdout.strip() else {}

    _masquerading: set[tuple[str, str]] = set()

    def ensure_masquerade(self) -> None:
        """Masquerade traffic leaving the subnet (once per host and subnet; idempotent)."""
        key = (self.subnet, self.bridge)
        if key in Cni._masquerading:
            return
        rule = [
            "POSTROUTING", "-s", self.subnet, "!", "-o", self.bridge,
            "-m", "comment", "--comment", f"fogwire: masquerade {self.subnet}", "-j", "MASQUERADE",
        ]  # fmt: skip
        try:
            check = subprocess.run(["iptables", "-w", "-t", "nat", "-C", *rule], capture_output=True, timeout=30)
            if check.returncode != 0:
                subprocess.run(
                    ["iptables", "-w", "-t", "nat", "-A", *rule], capture_output=True, timeout=30, check=True
                )
        except (OSError, subprocess.SubprocessError) as error:
            raise EngineError(f"cannot set up masquerading for {self.subnet} with iptables: {error}") from error
        Cni._masquerading.add(key)

    def add(self, container_id: str, netns: str, ports: Sequence[PortMapping]) -> dict[str, Any]:
        """Attach ``netns`` to the bridge and publish ``ports``; return the CNI result."""
        self.ensure_masquerade()
        result = self._run("ADD", self._bridge_conf(), container_id, netns)
        if ports:
            try:
                result = self._run("ADD", self._portmap_conf(ports, result), container_id, netns)
            except EngineError:
                self.delete(container_id, netns, ports, result)
                raise
        return result

    def delete(
        self, container_id: str, netns: str, ports: Sequence[PortMapping], prev: dict[str, Any] | None = None
    ) -> None:
        """Undo :meth:`add` (best effort for a namespace that is already gone)."""
        if netns and not Path(netns).exists():
            netns = ""
        errors: list[str] = []
        if ports:
            try:
                self._run("DEL", self._portmap_conf(ports, prev), container_id, netns)
            except EngineError as error:
                errors.append(str(error))
        try:
            bridge = self._bridge_conf()
            if prev is not None:
                bridge["prevResult"] = prev
            self._run("DEL", bridge, container_id, netns)
        except EngineError as error:
            errors.append(str(error))
        if errors:
            raise EngineError("; ".join(errors))

    @staticmethod
    def address(result: dict[str, Any]) -> str | None:
        """The workload's IPv4 address from a CNI result."""
        for ip in result.get("ips", []):
            addr = str(ip.get("address", "")).split("/")[0]
            if addr and ":" not in addr:
                return addr
        return None


def check_ports_free(name: str, ports: Sequence[PortMapping], taken: set[tuple[str, int, str]]) -> None:
    """Raise :class:`PortInUseError` if a host port is bound on the host or published by another workload."""
    for p in ports:
        for other_ip, other_port, other_proto in taken:
            if (
                other_port == p.host_port
                and other_proto == p.protocol
                and (not other_ip or not p.host_ip or other_ip == p.host_ip)
            ):
                raise PortInUseError(
                    f"workload {name!r}: host port {p.host_port}/{p.protocol} is already published by another workload"
                )
        kind = socket.SOCK_STREAM if p.protocol == "tcp" else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((p.host_ip or "0.0.0.0", p.host_port))
            except OSError as error:
                raise PortInUseError(
                    f"workload {name!r}: host port {p.host_port}/{p.protocol} is in use on the host ({error.strerror}); "
                    "choose another port or stop what holds it"
                ) from error
