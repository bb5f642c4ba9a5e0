"""The body of ``PUT agent/status``: the node and each microservice, in the controller's words.

The controller marks a node UNKNOWN when ``lastStatusTime`` (the agent's own clock)
is older than three status periods, and answers 500 when ``microserviceStatus`` is
missing or is not a JSON string holding an array (``controller-agent-api.md`` §6):
:func:`status_body` always sends it, ``"[]"`` when empty, and only numbers ≥ 0.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import struct
import time
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from fogwire.reconcile import MicroserviceStatus

_RECORD_WORDS = {
    "pending": "QUEUED",
    "creating": "STARTING",
    "replacing": "UPDATING",
    "removing": "DELETING",
    "retrying": "FAILED",
    "failed": "FAILED",
    "unresolvable": "FAILED",
}
_STATE_WORDS = {
    "running": "RUNNING",
    "restarting": "RESTARTING",
    "created": "STARTING",
    "paused": "STOPPED",
    "exited": "STOPPED",
    "dead": "FAILED",
    "absent": "QUEUED",
}


def controller_word(ms: MicroserviceStatus) -> str:
    """The controller's status word (QUEUED, STARTING, RUNNING, FAILED, …) for one microservice."""
    word = _RECORD_WORDS.get(ms.status)
    if word is not None:
        return word
    if ms.state in ("exited", "dead") and ms.last_error:
        return "FAILED"
    return _STATE_WORDS.get(ms.state, "UNKNOWN")


def microservice_entries(
    statuses: Iterable[MicroserviceStatus],
    wanted: Iterable[str],
    rejected: Mapping[str, str],
    now: float,
    first_seen: dict[tuple[str, str], float] | None = None,
    usage: Mapping[str, tuple[float, int]] | None = None,
) -> list[dict[str, Any]]:
    """One ``microserviceStatus`` entry per microservice the controller listed (``wanted``) and each one rejected.

    An engine's listing may not carry start times (docker's does not): ``first_seen``
    (kept by the caller) then gives the time a container was first seen, so
    ``startTime`` and ``operatingDuration`` still mean something. ``usage`` is
    uuid → (CPU percent, memory bytes) of the running ones the engine measured.
    """
    by_name = {s.name: s for s in statuses}
    seen = {} if first_seen is None else first_seen
    out: list[dict[str, Any]] = []
    for uuid in sorted(set(wanted)):
        ms = by_name.get(uuid)
        if ms is None:
            out.append(_entry(uuid, "", "QUEUED", None, now, ""))
            continue
        word = controller_word(ms)
        error = ms.last_error or "" if word == "FAILED" else ""
        started = ms.started_at
        if started is None and ms.container_id:
            started = seen.setdefault((uuid, ms.container_id), now)
        entry = _entry(uuid, ms.container_id or "", word, started if word == "RUNNING" else None, now, error)
        if usage is not None and uuid in usage:
            entry["cpuUsage"], entry["memoryUsage"] = usage[uuid]
        out.append(entry)
    for uuid, reason in sorted(rejected.items()):
        out.append(_entry(uuid, "", "FAILED", None, now, reason))
    return out


def _entry(uuid: str, container: str, word: str, started: float | None, now: float, error: str) -> dict[str, Any]:
    start_ms = int(started * 1000) if started else 0
    return {
        "id": uuid,
        "containerId": container,
        "status": word,
        "startTime": start_ms,
        "operatingDuration": max(0, int(now * 1000) - start_ms) if start_ms else 0,
        "cpuUsage": 0,
        "memoryUsage": 0,
        "percentage": 100 if word == "RUNNING" else 0,
        "errorMessage": error[:1000],
    }


@attrs.frozen
class Device:
    """The device's figures for one status: usage and availability."""

    cpu_percent: float
    memory_used_mib: float
    memory_available_mib: float
    disk_used_gib: float
    disk_available_gib: float
    disk_free_percent: float
    ip_address: str


