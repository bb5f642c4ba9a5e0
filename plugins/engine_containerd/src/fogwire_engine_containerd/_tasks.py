"""containerd tasks of the engine's workloads: create and start, stop, kill, delete (all blocking).

A workload's task is created on its snapshot's mounts with FIFOs for its output,
which the log pump drains into the workload's log file; a bridge workload's
network is added once the task's namespace exists and removed when the task is
deleted. Stopping is SIGTERM, then SIGKILL after the timeout, then delete.
These methods block on gRPC calls: the engine runs them on its thread pool.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.protobuf import any_pb2

from fogwire.errors import EngineError
from fogwire_engine_containerd._client import (
    Client,
    RpcError,
    StatusCode,
    details,
    is_not_found,
    runc_options_pb2,
    snapshots_pb2,
    tasks_pb2,
)
from fogwire_engine_containerd._labels import L_LOG_KIB, L_RUNTIME, RUNC_OPTIONS_TYPE_URL, SHIM_GROUP_ANNOTATION
from fogwire_engine_containerd._logs import LogPump
from fogwire_engine_containerd._network import WorkloadNetwork, on_bridge, ports_of

log = logging.getLogger(__name__)


def orphan_shims(address: str, namespace: str, name: str, signum: int | None = None) -> list[int]:
    """PIDs of the runc shims of task ``name`` in ``namespace`` of the containerd at ``address`` (signalled with ``signum``)."""
    socket_path = address.removeprefix("unix://").removeprefix("unix:").encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not args or not args[0].endswith(b"containerd-shim-runc-v2"):
            continue
        pairs = dict(zip(args[1::2], args[2::2], strict=False))
        ours = pairs.get(b"-address") == socket_path and pairs.get(b"-namespace") == namespace.encode()
        if ours and pairs.get(b"-id") == name.encode():
            found.append(int(entry.name))
            if signum is not None:
                with contextlib.suppress(OSError):
                    os.kill(int(entry.name), signum)
    return found


def log_limit(labels: Mapping[str, str]) -> int | None:
    """Bytes per log file of a workload whose spec bounds its log (its container's label), else ``None``."""
    value = labels.get(L_LOG_KIB)
    return int(value) * 1024 if value and value.isdigit() else None


def shim_group_of(container: Any) -> str:
    """The shim group ``container``'s OCI spec puts its task under ("" for a shim of its own)."""
    try:
        annotations = json.loads(container.spec.value).get("annotations") or {}
    except ValueError:
        return ""
    return str(annotations.get(SHIM_GROUP_ANNOTATION, ""))


class ShimStarts:
    """Lets a task create that may start its group's runc shim run alone.

    containerd 1.6's runc shim starts a group's shim by binding the group's socket
    and then listening on it. A second start racing the first finds the address in
    use, cannot connect (bound, not yet listening), removes the first one's socket
    and binds its own: one of the two fails ("create new shim socket: chmod …: no such
    file", or "try create new shim socket 2x: … address already in use"). So while a
    group has no task this engine made, its creates take turns; once one lives, its
    shim is up and the group's creates run at once again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._turns: dict[str, threading.Lock] = {}
        self._live: Counter[str] = Counter()
        self._group_of: dict[str, str] = {}

    @contextlib.contextmanager
    def creating(self, name: str, group: str) -> Iterator[None]:
        """Around the create of ``name``'s task in ``group``; on success its task counts as live."""
        if not group:
            yield
            return
        with self._lock:
            turn = self._turns.setdefault(group, threading.Lock())
            may_start_shim = self._live[group] == 0
        if may_start_shim:
            turn.acquire()
        try:
            yield
            with self._lock:
                if self._group_of.get(name) != group:
                    self._live[group] += 1
                    self._group_of[name] = group
        finally:
            if may_start_shim:
                turn.release()

    def deleted(self, name: str) -> None:
        """``name``'s task is gone (the last one of a group lets its shim exit)."""
        with self._lock:
            group = self._group_of.pop(name, None)
            if group is not None:
                self._live[group] -= 1
                if self._live[group] <= 0:
                    del self._live[group]


class Tasks:
    """The workloads' tasks (see the module docstring).

    :param client: the engine's started client.
    :param pump: the engine's log pump (made at start).
    :param network: the workloads' bridge network.
    :param snapshotter: the snapshotter of the workloads' snapshots.
    :param runc_root: runc's state directory for the engine's tasks.
    :param files_dir: where each workload's FIFOs and host files live.
    :param logs_dir: where each workload's log file lives.
    """

    def __init__(
        self,
        *,
        client: Callable[[], Client],
        pump: Callable[[], LogPump | None],
        network: WorkloadNetwork,
        snapshotter: str,
        runc_root: Path,
        files_dir: Path,
        logs_dir: Path,
    ) -> None:
        self._client = client
        self._pump = pump
        self.network = network
        self.snapshotter = snapshotter
        self._runc_root = runc_root
        self._files_dir = files_dir
        self._logs_dir = logs_dir
        self.attached: set[str] = set()
        """Workloads whose current task's FIFOs the log pump drains."""
        self.shim_starts = ShimStarts()

    def all(self) -> dict[str, Any]:
        """Every task of the namespace by container id (ListTasks fills ``id``, not ``container_id``)."""
        resp = self._client().tasks.List(tasks_pb2.ListTasksRequest(), metadata=self._client().md(), timeout=30)
        return {t.container_id or t.id: t for t in resp.tasks}

    def get(self, name: str) -> Any | None:
        """The task of container ``name``, or ``None``."""
        try:
            return (
                self._client()
                .tasks.Get(tasks_pb2.GetRequest(container_id=name), metadata=self._client().md(), timeout=30)
                .process
            )
        except RpcError as error:
            if is_not_found(error):
                return None
            raise

    def launch(self, container: Any, fresh_mounts: list[Any] | None) -> tuple[int, datetime] | None:
        """Create and start ``container``'s task, its output drained to its log; ``(pid, started)``.

        ``None`` when it already runs. ``fresh_mounts`` are the snapshot's mounts of a
        container just created (its first start needs no task lookup nor Mounts call).
        """
        c = self._client()
        name = container.id
        task = None if fresh_mounts is not None else self.get(name)
        if task is not None:
            if task.status in (2, 4, 5):  # running, paused, pausing
                return None
            self.delete(name)
        bridge = on_bridge(container)
        ports = ports_of(container)
        if bridge and ports:
            self.network.reserve(name, ports)
        fifo_dir = self._files_dir / name / "io"
        stdout, stderr = fifo_dir / "stdout", fifo_dir / "stderr"
        fds = [LogPump.make_fifo(stdout), LogPump.make_fifo(stderr)]
        attached = False
        try:
            mounts = (
                fresh_mounts
                or c.snapshots.Mounts(
                    snapshots_pb2.MountsRequest(snapshotter=self.snapshotter, key=name), metadata=c.md(), timeout=30
                ).mounts
            )
            options = any_pb2.Any(
                type_url=RUNC_OPTIONS_TYPE_URL,
                value=runc_options_pb2.Options(
                    root=str(self._runc_root), binary_name=container.labels.get(L_RUNTIME, "")
                ).SerializeToString(),
            )
            request = tasks_pb2.CreateTaskRequest(
                container_id=name, rootfs=mounts, stdout=str(stdout), stderr=str(stderr), options=options
            )
            with self.shim_starts.creating(name, shim_group_of(container)):
                created = self._create_task(c, name, request)
            pump = self._pump()
            assert pump is not None
            log_file = self._logs_dir / f"{name}.log"
            limit = log_limit(container.labels)
            pump.attach(fds[0], "stdout", log_file, limit)
            pump.attach(fds[1], "stderr", log_file, limit)
            attached = True
            self.attached.add(name)
            if bridge:
                try:
                    self.network.attach(name, created.pid, ports)
                except EngineError:
                    self.kill_and_delete(name)
                    raise
            started = datetime.now(UTC)
            c.tasks.Start(tasks_pb2.StartRequest(container_id=name), metadata=c.md(), timeout=60)
            return int(created.pid), started
        except RpcError as error:
            self.kill_and_delete(name)
            raise EngineError(f"starting workload {name!r} failed: {details(error)}") from error
        finally:
            if not attached:
                for fd in fds:
                    with contextlib.suppress(OSError):
                        os.close(fd)

    def _create_task(self, c: Client, name: str, request: Any) -> Any:
        """``Tasks.Create``, clearing what a create whose caller died (kill -9 of the agent) left in the way.

        Either a task that was registered (killed and deleted), or a shim containerd
        started and never registered as a task (it stays until it exits: it is
        killed, and containerd then removes its bundle). A bundle still being
        removed after a replace is waited for the same way.
        """
        deadline = time.monotonic() + 15
        while True:
            try:
                return c.tasks.Create(request, metadata=c.md(), timeout=60)
            except RpcError as error:
                # "already exists": a task or a shim of this id is registered; "mkdir …: file exists": the
                # bundle of the previous task of this id is not cleaned up yet (containerd does it when its shim exits)
                in_the_way = error.code() is StatusCode.ALREADY_EXISTS or "file exists" in details(error)
                if not in_the_way or time.monotonic() > deadline:
                    raise
            log.info("workload %s: clearing what an interrupted start left", name)
            if self.get(name) is not None:
                self.kill_and_delete(name)
            else:
                orphan_shims(c.address, c.namespace, name, signal.SIGKILL)
                time.sleep(0.2)

    def delete(self, name: str) -> Any | None:
        """Delete the task of ``name`` (its network and log draining end with it); its exit, or ``None``."""
        try:
            resp = self._client().tasks.Delete(
                tasks_pb2.DeleteTaskRequest(container_id=name), metadata=self._client().md(), timeout=60
            )
        except RpcError as error:
            if is_not_found(error):
                self.shim_starts.deleted(name)
                return None
            raise
        finally:
            self.attached.discard(name)
            self.network.teardown(name)
        self.shim_starts.deleted(name)
        return resp

    def kill_and_delete(self, name: str) -> None:
        """SIGKILL every process of the task, wait for the exit, delete the task."""
        c = self._client()
        task = self.get(name)
        if task is None:
            self.network.teardown(name)
            return
        if task.status != 3:
            waiter = c.tasks.Wait.future(tasks_pb2.WaitRequest(container_id=name), metadata=c.md())
            try:
                c.tasks.Kill(
                    tasks_pb2.KillRequest(container_id=name, signal=signal.SIGKILL, all=True),
                    metadata=c.md(),
                    timeout=30,
                )
                waiter.result(timeout=10)
            except (RpcError, TimeoutError):
                pass
            finally:
                waiter.cancel()
        deadline = time.monotonic() + 10
        while True:
            try:
                self.delete(name)
                return
            except RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self, name: str, timeout_s: float) -> int | None:
        """SIGTERM, SIGKILL after ``timeout_s``, then delete the task; return the exit status."""
        c = self._client()
        task = self.get(name)
        if task is None:
            return None
        if task.status in (2, 4, 5):
            waiter = c.tasks.Wait.future(tasks_pb2.WaitRequest(container_id=name), metadata=c.md())
            try:
                c.tasks.Kill(
                    tasks_pb2.KillRequest(container_id=name, signal=signal.SIGTERM), metadata=c.md(), timeout=30
                )
                waiter.result(timeout=max(timeout_s, 0.01))
            except TimeoutError:
                c.tasks.Kill(
                    tasks_pb2.KillRequest(container_id=name, signal=signal.SIGKILL, all=True),
                    metadata=c.md(),
                    timeout=30,
                )
                waiter.result(timeout=30)
            except RpcError as error:
                if not is_not_found(error):
                    raise
            finally:
                waiter.cancel()
        deleted = self.delete(name)
        return int(deleted.exit_status) if deleted is not None else int(task.exit_status)

    def reattach_logs(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        """Reopen the FIFOs of a task this engine instance did not start (``labels``: its container's)."""
        pump = self._pump()
        if pump is None or name in self.attached:
            return
        fifo_dir = self._files_dir / name / "io"
        log_file = self._logs_dir / f"{name}.log"
        for stream in ("stdout", "stderr"):
            path = fifo_dir / stream
            if path.exists():
                with contextlib.suppress(OSError):
                    pump.attach(os.open(path, os.O_RDONLY | os.O_NONBLOCK), stream, log_file, log_limit(labels or {}))
        self.attached.add(name)
