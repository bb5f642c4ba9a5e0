"""CPU time and memory of a process's control group, read from ``/proc`` and ``/sys/fs/cgroup``.

For engines that know a workload's main PID: the PID's cgroups (``/proc/<pid>/cgroup``)
are the container's, so their counters are the workload's, without a call to the
daemon (docker's stats call takes a second or more per container). cgroup v1
(``cpuacct.usage``, ``memory.usage_in_bytes``) and v2 (``cpu.stat`` ``usage_usec``,
``memory.current``) are both read; what can't be read is ``None``.
"""

from __future__ import annotations

from pathlib import Path

from fogwire.engine import ResourceUsage

ROOT = Path("/sys/fs/cgroup")


def _groups(pid: int) -> dict[str, str]:
    """Controller → cgroup path of ``pid`` (``""`` is the v2 unified hierarchy)."""
    out: dict[str, str] = {}
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            out[controller] = path
    return out


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def usage_of_pid(pid: int) -> ResourceUsage | None:
    """The CPU seconds used and memory bytes held by ``pid``'s cgroup, or ``None`` when it is gone."""
    groups = _groups(pid)
    if not groups:
        return None
    cpu_s: float | None = None
    memory: int | None = None
    if "cpuacct" in groups:
        nanoseconds = _read_int(ROOT / "cpuacct" / groups["cpuacct"].lstrip("/") / "cpuacct.usage")
        cpu_s = nanoseconds / 1e9 if nanoseconds is not None else None
    if "memory" in groups:
        memory = _read_int(ROOT / "memory" / groups["memory"].lstrip("/") / "memory.usage_in_bytes")
    unified = groups.get("")
    if unified is not None and (cpu_s is None or memory is None):
        base = ROOT / unified.lstrip("/")
        if not (base / "memory.current").exists() and (ROOT / "unified").is_dir():
            base = ROOT / "unified" / unified.lstrip("/")
        if memory is None:
            memory = _read_int(base / "memory.current")
        if cpu_s is None:
            try:
                stat = dict(line.split() for line in (base / "cpu.stat").read_text().splitlines() if line.strip())
                cpu_s = int(stat["usage_usec"]) / 1e6
            except (OSError, ValueError, KeyError):
                cpu_s = None
    if cpu_s is None and memory is None:
        return None
    return ResourceUsage(cpu_seconds=cpu_s or 0.0, memory_bytes=memory or 0)