class DeviceProbe:
    """Reads CPU (between two calls), memory and disk of the device, and the reported interface's address."""

    def __init__(self, disk_path: str, interface: str = "dynamic", peer: tuple[str, int] | None = None) -> None:
        self.disk_path = disk_path
        self.interface = interface
        self.peer = peer
        self._last_cpu: tuple[int, int] | None = None

    def read(self) -> Device:
        """The device now (CPU is the busy share since the previous read)."""
        memory = self._meminfo()
        total_mib = memory.get("MemTotal", 0) / 1024
        available_mib = memory.get("MemAvailable", 0) / 1024
        try:
            disk = os.statvfs(self.disk_path)
            total = disk.f_blocks * disk.f_frsize
            free = disk.f_bavail * disk.f_frsize
        except OSError:
            total = free = 0
        return Device(
            cpu_percent=self._cpu(),
            memory_used_mib=round(max(0.0, total_mib - available_mib), 1),
            memory_available_mib=round(available_mib, 1),
            disk_used_gib=round(max(0, total - free) / 2**30, 3),
            disk_available_gib=round(free / 2**30, 3),
            disk_free_percent=round(100 * free / total, 1) if total else 100.0,
            ip_address=self.address(),
        )

    def _cpu(self) -> float:
        try:
            with open("/proc/stat", encoding="ascii") as handle:
                fields = [int(v) for v in handle.readline().split()[1:]]
        except (OSError, ValueError):
            return 0.0
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        total = sum(fields)
        last, self._last_cpu = self._last_cpu, (idle, total)
        if last is None or total <= last[1]:
            return 0.0
        return round(100 * (1 - (idle - last[0]) / (total - last[1])), 1)

    @staticmethod
    def _meminfo() -> dict[str, int]:
        out: dict[str, int] = {}
        try:
            with open("/proc/meminfo", encoding="ascii") as handle:
                for line in handle:
                    key, _, rest = line.partition(":")
                    out[key] = int(rest.split()[0])
        except (OSError, ValueError, IndexError):
            pass
        return out

    def address(self) -> str:
        """The IPv4 address of the configured interface; ``dynamic``: the one the controller is reached from."""
        if self.interface and self.interface != "dynamic":
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                packed = fcntl.ioctl(probe.fileno(), 0x8915, struct.pack("256s", self.interface[:15].encode()))
                return socket.inet_ntoa(packed[20:24])  # SIOCGIFADDR
            except OSError:
                return ""
            finally:
                probe.close()
        if self.peer is None:
            return ""
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.connect(self.peer)  # no packet is sent: this only picks the route's source address
            return str(probe.getsockname()[0])
        except OSError:
            return ""
        finally:
            probe.close()


def status_body(
    *,
    entries: list[dict[str, Any]],
    device: Device,
    started_at: float,
    version: str,
    daemon_status: str = "RUNNING",
    warning: str = "",
    disk_threshold: int = 0,
    now: float | None = None,
) -> dict[str, Any]:
    """The whole ``PUT agent/status`` body."""
    now = time.time() if now is None else now
    now_ms = int(now * 1000)
    return {
        "daemonStatus": daemon_status,
        "daemonOperatingDuration": max(0, now_ms - int(started_at * 1000)),
        "daemonLastStart": int(started_at * 1000),
        "systemTime": now_ms,
        "lastStatusTime": now_ms,
        "memoryUsage": device.memory_used_mib,
        "diskUsage": device.disk_used_gib,
        "cpuUsage": device.cpu_percent,
        "systemAvailableDisk": device.disk_available_gib,
        "systemAvailableMemory": device.memory_available_mib,
        "systemTotalCpu": device.cpu_percent,
        "diskViolation": bool(disk_threshold) and device.disk_free_percent < disk_threshold,
        "memoryViolation": False,
        "cpuViolation": False,
        "repositoryCount": 0,
        "repositoryStatus": "[]",
        "ipAddress": device.ip_address,
        "ipAddressExternal": device.ip_address,
        "version": version,
        "isReadyToUpgrade": False,
        "isReadyToRollback": False,
        "warningMessage": warning,
        "microserviceStatus": json.dumps(entries, separators=(",", ":")),
    }
