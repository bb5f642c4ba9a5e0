"""A containerd workload as the engine reports it: its :class:`~fogwire.engine.WorkloadInfo`.

containerd knows the container and its task; the engine's record knows the rest
(start and finish times, exit code, restarts, OOM); restarts and health checks
are the engine's own. This puts them together, and keeps the plugin's internal
labels out of the workload's labels.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fogwire.engine import Health, WorkloadInfo, WorkloadState
from fogwire_engine_containerd._labels import INTERNAL, L_HEALTH, L_IMAGE_ID, L_IMAGE_REF
from fogwire_engine_containerd._records import Record

STATUS = {
    1: WorkloadState.CREATED,
    2: WorkloadState.RUNNING,
    3: WorkloadState.EXITED,
    4: WorkloadState.PAUSED,
    5: WorkloadState.PAUSED,
}
"""containerd's task status numbers as workload states."""


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def workload_info(container: Any, task: Any | None, rec: Record, *, health: Health, restarting: bool) -> WorkloadInfo:
    """``container`` (and its ``task``, if any) as a :class:`WorkloadInfo`.

    ``health`` is the engine's health of it; ``restarting``: a restart by its policy
    is scheduled or being launched.
    """
    name = container.id
    exit_code = rec.exit_code
    if task is None:
        if restarting:
            state = WorkloadState.RESTARTING
        elif rec.started_at:
            state = WorkloadState.EXITED
        else:
            state = WorkloadState.CREATED
    else:
        state = STATUS.get(int(task.status), WorkloadState.UNKNOWN)
        if state is WorkloadState.EXITED:
            exit_code = int(task.exit_status)
            if restarting:
                state = WorkloadState.RESTARTING
        elif state is WorkloadState.CREATED and rec.started_at:
            state = WorkloadState.RESTARTING
    finished_at = _parse_time(rec.finished_at)
    if task is not None and state in (WorkloadState.EXITED, WorkloadState.RESTARTING) and task.HasField("exited_at"):
        finished_at = finished_at or datetime.fromtimestamp(task.exited_at.seconds + task.exited_at.nanos / 1e9, UTC)
    labels = {k: v for k, v in container.labels.items() if not k.startswith(INTERNAL)}
    health = health if L_HEALTH in container.labels else Health.NONE
    return WorkloadInfo(
        name=name,
        id=name,
        image=container.labels.get(L_IMAGE_REF, container.image),
        state=state,
        labels=labels,
        image_digest=container.labels.get(L_IMAGE_ID),
        exit_code=exit_code if state in (WorkloadState.EXITED, WorkloadState.RESTARTING, WorkloadState.DEAD) else None,
        started_at=_parse_time(rec.started_at),
        finished_at=finished_at if state is not WorkloadState.RUNNING else None,
        health=health,
        restart_count=rec.restart_count,
        oom_killed=rec.oom_killed,
    )
