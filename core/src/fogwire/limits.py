"""The agent's own limits (``diskLimit``, ``memoryLimit``, ``cpuLimit``): crossing one is an event, as on edgelet.

Measured every ``period_s``: the agent process's resident memory (MiB) and CPU (percent
of one core since the last look), and the disk its state directory and the
``diskDirectory`` take (GiB, walked at most every five minutes). A limit crossed
records ``limit-exceeded`` once; coming back under records ``limit-cleared``. Nothing
is stopped: the limits are for the operator to see, as the controller's violation
flags are.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import attrs


@attrs.frozen
class Limits:
    """The limits in force (``None``: not watched)."""

    disk_gib: float | None = None
    memory_mib: float | None = None
    cpu_percent: float | None = None

    @property
    def any(self) -> bool:
        """Whether any limit is set."""
        return any(v is not None for v in (self.disk_gib, self.memory_mib, self.cpu_percent))


def own_rss_mib() -> float:
    """This process's resident memory in MiB (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def tree_bytes(roots: Iterable[Path]) -> int:
    """Bytes the files under ``roots`` take (symlinks not followed, unreadable entries skipped)."""
    total = 0
    stack = [r for r in roots if r.exists()]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_blocks * 512
                    except OSError:
                        continue
        except OSError:
            continue
    return total


class LimitWatch:
    """Compares the agent's footprint with :class:`Limits` and records crossings through ``record(kind, detail)``."""

    DISK_EVERY_S = 300.0

    def __init__(self, roots: Iterable[Path], record: Callable[[str, str], Awaitable[None]]) -> None:
        self.roots = list(roots)
        self.record = record
        self.over: set[str] = set()
        self._cpu = (time.process_time(), time.monotonic())
        self._disk: tuple[float, float] | None = None

    def measure(self, limits: Limits) -> dict[str, float]:
        """The figures now (blocking: the disk walk; run it in a thread)."""
        figures: dict[str, float] = {"memory": own_rss_mib()}
        cpu, wall = time.process_time(), time.monotonic()
        figures["cpu"] = 100 * (cpu - self._cpu[0]) / max(wall - self._cpu[1], 1e-6)
        self._cpu = (cpu, wall)
        if limits.disk_gib is not None:
            if self._disk is None or wall - self._disk[0] > self.DISK_EVERY_S:
                self._disk = (wall, tree_bytes(self.roots) / 1024**3)
            figures["disk"] = self._disk[1]
        return figures

    async def check(self, limits: Limits, figures: dict[str, float]) -> None:
        """Record each limit newly crossed or newly cleared."""
        for name, limit, unit in (
            ("memory", limits.memory_mib, "MiB"),
            ("cpu", limits.cpu_percent, "%"),
            ("disk", limits.disk_gib, "GiB"),
        ):
            value = figures.get(name)
            if limit is None or value is None:
                self.over.discard(name)
                continue
            if value > limit and name not in self.over:
                self.over.add(name)
                await self.record("limit-exceeded", f"{name}: {value:.1f} {unit} over the limit of {limit:g} {unit}")
            elif value <= limit and name in self.over:
                self.over.discard(name)
                await self.record("limit-cleared", f"{name}: {value:.1f} {unit}, under the limit of {limit:g} {unit}")


def free_percent(path: Path) -> float:
    """Percent of the filesystem holding ``path`` that an unprivileged writer may still use (``df``'s view)."""
    stats = os.statvfs(path)
    return 100.0 * stats.f_bavail / stats.f_blocks if stats.f_blocks else 100.0
