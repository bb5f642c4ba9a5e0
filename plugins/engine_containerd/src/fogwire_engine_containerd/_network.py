"""The bridge network of containerd workloads: published ports claimed, CNI set up and torn down.

Workloads without host networking join the CNI bridge (``_cni``). Before a task is
created its published host ports are checked against the host and against the
ports this engine's other workloads publish, and claimed; the network is added to
the task's namespace once it exists (its address written into the workload's
``/etc/hosts``) and deleted with the task.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fogwire.engine import PortMapping
from fogwire.errors import EngineError
from fogwire_engine_containerd._cni import Cni, check_ports_free
from fogwire_engine_containerd._labels import L_NETWORK, L_PORTS
from fogwire_engine_containerd._records import Records

log = logging.getLogger(__name__)


def ports_of(container: Any) -> list[PortMapping]:
    """The ports ``container`` publishes (kept in a label at create)."""
    raw = container.labels.get(L_PORTS)
    return [PortMapping(**p) for p in json.loads(raw)] if raw else []


def on_bridge(container: Any) -> bool:
    """Whether ``container`` joins the bridge network (not the host's)."""
    return bool(container.labels.get(L_NETWORK) != "host")


class WorkloadNetwork:
    """Ports and CNI networks of the engine's workloads (blocking methods: run them off the loop).

    :param cni: the CNI bridge.
    :param namespace: the containerd namespace (part of each network's id).
    :param records: the workloads' records (each keeps its CNI result).
    :param files_dir: where each workload's ``hosts`` file lives.
    :param get_container: the managed container of a name, or ``None`` (blocking).
    """

    def __init__(
        self,
        *,
        cni: Cni,
        namespace: str,
        records: Records,
        files_dir: Path,
        get_container: Callable[[str], Any | None],
    ) -> None:
        self.cni = cni
        self._namespace = namespace
        self._records = records
        self._files_dir = files_dir
        self._get_container = get_container
        self._published: dict[str, list[PortMapping]] = {}
        """Host ports of this engine's workloads with a network set up (see :meth:`reserve`)."""
        self._lock = threading.Lock()

    def _id(self, name: str) -> str:
        return f"{self._namespace}-{name}"

    def reserve(self, name: str, ports: list[PortMapping]) -> None:
        """Check ``ports`` against the host and this engine's published ports, and claim them."""
        with self._lock:
            taken: set[tuple[str, int, str]] = {
                (p.host_ip, p.host_port, p.protocol)
                for other, published in self._published.items()
                if other != name
                for p in published
            }
            check_ports_free(name, ports, taken)
            self._published[name] = ports

    def adopt(self, container: Any) -> None:
        """Count a running workload's ports as published (after the engine restarted)."""
        if on_bridge(container):
            with self._lock:
                self._published[container.id] = ports_of(container)

    def attach(self, name: str, pid: int, ports: list[PortMapping]) -> None:
        """Add the bridge network to the task ``pid``'s namespace and name its address in ``/etc/hosts``."""
        rec = self._records.of(name)
        try:
            rec.cni = self.cni.add(self._id(name), f"/proc/{pid}/ns/net", ports)
        except EngineError as error:
            if "duplicate allocation" not in str(error):
                raise
            # an ADD for this workload whose agent was killed before it recorded the result
            log.info("workload %s: releasing the network left by an interrupted start", name)
            self.cni.release_leftovers(self._id(name))
            rec.cni = self.cni.add(self._id(name), f"/proc/{pid}/ns/net", ports)
        address = Cni.address(rec.cni)
        if address:
            with open(self._files_dir / name / "hosts", "a") as hosts:
                hosts.write(f"{address}\t{name}\n")

    def teardown(self, name: str) -> None:
        """Release the workload's ports and delete its network, if it has one."""
        with self._lock:
            self._published.pop(name, None)
        rec = self._records.get(name)
        if rec is None or rec.cni is None:
            return
        container = self._get_container(name)
        ports = ports_of(container) if container is not None else []
        try:
            self.cni.delete(self._id(name), "", ports, rec.cni)
        except EngineError as error:
            log.warning("network teardown of %s: %s", name, error)
        rec.cni = None
