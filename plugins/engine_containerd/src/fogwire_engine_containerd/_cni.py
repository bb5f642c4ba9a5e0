"""Networking for workloads with their own network namespace: CNI bridge, own host-port rules.

The plugin calls the CNI ``bridge`` plugin binary itself (Debian's
``containernetworking-plugins`` in ``/usr/lib/cni``) and publishes ports with its
own DNAT rules (see :class:`Cni`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from fogwire.engine import PortMapping
from fogwire.errors import EngineError, PortInUseError
from fogwire.firewall import ensure_loopback_guard, remove_loopback_guard

CNI_VERSION = "1.0.0"


log = logging.getLogger(__name__)

HOSTPORT_CHAIN = "FOGWIRE-HOSTPORTS"


class Cni:
    """One CNI network (a bridge and a subnet) shared by the agent's workloads, plus host ports.

    The ``bridge`` CNI plugin (with ``host-local`` IPAM) attaches a workload. Ports
    are published by the plugin itself with one ``iptables-restore`` call per
    workload (DNAT rules in a chain of its own) instead of CNI ``portmap``, which
    runs a dozen ``iptables`` commands per workload and serialises concurrent
    starts on the xtables lock.

    The host-wide rules, made with the bridge's first workload and removed with its
    last (:meth:`setup`, :meth:`teardown`; idempotent, so an agent restart adds no
    duplicates):

    * nat: the DNAT chain's jumps from PREROUTING/OUTPUT, masquerading of the subnet
      and of 127.0.0.0/8 towards the bridge (so ports published on 127.0.0.1 answer);
    * filter: traffic into the bridge goes through a chain of the bridge's own that
      accepts replies, traffic between the bridge's workloads and each published
      port (a per-workload rule, added and removed with its DNAT rules), and drops
      everything else, so a workload's unpublished ports can't be reached from
      outside or from hosts routed to the subnet; traffic out of the bridge (what
      workloads start themselves) is accepted;
    * ``route_localnet`` on the bridge, which 127.0.0.1 publishing needs, only after
      an INPUT rule drops traffic to 127.0.0.0/8 that did not come from the host
      itself (the guard against CVE-2020-8558: host services on loopback reached
      from the bridge).
    """

    _ready: set[tuple[str, str]] = set()
    _host_rules = threading.Lock()
    """Serialises setting up and tearing down the host-wide rules (a workload may come as the last one goes)."""

    def __init__(self, bin_dir: Path, bridge: str, subnet: str, network: str = "fogwire") -> None:
        self.bin_dir = bin_dir
        self.bridge = bridge
        self.subnet = subnet
        self.network = network
        self._rules = _GroupCommit(self._restore)

    def _bridge_conf(self) -> dict[str, Any]:
        return {
            "cniVersion": CNI_VERSION,
            "name": self.network,
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": True,
            # masquerading is one rule for the subnet (see setup): the bridge plugin's
            # per-workload chain can only be removed while the netns still exists
            "ipMasq": False,
            "hairpinMode": True,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": self.subnet}]], "routes": [{"dst": "0.0.0.0/0"}]},
        }

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
                doc = json.loads(proc.stdout)
                msg, detail = doc.get("msg", ""), doc.get("details", "")
            except ValueError:
                msg, detail = proc.stdout.decode(errors="replace"), ""
            raise EngineError(
                f"CNI {conf['type']} {command} for {container_id} failed: {msg} {detail} "
                f"{proc.stderr.decode(errors='replace')[:300]}".strip()
            )
        return json.loads(proc.stdout) if proc.stdout.strip() else {}

    @staticmethod
    def _iptables(*args: str, check: bool = True) -> bool:
        try:
            proc = subprocess.run(["iptables", "-w", *args], capture_output=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise EngineError(f"iptables could not run ({error}); install iptables") from error
        if check and proc.returncode != 0:
            raise EngineError(f"iptables {' '.join(args)} failed: {proc.stderr.decode(errors='replace')[:300]}")
        return proc.returncode == 0

    def _ensure_rule(self, table: str, chain: str, *rule: str) -> None:
        if not self._iptables("-t", table, "-C", chain, *rule, check=False):
            self._iptables("-t", table, "-A", chain, *rule)

    @property
    def forward_chain(self) -> str:
        """The filter chain traffic into the bridge goes through (iptables allows 28 characters)."""
        return f"FOGWIRE-FWD-{self.bridge}"[:28]

    def _host_rule_specs(self) -> list[tuple[str, str, list[str]]]:
        """``(table, chain, rule)`` of every host-wide rule but the forward chain's own, in the order they are made."""
        tag = ["-m", "comment", "--comment", f"fogwire {self.network}"]
        return [
            *(
                ("nat", chain, ["-m", "addrtype", "--dst-type", "LOCAL", *tag, "-j", HOSTPORT_CHAIN])
                for chain in ("PREROUTING", "OUTPUT")
            ),
            ("nat", "POSTROUTING", ["-s", self.subnet, "!", "-o", self.bridge, *tag, "-j", "MASQUERADE"]),
            ("nat", "POSTROUTING", ["-s", "127.0.0.0/8", "-o", self.bridge, *tag, "-j", "MASQUERADE"]),
            ("filter", "FORWARD", ["-o", self.bridge, *tag, "-j", self.forward_chain]),
            ("filter", "FORWARD", ["-i", self.bridge, "!", "-o", self.bridge, *tag, "-j", "ACCEPT"]),
        ]

    def setup(self) -> None:
        """The host-wide rules (idempotent; done once per process, after the bridge exists)."""
        key = (self.subnet, self.bridge)
        with Cni._host_rules:
            if key in Cni._ready:
                return
            # what agents before 0.2 wrote: every port of every workload open to forwarded traffic
            self._iptables(
                "-t", "filter", "-D", "FORWARD", "-o", self.bridge, *self._legacy_tag, "-j", "ACCEPT", check=False
            )
            self._iptables(
                "-t", "filter", "-D", "FORWARD", "-i", self.bridge, *self._legacy_tag, "-j", "ACCEPT", check=False
            )
            self._iptables("-t", "nat", "-N", HOSTPORT_CHAIN, check=False)
            chain = self.forward_chain
            self._iptables("-t", "filter", "-N", chain, check=False)
            self._ensure_rule("filter", chain, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")
            self._ensure_rule("filter", chain, "-i", self.bridge, "-j", "ACCEPT")
            self._ensure_rule("filter", chain, "-j", "DROP")
            for table, parent, rule in self._host_rule_specs():
                self._ensure_rule(table, parent, *rule)
            ensure_loopback_guard()  # before route_localnet, first in INPUT
            try:
                Path(f"/proc/sys/net/ipv4/conf/{self.bridge}/route_localnet").write_text("1")
            except OSError as error:
                raise EngineError(f"cannot enable route_localnet on {self.bridge}: {error}") from error
            Cni._ready.add(key)

    @property
    def _legacy_tag(self) -> list[str]:
        return ["-m", "comment", "--comment", f"fogwire {self.network}"]

    def teardown_if_unused(self) -> bool:
        """Remove the host-wide rules when no interface is left on the bridge; whether they were removed.

        ``route_localnet`` goes first, then the rules; the loopback guard is removed
        last, and only when no other fogwire bridge still uses it.
        """
        with Cni._host_rules:
            ports = Path(f"/sys/class/net/{self.bridge}/brif")
            if ports.is_dir() and any(ports.iterdir()):
                return False
            with contextlib.suppress(OSError):
                Path(f"/proc/sys/net/ipv4/conf/{self.bridge}/route_localnet").write_text("0")
            for table, parent, rule in self._host_rule_specs():
                while self._iptables("-t", table, "-D", parent, *rule, check=False):
                    pass
            if not self._localnet_used_elsewhere():
                remove_loopback_guard()
            self._iptables("-t", "filter", "-F", self.forward_chain, check=False)
            self._iptables("-t", "filter", "-X", self.forward_chain, check=False)
            Cni._ready.discard((self.subnet, self.bridge))
            return True

    def _localnet_used_elsewhere(self) -> bool:
        """Whether another bridge still has ``route_localnet`` on (its agent's loopback guard stays)."""
        for conf in Path("/proc/sys/net/ipv4/conf").iterdir():
            if conf.name in (self.bridge, "all", "default", "lo"):
                continue
            with contextlib.suppress(OSError):
                if (conf / "route_localnet").read_text().strip() == "1":
                    return True
        return False

    def _port_rules(self, op: str, container_id: str, address: str, ports: Sequence[PortMapping]) -> list[str]:
        """The DNAT rule of each published port, and the filter rule letting it through (``-A``/``-D`` lines)."""
        lines = []
        for p in ports:
            dest = ["-d", f"{p.host_ip}/32"] if p.host_ip and p.host_ip != "0.0.0.0" else []
            rule = [
                op, HOSTPORT_CHAIN, "-p", p.protocol, *dest, "--dport", str(p.host_port),
                "-m", "comment", "--comment", f"fogwire:{container_id}",
                "-j", "DNAT", "--to-destination", f"{address}:{p.container_port}",
            ]  # fmt: skip
            lines.append(" ".join(rule))
            accept = [
                "-I" if op == "-A" else op, self.forward_chain, *(["1"] if op == "-A" else []),
                "-d", f"{address}/32", "-p", p.protocol, "--dport", str(p.container_port),
                "-m", "comment", "--comment", f"fogwire:{container_id}", "-j", "ACCEPT",
            ]  # fmt: skip
            lines.append(" ".join(accept))
        return lines

    def _restore(self, rules: Sequence[str]) -> None:
        nat = [r for r in rules if r.split()[1] == HOSTPORT_CHAIN]
        filter_ = [r for r in rules if r.split()[1] != HOSTPORT_CHAIN]
        script = "\n".join(["*nat", *nat, "COMMIT", *(["*filter", *filter_, "COMMIT"] if filter_ else []), ""])
        try:
            proc = subprocess.run(
                ["iptables-restore", "-w", "--noflush"], input=script.encode(), capture_output=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise EngineError(f"iptables-restore could not run ({error}); install iptables") from error
        if proc.returncode != 0:
            raise EngineError(f"publishing ports failed: {proc.stderr.decode(errors='replace')[:300]}")

    def add(self, container_id: str, netns: str, ports: Sequence[PortMapping]) -> dict[str, Any]:
        """Attach ``netns`` to the bridge and publish ``ports``; return the CNI result."""
        result = self._run("ADD", self._bridge_conf(), container_id, netns)
        try:
            self.setup()
            address = self.address(result)
            if ports:
                if address is None:
                    raise EngineError(f"CNI gave {container_id} no IPv4 address to publish ports to")
                taken_over = self._shadowing_rules(container_id, ports)
                self._rules.commit([*taken_over, *self._port_rules("-A", container_id, address, ports)])
        except EngineError:
            self.delete(container_id, netns, (), result)
            raise
        return result

    def delete(
        self, container_id: str, netns: str, ports: Sequence[PortMapping], prev: dict[str, Any] | None = None
    ) -> None:
        """Undo :meth:`add` (the namespace may already be gone)."""
        if netns and not Path(netns).exists():
            netns = ""
        errors: list[str] = []
        address = self.address(prev) if prev else None
        if ports and address:
            try:
                self._rules.commit(self._port_rules("-D", container_id, address, ports))
            except EngineError as error:
                errors.append(str(error))
        try:
            bridge = self._bridge_conf()
            if prev is not None:
                bridge["prevResult"] = prev
            self._run("DEL", bridge, container_id, netns)
        except EngineError as error:
            errors.append(str(error))
        else:
            self.teardown_if_unused()
        if errors:
            raise EngineError("; ".join(errors))

    def _hostport_rules(self, table: str = "nat", chain: str = HOSTPORT_CHAIN) -> list[str]:
        try:
            listing = subprocess.run(
                ["iptables", "-w", "-t", table, "-S", chain], capture_output=True, timeout=60, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return []
        return [line for line in listing.stdout.decode(errors="replace").splitlines() if line.startswith("-A ")]

    def _shadowing_rules(self, container_id: str, ports: Sequence[PortMapping]) -> list[str]:
        """Deletions of other workloads' rules for the same host ports (``-D`` lines).

        The engine never gives one host port to two of its workloads, so such a rule
        is what a workload of a containerd that died (or whose state was lost) left:
        appended before ours, it would send the port's traffic to a dead address.
        """
        claimed = {(p.protocol, str(p.host_port)) for p in ports}
        stale = []
        for line in self._hostport_rules():
            words = line.split()
            if f"fogwire:{container_id}" in words or "--dport" not in words or "-p" not in words:
                continue
            key = (words[words.index("-p") + 1], words[words.index("--dport") + 1])
            if key in claimed:
                log.warning(
                    "host port %s/%s was still claimed by a gone workload (%s); taking it over", key[1], key[0], line
                )
                stale.append("-D" + line[2:])
        return stale

    def release_leftovers(self, container_id: str) -> None:
        """Free what an ADD whose caller died left behind: the address of ``container_id`` and its DNAT rules.

        The CNI result of that ADD was never recorded, so :meth:`delete` can't be
        given it: the address is released by a DEL without one, the rules are found
        by their ``fogwire:<id>`` comment.
        """
        try:
            self._run("DEL", self._bridge_conf(), container_id, "")
        except EngineError as error:
            log.debug("releasing the leftover address of %s: %s", container_id, error)
        mark = f"fogwire:{container_id}"
        listed = [*self._hostport_rules(), *self._hostport_rules("filter", self.forward_chain)]
        stale = ["-D" + line[2:] for line in listed if mark in line.split()]
        if stale:
            self._rules.commit(stale)

    @staticmethod
    def address(result: dict[str, Any]) -> str | None:
        """The workload's IPv4 address from a CNI result."""
        for ip in result.get("ips", []):
            addr = str(ip.get("address", "")).split("/")[0]
            if addr and ":" not in addr:
                return addr
        return None


class _GroupCommit:
    """Rule changes requested by concurrent starts and removals, applied by one ``iptables-restore``.

    The first caller commits what is pending; callers arriving meanwhile queue
    up and the next commit takes them all, so 30 concurrent starts cost a few
    restores instead of 30 (each one a process that rewrites the nat table under
    the xtables lock). A failed batch is retried one change at a time, so a bad
    change fails only its own caller.
    """

    def __init__(self, apply: Callable[[Sequence[str]], None]) -> None:
        self._apply = apply
        self._lock = threading.Lock()
        self._pending: list[tuple[list[str], Future[None]]] = []
        self._committing = False

    def commit(self, rules: list[str]) -> None:
        """Apply ``rules`` (with whatever else is pending); raise if they could not be applied."""
        done: Future[None] = Future()
        with self._lock:
            self._pending.append((rules, done))
            lead = not self._committing
            self._committing = True
        while lead:
            with self._lock:
                batch, self._pending = self._pending, []
                if not batch:
                    self._committing = False
                    break
            self._commit(batch)
        done.result()

    def _commit(self, batch: list[tuple[list[str], Future[None]]]) -> None:
        try:
            self._apply([rule for rules, _ in batch for rule in rules])
        except Exception as error:
            if len(batch) == 1:
                batch[0][1].set_exception(error)
                return
            for rules, done in batch:
                try:
                    self._apply(rules)
                except Exception as single:
                    done.set_exception(single)
                else:
                    done.set_result(None)
        else:
            for _, done in batch:
                done.set_result(None)


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
