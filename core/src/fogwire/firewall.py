"""The host's loopback kept to the host, for engines whose bridges have ``route_localnet`` on.

Publishing a port on 127.0.0.1 to a bridge workload needs ``route_localnet=1`` on
the bridge, and that alone lets whatever sits on the bridge send to the host's
127.0.0.0/8: services bound to loopback become reachable from workloads
(CVE-2020-8558). :data:`LOCALNET_GUARD` is kube-proxy's answer, an ``INPUT`` rule
dropping traffic to 127.0.0.0/8 that did not come from the host itself. The
containerd plugin puts it in place before turning ``route_localnet`` on; the
podman plugin puts it in place because netavark turns it on and adds no guard.
"""

from __future__ import annotations

import subprocess

from fogwire.errors import EngineError

LOCALNET_GUARD = (
    "!", "-i", "lo", "!", "-s", "127.0.0.0/8", "-d", "127.0.0.0/8",
    "-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT",
    "-m", "comment", "--comment", "fogwire: loopback only from the host",
    "-j", "DROP",
)  # fmt: skip
"""The ``INPUT`` rule (iptables arguments after the chain) that keeps 127.0.0.0/8 to the host."""


def _iptables(*args: str) -> bool:
    try:
        proc = subprocess.run(["iptables", "-w", *args], capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise EngineError(f"iptables could not run ({error}); install iptables") from error
    return proc.returncode == 0


def ensure_loopback_guard() -> None:
    """Put :data:`LOCALNET_GUARD` first in ``INPUT`` unless it is there (blocking; idempotent)."""
    if not _iptables("-C", "INPUT", *LOCALNET_GUARD) and not _iptables("-I", "INPUT", "1", *LOCALNET_GUARD):
        raise EngineError("could not add the loopback guard rule to INPUT (iptables refused it)")


def remove_loopback_guard() -> None:
    """Remove every copy of :data:`LOCALNET_GUARD` from ``INPUT`` (blocking)."""
    while _iptables("-D", "INPUT", *LOCALNET_GUARD):
        pass
