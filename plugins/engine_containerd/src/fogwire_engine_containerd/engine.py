"""The containerd engine: containerd's gRPC API driven directly, external or embedded.

Long on purpose: this is the Engine class alone; each public operation orchestrates
the collaborators, one module per concern, under the workload's lock: _containers
(OCI spec, host files, snapshot, user), _images (pull, import, prune), _tasks
(launch, stop, kill), _events (containerd's task events), _restarts (restart
policies, cgroup OOM), _health (health checks), _network (ports, CNI), _logs (log
pump and rotation), _records (what the engine remembers), _info (what it reports),
_options (its options model).

This module imports the gRPC client (over h2) and the generated stubs; the
entry-point module (:mod:`fogwire_engine_containerd.plugin`) imports it only when
the engine is selected. The client's calls block, so they run on the engine's own
thread pool; events arrive on a subscriber thread and are handed to the event loop.

What the plugin does itself, because containerd's core API leaves it to clients:
pulling (see :mod:`._images`), the OCI runtime spec (:mod:`._spec`), networking
with CNI (:mod:`._cni`), log files (:mod:`._logs`), restart policies and health
checks (here), and the embedded daemon (:mod:`._daemon`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import shutil
import signal
import threading
from collections.abc import AsyncIterator, Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from fogwire.cgroups import usage_of_pid
from fogwire.engine import (
    MANAGED_LABEL,
    Engine,
    EngineContext,
    EngineEvent,
    EventKind,
    HealthCheck,
    LoadResult,
    LogLine,
    PruneResult,
    RegistryAuth,
    ResourceUsage,
    WorkloadInfo,
    WorkloadSpec,
    WorkloadState,
)
from fogwire.errors import EngineError, ImageNotFoundError, WorkloadNotFoundError
from fogwire_engine_containerd import _ref
from fogwire_engine_containerd._client import (
    Client,
    RpcError,
    containers_pb2,
    details,
    is_not_found,
    is_unavailable,
)
from fogwire_engine_containerd._cni import Cni
from fogwire_engine_containerd._containers import ContainerBuilder
from fogwire_engine_containerd._daemon import EmbeddedContainerd
from fogwire_engine_containerd._events import Subscribers, TaskEvents
from fogwire_engine_containerd._health import HealthChecks
from fogwire_engine_containerd._images import ImageStore
from fogwire_engine_containerd._info import workload_info
from fogwire_engine_containerd._labels import (
    ID_RE,
    L_HEALTH,
)
from fogwire_engine_containerd._logs import LogPump, LogReader, remove_logs
from fogwire_engine_containerd._network import WorkloadNetwork
from fogwire_engine_containerd._options import read_options
from fogwire_engine_containerd._records import Record, Records
from fogwire_engine_containerd._restarts import Restarts, cgroup_oom_kills, should_restart
from fogwire_engine_containerd._tasks import Tasks

log = logging.getLogger("fogwire.engine.containerd")

T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(UTC)


def process_started(pid: int) -> datetime | None:
    """When process ``pid`` started (``/proc/<pid>/stat`` field 22 and the boot time), or ``None``."""
    import os

    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of the whole line: starttime, in clock ticks after boot
        boot = next(
            int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime")
        )
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return datetime.fromtimestamp(boot + ticks / os.sysconf("SC_CLK_TCK"), UTC)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


class ContainerdEngine(Engine):
    """containerd (1.6+) over its gRPC API, as the agent's engine.

    With ``EngineContext.url`` it uses that containerd. Without, it uses the
    default socket if one answers, else starts its own containerd child (option
    ``embedded``: ``"auto"`` (default), ``true`` to always embed, ``false`` to never).
    """

    features = frozenset({"pid_mode", "ipc_mode", "devices", "annotations", "runtime", "hooks"})

    name: ClassVar[str] = "containerd"

    def __init__(self, context: EngineContext) -> None:
        super().__init__(context)
        opts = read_options(context.converter, context.options)
        self.options = opts
        self.namespace: str = opts.namespace
        self.snapshotter: str = opts.snapshotter
        self.embedded_mode = opts.embedded
        self.containerd_binary = opts.containerd_binary
        self.default_socket = opts.socket
        self.cgroup_parent = opts.cgroup_parent
        group = opts.shim_group
        self.shim_group = f"fogwire-{self.namespace}-{context.agent_id}" if group is True else str(group or "")
        self.start_timeout_s = opts.start_timeout_s
        self.log_max_bytes = opts.log_max_bytes
        self.log_max_files = opts.log_max_files
        self.daemon: EmbeddedContainerd | None = None
        self.client: Client | None = None
        self.images: ImageStore | None = None
        base = context.data_dir / "containerd-engine" / self.namespace
        self._volumes_dir = context.data_dir / "containerd-engine" / "volumes"
        self._files_dir = context.run_dir / "containerd-engine" / self.namespace
        self._runc_root = context.run_dir / "containerd-engine" / "runc"
        self._logs_dir = context.log_dir / "workloads"
        self.records = Records(base / "workloads")
        """What the engine remembers of each workload beyond containerd (exit codes, restarts, network)."""
        self._locks: dict[str, asyncio.Lock] = {}
        self.subscribers = Subscribers()
        """The readers of :meth:`events`."""
        self._seen_exits: set[tuple[str, int]] = set()
        self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="fogwire-containerd")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pump: LogPump | None = None
        self._closing = threading.Event()
        self.health = HealthChecks(self._run, lambda: self._c, self._closing, self._emit)
        """Health checks: containerd runs none, so the engine execs each workload's own."""
        self.task_events = TaskEvents(
            client=lambda: self._c,
            namespace=self.namespace,
            closing=self._closing,
            call_soon=self._call_soon,
            on_exit=self._on_exit,
            on_start=lambda name, when: self._on_event(EventKind.START, name, when, None),
            on_oom=self._on_oom,
            on_resubscribed=self._schedule_reconcile,
        )
        """containerd's task events, read on a thread of their own."""
        self._reconcile_task: asyncio.Task[None] | None = None
        self._fresh: dict[str, tuple[Any, list[Any]]] = {}
        """Containers this engine created and has not started yet, with their snapshot mounts."""
        self.containers = ContainerBuilder(
            client=lambda: self._c,
            images=lambda: self._img,
            options=opts,
            agent_id=context.agent_id,
            managed_labels=self.managed_labels,
            shim_group=self.shim_group,
            files_dir=self._files_dir,
            volumes_dir=self._volumes_dir,
        )
        """Creates containers (spec, host files, mounts, snapshot, user)."""
        self.restarts = Restarts(
            records=self.records,
            lock=self._lock,
            get_container=lambda name: self._run(self._get_container, name),
            launch=self._launch,
            closing=self._closing,
        )
        """Restart policies, applied by the engine (containerd has none)."""
        self.network = WorkloadNetwork(
            cni=Cni(Path(opts.cni_bin_dir), bridge=opts.cni_bridge, subnet=opts.cni_subnet),
            namespace=self.namespace,
            records=self.records,
            files_dir=self._files_dir,
            get_container=self._get_container,
        )
        """Published ports and the CNI bridge of workloads without host networking."""
        self.tasks = Tasks(
            client=lambda: self._c,
            pump=lambda: self._pump,
            network=self.network,
            snapshotter=self.snapshotter,
            runc_root=self._runc_root,
            files_dir=self._files_dir,
            logs_dir=self._logs_dir,
        )
        """The workloads' containerd tasks: launch, stop, kill, delete."""

    # ------------------------------------------------------------------ plumbing

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking ``fn`` on the engine's thread pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    @property
    def max_receive_message_bytes(self) -> int:
        """The largest gRPC reply accepted from containerd (option ``grpcMaxReceiveBytes``)."""
        return int(self.options.grpc_max_receive_bytes)

    @property
    def _c(self) -> Client:
        if self.client is None:
            raise EngineError("the containerd engine is not started: call start() first")
        return self.client

    @property
    def _img(self) -> ImageStore:
        if self.images is None:
            raise EngineError("the containerd engine is not started: call start() first")
        return self.images

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    def _unavailable(self, error: BaseException, what: str) -> EngineError:
        address = self.client.address if self.client else "?"
        if is_unavailable(error):
            return EngineError(f"{what}: containerd at {address} does not answer ({details(error)}); is it running?")
        return EngineError(f"{what}: {details(error)}")

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect to containerd (or start the embedded one), then recover workloads."""
        self._loop = asyncio.get_running_loop()
        for d in (self.records.directory, self._files_dir, self._logs_dir, self._runc_root):
            d.mkdir(parents=True, exist_ok=True)
        address = await self._run(self._choose_address)
        self.client = Client(address, self.namespace, self.max_receive_message_bytes)
        try:
            await self._run(self.client.wait_ready, self.start_timeout_s)
        except RpcError as error:
            raise EngineError(
                f"containerd at {address} does not answer ({details(error)}); check containerEngineUrl "
                "or leave it unset to use the embedded containerd"
            ) from error
        self.images = ImageStore(self.client, self.snapshotter)
        self._pump = LogPump(self.log_max_bytes, self.log_max_files)
        self.records.load()
        self.task_events.start()
        if not await self._run(self.task_events.subscribed.wait, self.start_timeout_s):
            log.warning("containerd's event stream did not come up in %.0fs; exits may be missed", self.start_timeout_s)
        await self._reconcile()

    def _choose_address(self) -> str:
        if self.context.url:
            return self.context.url
        embedded = self.embedded_mode
        if embedded is False:
            return f"unix://{self.default_socket}"
        if embedded is not True and Path(self.default_socket).exists():
            probe = Client(f"unix://{self.default_socket}", self.namespace)
            try:
                probe.ping(0.5)
                return probe.address
            except RpcError:
                pass
            finally:
                probe.close()
        self.daemon = EmbeddedContainerd(
            self.containerd_binary,
            self.context.data_dir,
            self.context.run_dir,
            self.context.log_dir,
            on_restart=self._on_daemon_restart,
        )
        self.daemon.start()
        self.daemon.wait_socket(self.start_timeout_s)
        return self.daemon.address

    async def close(self) -> None:
        """Stop the event stream, health checks, log pump, and the embedded containerd.

        Workloads keep running (as with any engine when the agent stops); a new
        engine instance picks them up again.
        """
        self._closing.set()
        for task in [*self.restarts.tasks(), *self.health.tasks()]:
            task.cancel()
        if self._reconcile_task is not None:
            self._reconcile_task.cancel()
        await self._run(self.task_events.stop, 5)
        if self._pump is not None:
            await self._run(self._pump.close)
        if self.client is not None:
            await self._run(self.client.close)
        if self.daemon is not None:
            await self._run(self.daemon.stop)
        self.subscribers.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ images

    async def pull(self, reference: str, auth: RegistryAuth | None = None) -> str | None:
        """Pull ``reference`` client-side into containerd; return the image ID (config digest)."""
        try:
            _ref.parse(reference)
        except ValueError as error:
            raise ImageNotFoundError(str(error)) from error
        try:
            return await self._run(self._img.pull, reference, auth)
        except RpcError as error:
            raise self._unavailable(error, f"pulling {reference!r}") from error

    async def image_digest(self, reference: str) -> str | None:
        """The image ID (config digest) of the local image ``reference``, or ``None``."""
        try:
            name = _ref.normalize(reference)
        except ValueError:
            return None

        def lookup() -> str | None:
            image = self._img.get(name)
            return None if image is None else self._img.config_digest(image)

        try:
            return await self._run(lookup)
        except RpcError as error:
            if is_not_found(error):
                return None
            raise self._unavailable(error, f"looking up image {reference!r}") from error

    async def load_image_archive(self, path: Path) -> LoadResult:
        """Import a docker-archive or OCI-layout tarball into the namespace."""
        try:
            names = await self._run(self._img.load_archive, Path(path))
        except RpcError as error:
            raise self._unavailable(error, f"importing {path}") from error
        return LoadResult(tuple(names))

    async def workload_addresses(self) -> dict[str, str]:
        """Workloads' bridge addresses, from the CNI results their records keep."""
        found: dict[str, str] = {}
        for name in list(self.records):
            record = self.records.get(name)
            address = self.network.cni.address(record.cni) if record is not None and record.cni else None
            if address:
                found[name] = address
        return found

    async def storage_root(self) -> Path | None:
        """The embedded containerd's root, or the external one's (option ``storageRoot``)."""
        return self.daemon.root if self.daemon is not None else Path(self.options.storage_root)

    async def host_address(self) -> str | None:
        """The CNI bridge's gateway: the first address of its subnet (host-local's default)."""
        import ipaddress

        return str(next(ipaddress.ip_network(self.network.cni.subnet, strict=False).hosts()))

    async def usage(self, names: Collection[str]) -> dict[str, ResourceUsage]:
        """CPU and memory of the running workloads among ``names``, from their tasks' cgroups."""
        pids = {n: r.pid for n in names if (r := self.records.get(n)) is not None and r.running and r.pid > 0}

        def read() -> dict[str, ResourceUsage]:
            found = {n: usage_of_pid(pid) for n, pid in pids.items()}
            return {n: u for n, u in found.items() if u is not None}

        return await self._run(read) if pids else {}

    async def prune_images(self, keep: Collection[str] = ()) -> PruneResult:
        """Delete every image of the namespace that no container uses, except ``keep``."""
        keep_names = set()
        for ref in keep:
            with contextlib.suppress(ValueError):
                keep_names.add(_ref.normalize(ref))

        def prune() -> PruneResult:
            used = {c.image for c in self._list_containers(managed_only=False)}
            removed: list[str] = []
            reclaimed = 0
            for image in self._img.list():
                if image.name in used or image.name in keep_names:
                    continue
                with contextlib.suppress(Exception):
                    manifest = json.loads(self._c.read_blob(image.target.digest))
                    reclaimed += sum(int(layer.get("size", 0)) for layer in manifest.get("layers", []))
                self._img.delete(image.name)
                removed.append(image.name)
            return PruneResult(tuple(removed), reclaimed)

        try:
            return await self._run(prune)
        except RpcError as error:
            raise self._unavailable(error, "pruning images") from error

    async def prune_volumes(self, keep: Collection[str] = ()) -> list[str]:
        """Remove the named volumes (folders under the engine's volumes dir) no container mounts, except ``keep``."""

        def prune() -> list[str]:
            if not self._volumes_dir.is_dir():
                return []
            used = set()
            for container in self._list_containers(managed_only=False):
                with contextlib.suppress(ValueError, AttributeError):
                    for mount in json.loads(container.spec.value).get("mounts") or []:
                        source = Path(str(mount.get("source", "")))
                        if source.is_relative_to(self._volumes_dir):
                            used.add(source.relative_to(self._volumes_dir).parts[0])
            removed = []
            for volume in sorted(self._volumes_dir.iterdir()):
                if volume.name in used or volume.name in keep or not volume.is_dir():
                    continue
                shutil.rmtree(volume, ignore_errors=True)
                removed.append(volume.name)
            return removed

        try:
            return await self._run(prune)
        except RpcError as error:
            raise self._unavailable(error, "pruning volumes") from error

    # ------------------------------------------------------------------ containers

    def _list_containers(self, managed_only: bool = True) -> list[Any]:
        filters = [f'labels."{MANAGED_LABEL}"=="{self.context.agent_id}"'] if managed_only else []
        resp = self._c.containers.List(
            containers_pb2.ListContainersRequest(filters=filters), metadata=self._c.md(), timeout=30
        )
        return list(resp.containers)

    def _get_container(self, name: str) -> Any | None:
        """The container ``name`` if it exists *and* is managed by this agent."""
        if not ID_RE.match(name):
            return None
        try:
            resp = self._c.containers.Get(
                containers_pb2.GetContainerRequest(id=name), metadata=self._c.md(), timeout=30
            )
        except RpcError as error:
            if is_not_found(error):
                return None
            raise
        container = resp.container
        if container.labels.get(MANAGED_LABEL) != self.context.agent_id:
            return None
        return container

    async def create(self, spec: WorkloadSpec) -> WorkloadInfo:
        """Create the container (snapshot + OCI spec + labels); the task comes with start."""
        if not ID_RE.match(spec.name) or len(spec.name) > 76:
            raise EngineError(
                f"workload name {spec.name!r} is not a valid containerd id (letters, digits, '.', '_', '-'; "
                "starting and ending with a letter or digit)"
            )
        try:
            image_name = _ref.normalize(spec.image)
        except ValueError as error:
            raise ImageNotFoundError(f"workload {spec.name!r}: {error}") from error
        async with self._lock(spec.name):
            try:
                container, mounts = await self._run(self.containers.build, spec, image_name)
            except RpcError as error:
                raise self._unavailable(error, f"creating workload {spec.name!r}") from error
            self._fresh[spec.name] = (container, mounts)  # the first start needs no task lookup nor Mounts call
            self.records.new(spec.name)
            await self._run(self.records.save, spec.name)
            return self._info(container, None)

    # ------------------------------------------------------------------ tasks

    async def start_workload(self, name: str) -> None:
        """Start the workload's task (a no-op if it runs); clears a user stop."""
        async with self._lock(name):
            fresh = self._fresh.get(name)
            container = fresh[0] if fresh is not None else await self._run(self._get_container, name)
            if container is None:
                raise WorkloadNotFoundError(f"no managed workload named {name!r}")
            self.restarts.cancel(name)
            rec = self.records.of(name)
            rec.user_stopped = False
            await self._launch(container)

    async def _launch(self, container: Any) -> None:
        """Create and start a task for ``container`` (lock held by the caller)."""
        name = container.id
        rec = self.records.of(name)
        try:
            fresh = self._fresh.pop(name, None)
            launched = await self._run(self.tasks.launch, container, fresh[1] if fresh is not None else None)
        except RpcError as error:
            raise self._unavailable(error, f"starting workload {name!r}") from error
        if launched is None:
            return  # already running
        rec.pid, started = launched
        rec.started_at = _iso(started)
        if (name, rec.pid) not in self._seen_exits:  # it may have exited already
            rec.running = True
            rec.finished_at = None
            rec.exit_code = None
            rec.oom_killed = False
        await self._run(self.records.save, name)
        health = container.labels.get(L_HEALTH)
        if health:
            self.health.start(name, HealthCheck(**{**json.loads(health), "test": tuple(json.loads(health)["test"])}))

    async def stop(self, name: str, timeout_s: float = 10.0) -> None:
        """Stop the workload; its restart policy does not bring it back."""
        async with self._lock(name):
            container = await self._run(self._get_container, name)
            if container is None:
                raise WorkloadNotFoundError(f"no managed workload named {name!r}")
            rec = self.records.of(name)
            rec.user_stopped = True
            self.restarts.cancel(name)
            self.health.stop(name)
            try:
                status = await self._run(self.tasks.stop, name, timeout_s)
            except RpcError as error:
                raise self._unavailable(error, f"stopping workload {name!r}") from error
            if rec.running or status is not None:
                rec.running = False
                if status is not None:
                    rec.exit_code = status
                rec.finished_at = rec.finished_at or _iso(_now())
            await self._run(self.records.save, name)

    async def remove(self, name: str) -> None:
        """Stop and remove the workload, its snapshot, files and log. Absent is fine."""
        async with self._lock(name):
            container = await self._run(self._get_container, name)
            self.restarts.cancel(name)
            self.health.stop(name)
            if container is None:
                return
            rec = self.records.of(name)
            rec.user_stopped = True

            def remove_sync() -> None:
                self.tasks.kill_and_delete(name)
                self.network.teardown(name)
                try:
                    self._c.containers.Delete(
                        containers_pb2.DeleteContainerRequest(id=name), metadata=self._c.md(), timeout=30
                    )
                except RpcError as error:
                    if not is_not_found(error):
                        raise
                self.containers.remove_snapshot(name)
                import shutil  # only here: it pulls in bz2/lzma

                shutil.rmtree(self._files_dir / name, ignore_errors=True)
                self.records.delete_file(name)
                remove_logs(self._logs_dir / f"{name}.log")

            try:
                await self._run(remove_sync)
            except RpcError as error:
                raise self._unavailable(error, f"removing workload {name!r}") from error
            self.records.drop(name)
            self.health.forget(name)
            self._fresh.pop(name, None)

    # ------------------------------------------------------------------ inspect

    def _info(self, container: Any, task: Any | None) -> WorkloadInfo:
        name = container.id
        return workload_info(
            container,
            task,
            self.records.get(name) or Record(),
            health=self.health.of(name),
            restarting=self.restarts.pending(name),
        )

    async def inspect(self, name: str) -> WorkloadInfo | None:
        """Report on the managed workload ``name``, or ``None``."""

        def inspect_sync() -> WorkloadInfo | None:
            container = self._get_container(name)
            if container is None:
                return None
            return self._info(container, self.tasks.get(name))

        try:
            return await self._run(inspect_sync)
        except RpcError as error:
            raise self._unavailable(error, f"inspecting workload {name!r}") from error

    async def list_managed(self) -> list[WorkloadInfo]:
        """Every container carrying this agent's managed label."""

        def list_sync() -> list[WorkloadInfo]:
            containers = self._list_containers()
            tasks = self.tasks.all()
            return [self._info(c, tasks.get(c.id)) for c in containers]

        try:
            return await self._run(list_sync)
        except RpcError as error:
            raise self._unavailable(error, "listing workloads") from error

    # ------------------------------------------------------------------ logs

    async def logs(self, name: str, *, tail: int | None = None, follow: bool = False) -> AsyncIterator[LogLine]:
        """Lines from the workload's log file; with ``follow``, new ones until it stops."""
        if await self.inspect(name) is None:
            raise WorkloadNotFoundError(f"no managed workload named {name!r}")
        reader = LogReader(self._logs_dir / f"{name}.log")
        lines = [LogLine(stream, text) for stream, text in await self._run(reader.read_all)]
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        for line in lines:
            yield line
        if not follow:
            return
        idle_checks = 0
        while not self._closing.is_set():
            lines = [LogLine(stream, text) for stream, text in await self._run(reader.read_new)]
            for line in lines:
                yield line
            if lines:
                idle_checks = 0
                continue
            info = await self.inspect(name)
            if info is None or info.state not in (
                WorkloadState.RUNNING,
                WorkloadState.RESTARTING,
                WorkloadState.CREATED,
            ):
                idle_checks += 1
                if idle_checks > 3:  # the pump flushes within a few ticks of the exit
                    return
            await asyncio.sleep(0.1)

    # ------------------------------------------------------------------ events

    async def events(self) -> AsyncIterator[EngineEvent]:
        """Start/die/oom/health events of managed workloads, until cancelled or closed."""
        async for event in self.subscribers.events():
            yield event

    def _emit(self, event: EngineEvent) -> None:
        self.subscribers.emit(event)

    def _call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(fn, *args)

    def _managed(self, name: str) -> bool:
        return name in self.records

    def _on_event(self, kind: EventKind, name: str, when: datetime, exit_code: int | None) -> None:
        if self._managed(name):
            self._emit(EngineEvent(kind, name, when, exit_code=exit_code))

    def _on_oom(self, name: str, when: datetime) -> None:
        rec = self.records.get(name)
        if rec is None or rec.oom_killed:
            return  # already reported for this run (by the event or by the cgroup, see _after_exit)
        rec.oom_killed = True
        self._emit(EngineEvent(EventKind.OOM, name, when))

    def _on_exit(self, name: str, pid: int, status: int, when: datetime) -> None:
        rec = self.records.get(name)
        if rec is None or (name, pid) in self._seen_exits:
            return
        self._seen_exits.add((name, pid))
        rec.exit_code = status
        rec.finished_at = when.isoformat()
        rec.running = False
        self.health.stop(name)
        self._emit(EngineEvent(EventKind.DIE, name, when, exit_code=status))
        task = asyncio.ensure_future(self._after_exit(name, status))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _after_exit(self, name: str, status: int) -> None:
        """Apply the restart policy to a workload whose task exited."""
        container = await self._run(self._get_container, name)
        if container is None:
            return
        rec = self.records.of(name)
        if (
            status == 128 + signal.SIGKILL
            and not rec.oom_killed
            and await self._run(cgroup_oom_kills, self.cgroup_parent, self.namespace, name)
        ):
            self._on_oom(name, _now())
        await self._run(self.records.save, name)
        if rec.user_stopped:
            return  # stop/remove delete the task and its network themselves
        if not should_restart(container, rec, status):
            async with self._lock(name):
                if not rec.running:  # unless a new task was started meanwhile
                    with contextlib.suppress(RpcError):
                        await self._run(self.network.teardown, name)
            return
        self.restarts.schedule(name, rec)

    # ------------------------------------------------------------------ recovery

    def _on_daemon_restart(self) -> None:
        """Supervisor thread: the embedded containerd came back."""
        log.info("embedded containerd restarted; reconciling workloads")

    def _schedule_reconcile(self) -> None:
        if self._reconcile_task is None or self._reconcile_task.done():
            self._reconcile_task = asyncio.ensure_future(self._reconcile())

    async def _reconcile(self) -> None:
        """After (re)connecting: reattach logs of running tasks, handle exits we missed.

        A task that still runs is *recovered* (same process; its log FIFOs are
        reopened). A workload the plugin had running whose task is gone or
        stopped is treated as exited: its restart policy decides whether it is
        started again.
        """
        try:
            containers = await self._run(self._list_containers)
            tasks = await self._run(self.tasks.all)
        except RpcError as error:
            log.warning("reconcile after reconnect failed: %s", details(error))
            return
        for container in containers:
            name = container.id
            rec = self.records.of(name)
            task = tasks.get(name)
            if task is not None and task.status in (2, 4, 5):
                if not rec.running or rec.pid != task.pid or not rec.started_at:
                    if rec.pid != task.pid or not rec.started_at:
                        # a start whose record was never saved (the agent killed in between): the
                        # process's own start time, the same for every reader, not "now"
                        rec.started_at = _iso(process_started(int(task.pid)) or _now())
                    rec.running, rec.pid = True, int(task.pid)
                    await self._run(self.records.save, name)
                await self._run(self.tasks.reattach_logs, name, dict(container.labels))
                self.network.adopt(container)
                health = container.labels.get(L_HEALTH)
                if health and not self.health.checking(name):
                    data = json.loads(health)
                    self.health.start(name, HealthCheck(**{**data, "test": tuple(data["test"])}))
                continue
            if rec.running:
                status = int(task.exit_status) if task is not None else 255
                self._on_exit(name, rec.pid, status, _now())


# END
