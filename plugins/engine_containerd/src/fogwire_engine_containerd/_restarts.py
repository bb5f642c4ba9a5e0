"""Restart policies of containerd workloads: containerd has none, so the engine applies them.

A workload's policy (``no``, ``always``, ``on-failure[:N]``, ``unless-stopped``) is
kept in a label at create. When its task exits and the policy says so, a restart is
scheduled after a backoff that doubles with each restart (0.1 s up to 10 s); the
relaunch runs under the workload's lock and is skipped if the user stopped it or it
is gone. Also here: reading an OOM kill from the workload's cgroup, for exits whose
``TaskOOM`` event never came.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fogwire.engine import RestartPolicy
from fogwire.errors import EngineError
from fogwire_engine_containerd._labels import L_RESTART
from fogwire_engine_containerd._records import Record, Records

log = logging.getLogger(__name__)


def policy_of(container: Any) -> RestartPolicy:
    """The restart policy kept in ``container``'s label (``no`` when absent or unknown)."""
    policy, _, retries = container.labels.get(L_RESTART, "no:0").partition(":")
    if policy not in ("no", "always", "on-failure", "unless-stopped"):
        policy = "no"
    return RestartPolicy(policy, int(retries or 0))


def should_restart(container: Any, rec: Record, status: int) -> bool:
    """Whether ``container``'s policy restarts it after an exit with ``status``."""
    policy = policy_of(container)
    if policy.name in ("always", "unless-stopped"):
        return True
    if policy.name == "on-failure" and status != 0:
        return policy.max_retries <= 0 or rec.restart_count < policy.max_retries
    return False


def cgroup_oom_kills(cgroup_parent: str, namespace: str, name: str) -> bool:
    """Whether the kernel OOM-killed a process in the workload's cgroup (it lives until the task is deleted).

    The shim watches for OOM only once the task has started, so a workload that
    hits its limit at once can be killed before that and no ``TaskOOM`` event
    comes; the cgroup's own counter still tells.
    """
    path = f"{cgroup_parent}/{namespace}/{name}".strip("/")
    for counters in (
        Path("/sys/fs/cgroup/memory") / path / "memory.oom_control",  # cgroup v1
        Path("/sys/fs/cgroup") / path / "memory.events",  # cgroup v2
    ):
        try:
            text = counters.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value) > 0
    return False


class Restarts:
    """Scheduled and running restarts, one at most per workload.

    :param records: the engine's workload records (restart counts, user stops).
    :param lock: the engine's per-workload lock.
    :param get_container: the managed container of a name, or ``None`` (async).
    :param launch: starts a container's task (async; raises EngineError).
    :param closing: set when the engine closes; nothing more is scheduled.
    """

    def __init__(
        self,
        *,
        records: Records,
        lock: Callable[[str], asyncio.Lock],
        get_container: Callable[[str], Awaitable[Any | None]],
        launch: Callable[[Any], Awaitable[None]],
        closing: threading.Event,
    ) -> None:
        self._records = records
        self._lock = lock
        self._get_container = get_container
        self._launch = launch
        self._closing = closing
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._launching: set[str] = set()
        """Workloads whose restart is being launched right now."""

    def pending(self, name: str) -> bool:
        """True while a restart of ``name`` is scheduled or being launched."""
        return name in self._tasks or name in self._launching

    def tasks(self) -> list[asyncio.Task[None]]:
        """Every scheduled restart (the engine cancels them when it closes)."""
        return list(self._tasks.values())

    def schedule(self, name: str, rec: Record) -> None:
        """Restart ``name`` after its backoff, unless one is already scheduled."""
        if name in self._tasks or self._closing.is_set():
            return
        delay = min(0.1 * (2 ** min(rec.restart_count, 10)), 10.0)
        self._tasks[name] = asyncio.ensure_future(self._restart_after(name, delay))

    def cancel(self, name: str) -> None:
        """Drop a scheduled restart of ``name`` (the user stopped or removed it)."""
        task = self._tasks.pop(name, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _restart_after(self, name: str, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            async with self._lock(name):
                # From here on the next exit must be able to schedule the next restart,
                # even while this launch is still finishing: leave the schedule now.
                if self._tasks.get(name) is asyncio.current_task():
                    self._tasks.pop(name, None)
                rec = self._records.of(name)
                if rec.user_stopped:
                    return
                container = await self._get_container(name)
                if container is None:
                    return
                rec.restart_count += 1
                self._launching.add(name)
                try:
                    await self._launch(container)
                except EngineError as error:
                    log.warning("restarting workload %s failed: %s", name, error)
                    self.schedule(name, rec)
                finally:
                    self._launching.discard(name)
        finally:
            if self._tasks.get(name) is asyncio.current_task():
                with contextlib.suppress(KeyError):
                    self._tasks.pop(name)
