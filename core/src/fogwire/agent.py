"""``fogwire.Agent``: the node agent as a class you can run inside your own asyncio program.

Long on purpose: the Agent's public API and its loops share the one Running object;
the parts that stand alone live beside it (converge.py, reconcile.py, control.py).

::

    agent = fogwire.Agent(engine="docker", source="file",
                          source_options={"path": "/etc/fogwire/desired.yaml"},
                          paths=Paths(...))
    task = asyncio.create_task(agent.run())
    ...
    print(await agent.status())
    agent.stop()
    await task

``fogwire daemon`` is a thin shell around this class: it builds one from the
agent config (:meth:`Agent.from_config`) and runs it until SIGTERM. Stopping
leaves every workload running; the next start adopts them.

The parts that exist only while the agent runs (engine, store, reconciler, source,
sinks, services, the desired state) live in one :class:`Running` object, made by
:meth:`Agent.session` and gone after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import cattrs
import yaml

from fogwire.api.admin import AdminRoutes
from fogwire.api.app import ApiApp
from fogwire.api.metrics import Metrics
from fogwire.converge import SinkSet
from fogwire.convert import to_camel
from fogwire.engine import Engine, EngineContext, EventKind, Health, LogLine, ResourceUsage
from fogwire.errors import ConfigError, ConflictError, FogwireError, NotFoundError, PluginLoadError, SourceError
from fogwire.model.agent_config import AgentConfig, Profile
from fogwire.model.desired import DesiredState, assemble
from fogwire.paths import Paths, default_paths, replace_file
from fogwire.payloads import DESIRED_STATE, IOFOG_DOCUMENTS, Documents
from fogwire.plugins import Kind, PluginHost
from fogwire.reconcile import MicroserviceStatus, Outcome, PassResult, Plan, Reconciler
from fogwire.resolve import device_arch
from fogwire.services import AgentService, ServiceContext
from fogwire.sinks import ReloadSink, SinkContext
from fogwire.sources import ConfigSnapshot, ConfigSource, SourceContext
from fogwire.store import Store
from fogwire.supervise import jittered, sd_notify, watchdog_interval

if TYPE_CHECKING:
    from fogwire.api.server import HttpServer
    from fogwire.reconcile import SpecAmender

log = logging.getLogger(__name__)

SinkSpec = str | ReloadSink[DesiredState] | tuple[str, Mapping[str, Any]]
"""A reload sink given to :class:`Agent`: a plugin name, a name with options, or a sink object."""

AGENT = "the agent (fogwire daemon)"
"""How load-time errors name the agent as the consumer of a source or sink."""


@attrs.define
class Running:
    """The agent's parts while it runs: made by :meth:`Agent.session`, gone after it.

    ``desired`` is the desired state the reconciler works towards; ``documents``
    and ``applied_digest`` are the documents it came from and their digest.
    """

    engine: Engine
    store: Store
    reconciler: Reconciler
    source: ConfigSource[Documents] | None
    sinks: SinkSet[DesiredState]
    services: list[AgentService]
    desired: DesiredState = attrs.field(factory=DesiredState)
    documents: Documents = attrs.field(factory=list)
    applied_digest: str | None = None
    origin: str = "desired state"
    """Where ``documents`` came from (a file, the API, the controller)."""
    outcomes: dict[str, tuple[int, Outcome]] = attrs.field(factory=dict)
    """Microservice → (serial of the pass, outcome) of the last action any pass took on it."""


LIVE_KEYS = (
    "pruning_frequency",
    "resync_seconds",
    "watchdog_enabled",
    "log_level",
    "catalog_family",
    "agent_name",
    "disk_limit",
    "memory_limit",
    "cpu_limit",
    "gps_mode",
    "gps_device",
    "gps_scan_frequency",
    "gps_coordinates",
    "edge_guard_frequency",
    "secure_mode",
    "dev_mode",
    "time_zone",
    "upgrade_scan_frequency",
    "workload_log_size",
    "available_disk_threshold",
    "cdi_spec_dirs",
)
"""Profile keys a config reload applies to the running agent; the others need a restart."""


EVENT_RECHECK_S = (1.0, 3.0)
"""After an exit event, passes run again this long after it (an engine's list may lag behind its events)."""


class _Handle:
    """What an :class:`~fogwire.services.AgentService` sees of the agent."""

    def __init__(self, agent: Agent, running: Running) -> None:
        self._agent = agent
        self._running = running

    @property
    def engine(self) -> Engine:
        """The agent's started engine."""
        return self._running.engine

    async def retry_failed(self) -> list[str]:
        """Clear failed microservices' backoff and wake a pass."""
        cleared = await self._running.reconciler.retry_failed()
        self._agent._wake_up(changed=True)
        return cleared

    async def add_event(self, kind: str, detail: str) -> None:
        """Record an event for ``fogwire status``."""
        await self._running.store.call(self._running.store.add_event, None, kind, detail)

    def statuses(self) -> list[MicroserviceStatus]:
        """Each microservice as last seen, without asking the engine."""
        return self._running.reconciler.statuses(self._running.desired)

    async def prune(self) -> list[str]:
        """Prune unused images now."""
        return await self._agent.prune()

    async def usage(self, names: Collection[str]) -> dict[str, ResourceUsage]:
        """CPU and memory of running workloads, from the engine."""
        return await self._running.engine.usage(names)

    def set_pruning_frequency(self, hours: int) -> None:
        """Prune every ``hours`` hours from now on (0: never)."""
        self._agent.set_pruning_frequency(hours)

    @property
    def api(self) -> ApiApp:
        """The agent API's route table."""
        return self._agent.api

    @property
    def metrics(self) -> Metrics:
        """The agent's metrics."""
        return self._agent.metrics

    @property
    def desired(self) -> DesiredState:
        """The desired state the agent works towards now."""
        return self._running.desired

    def add_desired_listener(self, listener: Callable[[DesiredState], None]) -> None:
        """Call ``listener`` with every desired state the agent adopts."""
        self._agent.add_desired_listener(listener)

    def add_spec_amender(self, amender: SpecAmender) -> None:
        """Pass every resolved workload spec through ``amender`` (call while the service is built)."""
        self._running.reconciler.amenders.append(amender)
        self._running.reconciler.invalidate()

    def respecify(self) -> None:
        """An amender's output changed: resolve again and let a pass act on the difference."""
        self._running.reconciler.invalidate()
        self._agent._wake_up(changed=True)


class Agent:
    """Keeps an engine's managed workloads equal to a desired state, until stopped.

    :param engine: an engine plugin name (``"containerd"``, ``"docker"``, …) or an
        :class:`~fogwire.engine.Engine` object (the agent starts and closes it).
    :param source: a config source name (``"file"``), a
        :class:`~fogwire.sources.ConfigSource` producing ioFog documents, or ``None``
        to take the desired state only from :meth:`apply` (and the state last applied).
    :param sinks: reload sinks (names, names with options, or objects) given each new
        desired state; one that fails is retried with backoff until it succeeds.
    :param services: agent services (plugin names with options) run beside the loops.
    :param paths: where state, logs and the control socket live.
    :param profile: the agent-config profile supplying the defaults of the rest.
    :param api_socket: serve the agent API (what the CLI talks to) on ``paths.api_socket``.
    :param rollback_grace_s: how long a replacement must hold up before it is kept.

    Plugins named here are loaded from ``plugins`` (a :class:`PluginHost`); one that
    can't be loaded or built raises :class:`~fogwire.errors.PluginLoadError` naming
    its distribution when :meth:`session` starts.
    """

    def __init__(
        self,
        *,
        engine: str | Engine | None = None,
        source: str | ConfigSource[Documents] | None = None,
        source_options: Mapping[str, Any] | None = None,
        sinks: Sequence[SinkSpec] | None = None,
        services: Sequence[tuple[str, Mapping[str, Any]]] | None = None,
        paths: Paths | None = None,
        profile: Profile | None = None,
        plugins: PluginHost | None = None,
        api_socket: bool = True,
        rollback_grace_s: float = 10.0,
        concurrency: int = 8,
        max_failures: int = 5,
        backoff_cap_s: float = 60.0,
        sink_timeout_s: float = 30.0,
        sink_backoff_base_s: float = 1.0,
        stuck_after_s: float = 600.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.profile = profile or Profile()
        self.paths = paths or default_paths()
        self.plugins = plugins or PluginHost()
        self.environ = dict(os.environ if environ is None else environ)
        self._engine_spec = engine if engine is not None else (self.profile.container_engine or "containerd")
        if source is None and self.profile.config_source is not None:
            source = self.profile.config_source.name
            source_options = {**self.profile.config_source.options, **(source_options or {})}
        self._source_spec = source
        self._source_options = dict(source_options or {})
        if sinks is None:
            sinks = [(s.name, s.options) for s in self.profile.reload_sinks]
        self._sink_specs = list(sinks)
        if services is None:
            services = [(s.name, s.options) for s in self.profile.services]
        self._service_specs = list(services)
        self.api_socket = api_socket
        self.rollback_grace_s = rollback_grace_s
        self.concurrency = concurrency
        self.max_failures = max_failures
        self.backoff_cap_s = backoff_cap_s
        self.sink_timeout_s = sink_timeout_s
        self.sink_backoff_base_s = sink_backoff_base_s
        self.stuck_after_s = stuck_after_s
        self.arch = device_arch(self.profile.arch)
        self.started = asyncio.Event()
        self.last_pass: PassResult | None = None
        self._converter: cattrs.Converter | None = None
        self._running: Running | None = None
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._changed = False
        self._pass_waiters: list[tuple[int, asyncio.Future[PassResult]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._prune_task: asyncio.Task[None] | None = None
        self._pruning_hours = int(self.profile.pruning_frequency)
        self._desired_listeners: list[Callable[[DesiredState], None]] = []
        self.metrics = Metrics()
        """The agent's metrics (``GET /metrics``); services and sources add their own."""
        self.api = ApiApp(self._admin_token, self.metrics)
        """The agent API's routes; plugins add theirs (the device API serves it on TCP too)."""
        AdminRoutes(self).install(self.api)
        self._admin_token_value: str | None = None
        self._passes = self.metrics.counter("fogwire_reconcile_passes_total", "reconcile passes by result", ("result",))
        self._pass_seconds = self.metrics.histogram(
            "fogwire_reconcile_pass_seconds", "how long each reconcile pass took"
        )
        self._actions = self.metrics.counter(
            "fogwire_reconcile_actions_total", "reconcile actions by kind and result", ("kind", "result")
        )
        self._source_updates = self.metrics.counter(
            "fogwire_source_updates_total", "desired states the config source delivered, by result", ("result",)
        )
        self._source_errors = self.metrics.counter(
            "fogwire_source_errors_total", "config-source fetches and watches that failed"
        )
        self.metrics.gauge(
            "fogwire_workloads", "managed workloads by state (as last listed)", self._workloads_by_state, ("state",)
        )

    @classmethod
    def from_config(cls, config: AgentConfig, paths: Paths, **kwargs: Any) -> Agent:
        """An agent for the current profile of ``config`` (what ``fogwire daemon`` runs)."""
        return cls(profile=config.profile, paths=paths, **kwargs)

    # -- the parts ------------------------------------------------------------------------

    @property
    def converter(self) -> cattrs.Converter:
        """The one converter, made once the selected plugins are loaded (so their types are on it).

        A selected plugin that can't be loaded is left to :meth:`session` to report;
        the converter is still made from what did load, so documents validate without
        an engine (``fogwire validate``, ``apply`` to a daemon).
        """
        if self._converter is None:
            self._load_selected_plugins()
            self._converter = self.plugins.make_converter()
        return self._converter

    def _load_selected_plugins(self) -> None:
        selected: list[tuple[Kind, object]] = [("engine", self._engine_spec), ("config_source", self._source_spec)]
        selected += [("reload_sink", s if isinstance(s, (str, ReloadSink)) else s[0]) for s in self._sink_specs]
        selected += [("agent_service", name) for name, _ in self._service_specs]
        for kind, name in selected:
            if isinstance(name, str):
                with contextlib.suppress(PluginLoadError):
                    self.plugins.resolve(kind, name)

    @property
    def running(self) -> Running:
        """The running parts; :class:`FogwireError` outside :meth:`session`."""
        if self._running is None:
            raise FogwireError("the agent is not running (use it inside Agent.session() or Agent.run())")
        return self._running

    @property
    def engine(self) -> Engine | None:
        """The started engine while running, else ``None``."""
        return self._running.engine if self._running else None

    @property
    def store(self) -> Store | None:
        """The state store while running, else ``None``."""
        return self._running.store if self._running else None

    @property
    def reconciler(self) -> Reconciler | None:
        """The reconciler while running, else ``None``."""
        return self._running.reconciler if self._running else None

    @property
    def desired(self) -> DesiredState | None:
        """The desired state while running, else ``None``."""
        return self._running.desired if self._running else None

    def _make_engine(self) -> Engine:
        if isinstance(self._engine_spec, Engine):
            return self._engine_spec
        context = EngineContext(
            agent_id=self.profile.agent_id,
            data_dir=self.paths.state_dir / "engine",
            run_dir=self.paths.run_dir,
            log_dir=self.paths.log_dir,
            url=self.profile.container_engine_url,
            options=dict(self.profile.engine_options),
            converter=self.converter,
        )
        factory = self.plugins.engine_factory(self._engine_spec)
        return self.plugins.build("engine", self._engine_spec, factory, context)

    def _make_source(self) -> ConfigSource[Documents] | None:
        if self._source_spec is None or isinstance(self._source_spec, ConfigSource):
            return self._source_spec
        name = self._source_spec
        factory = self.plugins.source_factory(name, IOFOG_DOCUMENTS, AGENT)
        context = SourceContext(
            self.paths.state_dir,
            self.paths.run_dir,
            self._source_options,
            self.environ,
            self.converter.unstructure(self.profile),
            self.converter,
        )
        return self.plugins.build("config_source", name, factory, context)

    def _make_sinks(self) -> list[ReloadSink[DesiredState]]:
        sinks: list[ReloadSink[DesiredState]] = []
        for spec in self._sink_specs:
            if isinstance(spec, ReloadSink):
                sinks.append(spec)
                continue
            name, options = (spec, {}) if isinstance(spec, str) else spec
            factory = self.plugins.sink_factory(name, DESIRED_STATE, AGENT)
            context = SinkContext(self.paths.state_dir, self.paths.run_dir, dict(options), self.environ, self.converter)
            sinks.append(self.plugins.build("reload_sink", name, factory, context))
        return sinks

    def _make_services(self, handle: _Handle) -> list[AgentService]:
        services = []
        for name, options in self._service_specs:
            factory = self.plugins.service_factory(name)
            context = ServiceContext(
                self.paths.state_dir, self.paths.run_dir, handle, dict(options), self.environ, self.converter
            )
            services.append(self.plugins.build("agent_service", name, factory, context))
        return services

    @property
    def source_file(self) -> Path | None:
        """The file the ``file`` source watches, when that is the source."""
        source = self._running.source if self._running else None
        if source is not None and getattr(source, "name", "") == "file":
            path = getattr(source, "path", None)
            return Path(path) if path else None
        if self._source_spec == "file" and self._source_options.get("path"):
            return Path(str(self._source_options["path"]))
        return None

    # -- running ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Agent]:
        """Open the store, start the engine and load the desired state, without the loops.

        :meth:`run` runs inside a session; the CLI uses one alone (``fogwire plan``,
        ``status`` and ``logs`` when no daemon runs). Nothing is changed on entry.
        Every selected plugin is loaded and built before anything starts, so a plugin
        that can't be is a :class:`~fogwire.errors.PluginLoadError` up front.
        """
        self._loop = asyncio.get_running_loop()
        engine = self._make_engine()
        source = self._make_source()
        sink_set = SinkSet(
            self._make_sinks(),
            timeout_s=self.sink_timeout_s,
            backoff_base_s=self.sink_backoff_base_s,
            backoff_cap_s=self.backoff_cap_s,
        )
        self.paths.ensure()
        store = await asyncio.to_thread(Store.open, self.paths.database)
        closables: list[Any] = [source, *(slot.sink for slot in sink_set.slots)]
        try:
            await engine.start()
            reconciler = Reconciler(
                engine,
                store,
                arch=self.arch,
                concurrency=self.concurrency,
                max_failures=self.max_failures,
                backoff_cap_s=self.backoff_cap_s,
                rollback_grace_s=self.rollback_grace_s,
                default_log_mib=int(self.profile.workload_log_size),
                cdi_spec_dirs=tuple(self.profile.cdi_spec_dirs),
            )
            await reconciler.load()
            running = Running(engine, store, reconciler, source, sink_set, [])
            running.services = self._make_services(_Handle(self, running))
            closables += running.services
            self._running = running
            for service in running.services:
                await service.start()
            await self._initial_desired(running)
            yield self
        finally:
            self._running = None
            for closable in closables:
                if closable is not None:
                    try:
                        await closable.close()
                    except Exception:  # shutting down: log and go on
                        log.exception("closing %r failed", closable)
            try:
                await engine.close()
            except Exception:
                log.exception("closing the engine failed")
            await asyncio.to_thread(store.close)

    async def run(self) -> None:
        """Run until :meth:`stop`: start the engine, load the desired state, reconcile.

        The desired state comes from the config source; when it can't be reached (or
        holds an invalid state) the agent runs from the state last applied.
        """
        if self.api_socket:
            from fogwire.api.server import socket_alive

            if await asyncio.to_thread(socket_alive, self.paths.api_socket):
                # before the session: a second daemon must not touch the first one's engine, store or services
                raise FogwireError(f"another fogwire daemon is serving {self.paths.api_socket}; stop it first")
        async with self.session():
            running = self.running
            handle = _Handle(self, running)
            server = None
            tasks: list[asyncio.Task[Any]] = []
            try:
                try:
                    self._admin_token_value = await asyncio.to_thread(ensure_admin_token, self.paths.api_token_file)
                except OSError as error:  # an embedder's read-only config dir: the admin routes stay closed
                    log.warning("no API admin token (%s): the admin routes answer 401", error)
                if self.api_socket:
                    server = await self._serve_api_socket()
                self._loop_task = asyncio.create_task(self._reconcile_loop(running), name="fogwire-reconcile")
                tasks = [
                    asyncio.create_task(self._watch_source(running), name="fogwire-source"),
                    asyncio.create_task(self._watch_engine(running), name="fogwire-engine-events"),
                    asyncio.create_task(self._watchdog_loop(running), name="fogwire-watchdog"),
                ]
                self._prune_task = asyncio.create_task(self._prune_loop(), name="fogwire-prune")
                tasks.append(self._prune_task)
                tasks.append(asyncio.create_task(self._limits_loop(running), name="fogwire-limits"))
                tasks.append(asyncio.create_task(self._disk_pressure_loop(running), name="fogwire-disk-pressure"))
                self._report_keys_without_effect(running)
                if running.source is not None:
                    source = running.source
                    tasks.append(
                        asyncio.create_task(
                            self._keep_running(running, f"config source {source.name}", lambda: source.serve(handle)),
                            name="fogwire-source-serve",
                        )
                    )
                tasks += [
                    asyncio.create_task(
                        self._keep_running(running, f"agent service {s.name}", s.run), name=f"fogwire-service-{s.name}"
                    )
                    for s in running.services
                ]
                self._wake_up(changed=True)
                sd_notify("READY=1", self.environ)
                self.started.set()
                await self._stopping.wait()
            finally:
                sd_notify("STOPPING=1", self.environ)
                self.started.clear()
                everything = [*tasks, *(t for t in (self._loop_task, self._prune_task) if t is not None)]
                for task in everything:
                    task.cancel()
                await asyncio.gather(*everything, return_exceptions=True)
                for _, waiter in self._pass_waiters:
                    if not waiter.done():
                        waiter.set_exception(FogwireError("the agent stopped before the pass ran"))
                self._pass_waiters.clear()
                if server is not None:
                    await server.close()

    def stop(self) -> None:
        """Ask :meth:`run` to return. Workloads keep running. Safe from any thread or a signal handler."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopping.set)
        else:
            self._stopping.set()

    async def _initial_desired(self, running: Running) -> None:
        if running.source is not None:
            try:
                if await self._load_snapshot(running, await running.source.fetch(), initial=True):
                    return
            except (SourceError, ConfigError) as error:
                log.warning("config source unavailable at start (%s); using the state last applied", error)
                await running.store.call(running.store.add_event, None, "source-unavailable", str(error))
        applied = await running.store.call(running.store.load_applied)
        if applied is not None:
            try:
                running.desired = self._assemble(applied.documents, applied.origin)
                await self._push_volumes(running, running.desired)
                running.documents = applied.documents
                running.applied_digest = applied.digest
                running.origin = applied.origin
                self._notify_desired(running.desired)
                log.info("running from the desired state last applied (%s)", applied.origin)
            except ConfigError as error:
                log.error("the stored desired state no longer validates: %s", error)

    async def _load_snapshot(
        self, running: Running, snapshot: ConfigSnapshot[Documents], *, initial: bool = False
    ) -> bool:
        """Take a fetched snapshot as the desired state; ``False`` if unchanged or invalid."""
        if snapshot.digest == running.applied_digest:
            self._source_updates.inc(result="unchanged")
            return False
        documents = list(snapshot.payload)
        try:
            desired = self._assemble(documents, snapshot.origin)
        except ConfigError as error:
            self._source_updates.inc(result="rejected")
            log.error("new desired state rejected, keeping the last one:\n%s", error)
            await running.store.call(running.store.add_event, None, "config-rejected", str(error))
            if initial:
                raise
            return False
        await self._set_desired(running, desired, documents, snapshot.origin, snapshot.digest, "from")
        self._source_updates.inc(result="applied")
        return True

    async def _set_desired(
        self, running: Running, desired: DesiredState, documents: Documents, origin: str, digest: str, how: str
    ) -> int:
        """Save and adopt a new desired state; return the serial of the last pass that did not see it."""
        await self._push_volumes(running, desired)
        await running.store.call(running.store.save_applied, origin, digest, documents)
        running.desired, running.documents, running.applied_digest = desired, documents, digest
        running.origin = origin
        # No await between adopting the state and reading the serial: every later pass sees it.
        seen_before = running.reconciler.pass_serial
        await running.reconciler.note_desired(desired)  # a one-shot rebuild request is kept from its delivery
        await running.store.call(
            running.store.add_event, None, "desired-state", f"{len(desired.microservices)} microservices {how} {origin}"
        )
        self._notify_desired(desired)
        return seen_before

    async def _push_volumes(self, running: Running, desired: DesiredState) -> None:
        """Copy the folders of the Volumes for this node into place (:mod:`fogwire.volumes`), each with an event.

        A Volume that fails (its source is not here, a disk error) is an event and
        no reason to keep the desired state from being adopted.
        """
        from fogwire.volumes import push_volume, volume_label

        for volume in desired.volumes:
            try:
                copied = await asyncio.to_thread(push_volume, volume)
            except (OSError, FogwireError) as error:
                log.warning("%s not copied: %s", volume_label(volume), error)
                await running.store.call(running.store.add_event, None, "volume-failed", str(error))
                continue
            detail = f"{volume_label(volume)}: {copied} files from {volume.source} to {volume.destination}"
            await running.store.call(running.store.add_event, None, "volume-pushed", detail)

    def add_desired_listener(self, listener: Callable[[DesiredState], None]) -> None:
        """Call ``listener`` (on the loop, must not block) with every desired state the agent adopts."""
        self._desired_listeners.append(listener)

    def _notify_desired(self, desired: DesiredState) -> None:
        for listener in self._desired_listeners:
            try:
                listener(desired)
            except Exception:  # a listener's bug must not stop the agent adopting a state
                log.exception("desired-state listener %r failed", listener)

    def _wake_up(self, *, changed: bool = False) -> None:
        self._changed = self._changed or changed
        self._wake.set()

    def _next_wake(self, running: Running) -> float:
        timeout = jittered(self.profile.resync_seconds)
        for due in (running.reconciler.next_retry(), running.sinks.next_due(running.desired)):
            if due is not None:
                timeout = min(timeout, max(0.05, due - time.monotonic()))
        return timeout

    async def _reconcile_loop(self, running: Running) -> None:
        failures = 0
        reconciler = running.reconciler
        while not self._stopping.is_set():
            try:
                async with asyncio.timeout(self._next_wake(running)):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            changed, self._changed = self._changed, False
            reconciler.progress = time.monotonic()
            try:
                result = await reconciler.run_pass(running.desired, changed=changed)
            except asyncio.CancelledError:
                # Stopped, or restarted by the watchdog: the next loop (if any) serves the waiters.
                self._changed = self._changed or changed
                raise
            except Exception as error:  # e.g. the engine is down: retry later
                failures += 1
                log.warning("reconcile pass failed: %s", error)
                await asyncio.sleep(min(30.0, 0.5 * 2**failures))
                self._changed = self._changed or changed
                self._wake.set()
                continue
            failures = 0
            self.last_pass = result
            self._count_pass(result)
            for outcome in result.outcomes:
                running.outcomes[outcome.action.name] = (result.serial, outcome)
            if result.plan.actions:
                log.info(
                    "pass: %d actions (%d failed) in %.2fs",
                    len(result.plan.actions),
                    sum(not o.ok for o in result.outcomes),
                    result.duration_s,
                )
            await running.sinks.converge(running.desired, self._event_recorder(running))
            still_waiting = []
            for after, waiter in self._pass_waiters:
                if waiter.done():
                    continue
                if result.serial > after:
                    waiter.set_result(result)
                else:
                    still_waiting.append((after, waiter))
            self._pass_waiters = still_waiting

    def _count_pass(self, result: PassResult) -> None:
        self._passes.inc(result="ok" if all(o.ok for o in result.outcomes) else "failed")
        self._pass_seconds.observe(result.duration_s)
        for outcome in result.outcomes:
            self._actions.inc(kind=outcome.action.kind, result="ok" if outcome.ok else "failed")

    def _workloads_by_state(self) -> dict[tuple[str, ...], float]:
        counts: dict[tuple[str, ...], float] = {}
        running = self._running
        if running is not None:
            for workload in running.reconciler.last_actual.values():
                key = (workload.state.value,)
                counts[key] = counts.get(key, 0) + 1
        return counts

    def _admin_token(self) -> str | None:
        return self._admin_token_value

    async def _serve_api_socket(self) -> HttpServer:
        """Serve the API on the unix socket (mode 0600)."""
        from fogwire.api.server import HttpServer

        server = HttpServer(self.api, body_limit=self.api.body_limit, on_refusal=self.api.count_refusal)
        try:
            await server.listen_unix(self.paths.api_socket)
        except OSError as error:
            raise FogwireError(
                f"another fogwire daemon is serving {self.paths.api_socket}; stop it first ({error})"
            ) from error
        return server

    @staticmethod
    def _event_recorder(running: Running) -> Any:
        async def record(kind: str, detail: str) -> None:
            await running.store.call(running.store.add_event, None, kind, detail)

        return record

    async def _watch_source(self, running: Running) -> None:
        source = running.source
        if source is None:
            return
        delay = 1.0
        while not self._stopping.is_set():
            try:
                async for _notice in source.changes():
                    delay = 1.0
                    try:
                        if await self._load_snapshot(running, await source.fetch()):
                            self._wake_up(changed=True)
                    except SourceError as error:
                        self._source_errors.inc()
                        log.warning("config source: %s", error)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._source_errors.inc()
                log.warning("config source watch failed (%s); retrying in %.0fs", error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)

    async def _keep_running(self, running: Running, what: str, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` (a service, a source's serve); one that fails is logged, recorded and run again after a backoff."""
        delay = 1.0
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                await work()
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                reason = f"{type(error).__name__}: {error}"
                log.warning("%s failed (%s); running it again in %.0fs", what, reason, delay)
                await running.store.call(running.store.add_event, None, "service-failed", f"{what}: {reason}")
            if time.monotonic() - started > 60:
                delay = 1.0
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)

    async def _watch_engine(self, running: Running) -> None:
        delay = 1.0
        while not self._stopping.is_set():
            try:
                async for event in running.engine.events():
                    delay = 1.0
                    if event.kind in (EventKind.DIE, EventKind.OOM) or event.health is Health.UNHEALTHY:
                        self._wake_up()
                        # dockerd and podman send "die" before their container list says so: look again
                        loop = asyncio.get_running_loop()
                        for after in EVENT_RECHECK_S:
                            loop.call_later(after, self._wake_up)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("engine event stream failed (%s); retrying in %.0fs", error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)

    LIMITS_EVERY_S = 30.0
    """How often the agent's own limits (``diskLimit``, ``memoryLimit``, ``cpuLimit``) are checked."""

    def _report_keys_without_effect(self, running: Running) -> None:
        from fogwire.config import keys_without_effect

        keys = keys_without_effect(self.profile)
        if keys:
            log.info("config keys accepted with no effect on a fogwire node: %s", ", ".join(keys))

    async def _limits_loop(self, running: Running) -> None:
        from fogwire.limits import Limits, LimitWatch

        roots = [self.paths.state_dir, *([Path(self.profile.disk_directory)] if self.profile.disk_directory else [])]
        watch = LimitWatch(roots, lambda kind, detail: running.store.call(running.store.add_event, None, kind, detail))
        while True:
            await asyncio.sleep(self.LIMITS_EVERY_S)
            profile = self.profile
            limits = Limits(profile.disk_limit, profile.memory_limit, profile.cpu_limit)
            if not limits.any and not watch.over:
                continue
            try:
                figures = await asyncio.to_thread(watch.measure, limits)
                await watch.check(limits, figures)
            except Exception as error:  # a measurement that fails is no reason to stop the agent
                log.debug("checking the agent's limits failed: %s", error)

    DISK_PRESSURE_EVERY_S = 30.0
    """How often free space under the engine's storage is compared with ``availableDiskThreshold``."""
    DISK_PRESSURE_REPRUNE_S = 600.0
    """While free space stays under the threshold, the next pruning for it waits this long."""

    async def _disk_pressure_loop(self, running: Running) -> None:
        """Prune when free space under the engine's storage falls below ``availableDiskThreshold`` percent.

        As edgelet's threshold worker: images no desired microservice or managed
        workload uses go (:meth:`prune`), with an event ``disk-pressure`` saying how
        much was free; ``disk-pressure-cleared`` when free space is back over it.
        """
        from fogwire.limits import free_percent

        under = False
        last_pruned = -math.inf
        while True:
            await asyncio.sleep(self.DISK_PRESSURE_EVERY_S)
            threshold = int(self.profile.available_disk_threshold)
            try:
                root = await running.engine.storage_root() if threshold > 0 else None
                if root is None:
                    continue
                free = await asyncio.to_thread(free_percent, root)
                if free >= threshold:
                    if under:
                        under = False
                        detail = f"{free:.1f}% free under {root}, over {threshold}% again"
                        await running.store.call(running.store.add_event, None, "disk-pressure-cleared", detail)
                    continue
                if under and time.monotonic() - last_pruned < self.DISK_PRESSURE_REPRUNE_S:
                    continue
                under, last_pruned = True, time.monotonic()
                removed = await self.prune()
                after = await asyncio.to_thread(free_percent, root)
                detail = (
                    f"{free:.1f}% free under {root}, under {threshold}%: pruned {len(removed)} images, "
                    f"{after:.1f}% free now"
                )
                log.warning("disk pressure: %s", detail)
                await running.store.call(running.store.add_event, None, "disk-pressure", detail)
            except Exception as error:  # a failed look or prune is retried on the next round
                log.warning("checking free disk space failed: %s", error)

    async def reload_config(self) -> dict[str, Any]:
        """Read the config file again (SIGHUP, ``fogwire config set|switch``) and apply what can change live.

        A file that does not validate changes nothing (:class:`ConfigError`). Keys
        that change a running part (the engine, the source, sinks, services, paths)
        are listed as needing a restart and left as they are.
        """
        from fogwire.config import load_agent_config

        config = await asyncio.to_thread(load_agent_config, self.paths.config_file)
        new, old = config.profile, self.profile
        live = [f for f in LIVE_KEYS if getattr(new, f) != getattr(old, f)]
        others = [
            a.name
            for a in attrs.fields(Profile)
            if a.name not in LIVE_KEYS and getattr(new, a.name) != getattr(old, a.name)
        ]
        running = self._running
        self.profile = attrs.evolve(old, **{f: getattr(new, f) for f in live})
        desired = None
        if running is not None and {"catalog_family", "agent_name"} & set(live) and running.documents:
            try:  # the desired state as the new catalog and agent name read it; invalid: nothing changes
                desired = self._assemble(running.documents, running.origin)
            except ConfigError:
                self.profile = old
                raise
        if "pruning_frequency" in live:
            self.set_pruning_frequency(int(new.pruning_frequency))
        if "log_level" in live:
            logging.getLogger().setLevel(new.log_level.upper())
        if running is not None and "workload_log_size" in live:
            running.reconciler.default_log_mib = int(new.workload_log_size)
            running.reconciler.invalidate()
        if running is not None and "cdi_spec_dirs" in live:
            running.reconciler.cdi_spec_dirs = tuple(new.cdi_spec_dirs)
            running.reconciler.invalidate()
        if running is not None and desired is not None:
            await self._push_volumes(running, desired)
            running.desired = desired
            running.reconciler.invalidate()
            self._notify_desired(desired)
        if running is not None:
            self._wake_up(changed=True)
            detail = f"applied: {', '.join(to_camel(f) for f in live) or 'nothing changed'}"
            if others:
                detail += f"; need a restart: {', '.join(to_camel(f) for f in others)}"
            await running.store.call(running.store.add_event, None, "config-reloaded", detail)
            log.info("config reloaded (%s, profile %s)", detail, config.current_profile)
        return {
            "profile": config.current_profile,
            "applied": [to_camel(f) for f in live],
            "needRestart": [to_camel(f) for f in others],
        }

    def set_pruning_frequency(self, hours: int) -> None:
        """Prune every ``hours`` hours from now on (0: never); the period starts again now."""
        self._pruning_hours = max(0, int(hours))
        if self._prune_task is not None and not self._prune_task.done():
            self._prune_task.cancel()
            self._prune_task = asyncio.create_task(self._prune_loop(), name="fogwire-prune")

    async def _prune_loop(self) -> None:
        hours = self._pruning_hours
        if hours <= 0:
            return
        while True:
            await asyncio.sleep(jittered(hours * 3600, 0.05))
            try:
                await self.prune()
            except Exception as error:
                log.warning("pruning failed: %s", error)

    async def prune(self) -> list[str]:
        """Remove images and named volumes no desired microservice or managed workload uses; return the images that went.

        Volumes go only when the engine made them for this agent's workloads
        (:meth:`Engine.prune_volumes`): a removed microservice's volume goes with
        it, as ``deleteWithCleanup`` does; one a desired microservice names stays.
        """
        running = self.running
        keep = {w.image for w in await running.reconciler.list_actual()}
        resolved, _ = running.reconciler.resolve_all(running.desired)
        keep |= {r.spec.image for r in resolved.values()}
        result = await running.engine.prune_images(keep=sorted(keep))
        volumes = {m.source for r in resolved.values() for m in r.spec.mounts if m.kind == "volume"}
        gone = await running.engine.prune_volumes(keep=sorted(volumes))
        detail = f"{len(result.removed)} images" + (f", {len(gone)} volumes ({', '.join(gone)})" if gone else "")
        await running.store.call(running.store.add_event, None, "pruned", detail)
        return list(result.removed)

    async def _watchdog_loop(self, running: Running) -> None:
        interval = watchdog_interval(self.environ)
        if not self.profile.watchdog_enabled and interval is None:
            return
        period = min(interval or 10.0, 10.0, max(0.1, self.stuck_after_s / 2))
        while True:
            await asyncio.sleep(period)
            if self.profile.watchdog_enabled and self.stuck():
                log.error("reconcile loop made no progress for %.0fs; restarting it", self.stuck_after_s)
                await self.restart_loop()
            if interval is not None and not self.stuck():
                sd_notify("WATCHDOG=1", self.environ)

    def stuck(self) -> bool:
        """True when a pass has run without progress for longer than ``stuck_after_s``."""
        reconciler = self.running.reconciler
        return reconciler.busy and time.monotonic() - reconciler.progress > self.stuck_after_s

    async def restart_loop(self) -> None:
        """Cancel the reconcile loop and start a new one (what the watchdog does)."""
        running = self.running
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        await running.store.call(running.store.add_event, None, "watchdog", "reconcile loop restarted")
        self._loop_task = asyncio.create_task(self._reconcile_loop(running), name="fogwire-reconcile")
        self._wake_up(changed=True)

    # -- the API the CLI and embedders use ----------------------------------------------

    def validate(self, documents: list[Any], origin: str = "apply") -> DesiredState:
        """Assemble ``documents`` into a desired state or raise :class:`ConfigError` with every problem."""
        return self._assemble(documents, origin)

    def _assemble(self, documents: Sequence[Any], origin: str) -> DesiredState:
        profile = self.profile
        desired = assemble(
            self.converter,
            documents,
            origin,
            catalog_family=profile.catalog_family,
            agent_name=profile.agent_name,
        )
        for notice in desired.notices:
            log.info("%s", notice)
        return desired

    async def reconcile_now(
        self, *, changed: bool = False, timeout: float | None = None, after: int | None = None
    ) -> PassResult:
        """Trigger a pass and wait for it to finish.

        ``after``: wait for a pass whose serial is greater (one that started after
        something happened); default: one that starts from now on.
        """
        running = self.running
        waiter: asyncio.Future[PassResult] = asyncio.get_running_loop().create_future()
        self._pass_waiters.append((running.reconciler.pass_serial if after is None else after, waiter))
        self._wake_up(changed=changed)
        async with asyncio.timeout(timeout):
            return await waiter

    async def apply(self, documents: list[Any], origin: str = "apply", *, wait: bool = True) -> dict[str, Any]:
        """Make ``documents`` the whole desired state, and report what became of each microservice.

        They are validated first (a bad input changes nothing). With the ``file``
        source the watched file is rewritten (atomically) so it stays the truth;
        with no source the state is kept in the store. With another source the
        source owns the desired state and this raises :class:`FogwireError`.

        The report covers every microservice of ``documents`` whichever pass acted on
        it (the daemon's own loop may run first): the action taken and its outcome,
        or ``unchanged``, ``deferred`` (backoff, with why) or a problem.
        """
        running = self.running
        desired = self.validate(documents, origin)
        path = self.source_file
        if running.source is not None and path is None:
            raise ConflictError(
                f"the desired state comes from the {running.source.name!r} config source; "
                "apply works with the 'file' source (or none)"
            )
        if path is not None:
            await asyncio.to_thread(write_documents, path, documents)
        snapshot = ConfigSnapshot.of(str(path) if path else origin, documents)
        seen_before = await self._set_desired(
            running, desired, documents, snapshot.origin, snapshot.digest, "applied from"
        )
        if not wait:
            self._wake_up(changed=True)
            return {"microservices": sorted(desired.microservices)}
        result = await self.reconcile_now(changed=True, after=seen_before)
        return apply_summary(result, running.outcomes, seen_before, desired)

    async def delete(self, name: str) -> dict[str, Any]:
        """Remove microservice ``name`` from the desired state (its workload goes on the next pass)."""
        documents = remove_microservice(self.running.documents, name)
        if documents is None:
            raise NotFoundError(f"no microservice named {name!r} in the desired state")
        return await self.apply(documents, f"delete {name}")

    async def plan(self, documents: list[Any] | None = None, origin: str = "plan") -> Plan:
        """What a pass would do for ``documents`` (default: the current desired state); changes nothing."""
        running = self.running
        desired = self.validate(documents, origin) if documents is not None else running.desired
        plan = await running.reconciler.plan(desired)
        return attrs.evolve(plan, elsewhere=desired.elsewhere) if desired.elsewhere else plan

    async def status(self, *, refresh: bool = True) -> dict[str, Any]:
        """Each microservice (desired, actual state, health, restarts, last error), each sink, recent events."""
        running = self.running
        if refresh:
            await running.reconciler.list_actual()
        statuses = running.reconciler.statuses(running.desired)
        events = await running.store.call(running.store.events, 20)
        return {
            "engine": getattr(running.engine, "name", "") or str(self._engine_spec),
            "arch": self.arch,
            "desiredDigest": running.applied_digest,
            "microservices": [attrs.asdict(s) for s in statuses],
            "elsewhere": dict(running.desired.elsewhere),
            "sinks": running.sinks.status(running.desired),
            "events": [attrs.asdict(e) for e in events],
        }

    def logs(self, name: str, *, tail: int | None = None, follow: bool = False) -> AsyncIterator[LogLine]:
        """A microservice's output from the engine."""
        return self.running.engine.logs(name, tail=tail, follow=follow)

    async def inspect(self, name: str) -> dict[str, Any]:
        """One microservice: its status, the workload's details, and its desired spec when desired."""
        running = self.running
        info = await running.engine.inspect(name)
        status = next((s for s in running.reconciler.statuses(running.desired) if s.name == name), None)
        if status is None and info is None:
            raise NotFoundError(f"no microservice named {name!r}")
        desired = running.desired.microservices.get(name)
        return {
            "name": name,
            "status": attrs.asdict(status) if status is not None else None,
            "workload": self.converter.unstructure(info) if info is not None else None,
            "desired": self.converter.unstructure(desired.spec) if desired is not None else None,
            "application": desired.application if desired is not None else None,
            "events": [attrs.asdict(e) for e in await running.store.call(running.store.events, 20, name)],
        }

    def _desired_name(self, name: str) -> None:
        if name not in self.running.desired.microservices:
            raise NotFoundError(f"no microservice named {name!r} in the desired state")

    async def stop_microservice(self, name: str) -> dict[str, Any]:
        """Stop ``name`` and keep it stopped (across restarts) until :meth:`start_microservice`."""
        running = self.running
        self._desired_name(name)
        reconciler = running.reconciler
        reconciler.held.add(name)
        await running.store.call(running.store.set_held, name, True)
        async with reconciler.acting():
            if await running.engine.inspect(name) is not None:
                await running.engine.stop(name, timeout_s=reconciler.stop_timeout_s)
        await running.store.call(running.store.add_event, name, "stopped", "stopped by an operator")
        await reconciler.list_actual()
        return {"name": name, "state": "stopped", "held": True}

    async def start_microservice(self, name: str) -> dict[str, Any]:
        """Release an operator's stop and have a pass start ``name`` (or create it); wait for that pass."""
        running = self.running
        self._desired_name(name)
        running.reconciler.held.discard(name)
        await running.store.call(running.store.set_held, name, False)
        await running.store.call(running.store.add_event, name, "started", "started by an operator")
        result = await self.reconcile_now()
        status = next(s for s in running.reconciler.statuses(running.desired) if s.name == name)
        outcome = next((o for o in result.outcomes if o.action.name == name), None)
        if outcome is not None and not outcome.ok:
            raise FogwireError(f"{name} did not start: {outcome.detail}")
        return {"name": name, "state": status.state, "held": False}

    async def restart_microservice(self, name: str) -> dict[str, Any]:
        """Stop ``name`` and start it again (a held one is released)."""
        await self.stop_microservice(name)
        return await self.start_microservice(name)


def apply_summary(
    result: PassResult, outcomes: Mapping[str, tuple[int, Outcome]], after: int, desired: DesiredState
) -> dict[str, Any]:
    """What became of an apply: every action any pass since serial ``after`` took, then the rest.

    ``result`` is the first pass that saw the applied state; an action an earlier pass
    (already seeing it) took is in ``outcomes``. A desired microservice no pass acted
    on is unchanged, deferred or a problem, as ``result``'s plan says.
    """
    acted = {name: outcome for name, (serial, outcome) in outcomes.items() if serial > after}
    summary = pass_summary(result)
    summary["actions"] = [_outcome_dict(o) for o in sorted(acted.values(), key=lambda o: o.action.name)]
    summary["unchanged"] = [
        n
        for n in sorted(desired.microservices)
        if n not in acted and n not in result.plan.deferred and n not in result.plan.problems
    ]
    return summary


def _outcome_dict(outcome: Outcome) -> dict[str, Any]:
    action = outcome.action
    return {
        "action": action.kind,
        "name": action.name,
        "reason": action.reason,
        "ok": outcome.ok,
        "detail": outcome.detail,
    }


def pass_summary(result: PassResult) -> dict[str, Any]:
    """A pass as plain data: each action with its outcome."""
    return {
        "actions": [_outcome_dict(o) for o in result.outcomes],
        "unchanged": list(result.plan.unchanged),
        "deferred": dict(result.plan.deferred),
        "problems": dict(result.plan.problems),
        "engineWrites": result.engine_writes,
        "seconds": round(result.duration_s, 3),
    }


def write_documents(path: Path, documents: list[Any]) -> None:
    """Write ``documents`` as multi-document YAML to ``path`` atomically, mode 0600 (it may hold registry passwords)."""
    replace_file(path, yaml.safe_dump_all(documents, sort_keys=False), mode=0o600)


def remove_microservice(documents: list[Any], name: str) -> list[Any] | None:
    """``documents`` without microservice ``name`` (from an Application or as a document); ``None`` if absent."""
    found = False
    out: list[Any] = []
    for document in documents:
        if not isinstance(document, dict):
            out.append(document)
            continue
        kind = document.get("kind")
        metadata = document.get("metadata") or {}
        spec = document.get("spec") or {}
        if kind == "Microservice" and (metadata.get("name") or spec.get("name")) == name:
            found = True
            continue
        if kind == "Application" and isinstance(spec.get("microservices"), list):
            kept = [m for m in spec["microservices"] if not (isinstance(m, dict) and m.get("name") == name)]
            if len(kept) != len(spec["microservices"]):
                found = True
                document = {**document, "spec": {**spec, "microservices": kept}}
        out.append(document)
    return out if found else None


def ensure_admin_token(path: Path) -> str:
    """The API's admin token from ``path``, made (random, mode 0600) when the file is missing or empty."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        token = ""
    if not token:
        import secrets

        token = secrets.token_urlsafe(32)
        replace_file(path, token + "\n", mode=0o600)
    return token
