"""``fogwire.Agent``: the node agent as a class you can run inside your own asyncio program.

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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import yaml

from fogwire.engine import Engine, EngineContext, EventKind, Health, LogLine
from fogwire.errors import ConfigError, FogwireError, SourceError
from fogwire.model.agent_config import AgentConfig, Profile
from fogwire.model.desired import DesiredState, assemble
from fogwire.paths import Paths, default_paths
from fogwire.plugins import PluginHost
from fogwire.reconcile import PassResult, Plan, Reconciler, bounded
from fogwire.resolve import device_arch
from fogwire.sinks import ReloadSink, SinkContext
from fogwire.sources import ConfigSnapshot, ConfigSource, SourceContext
from fogwire.store import Store
from fogwire.supervise import jittered, sd_notify, watchdog_interval

log = logging.getLogger(__name__)


class Agent:
    """Keeps an engine's managed workloads equal to a desired state, until stopped.

    :param engine: an engine plugin name (``"containerd"``, ``"docker"``, …) or an
        :class:`~fogwire.engine.Engine` object (the agent starts and closes it).
    :param source: a config source name (``"file"``), a
        :class:`~fogwire.sources.ConfigSource`, or ``None`` to take the desired state
        only from :meth:`apply` (and the state last applied).
    :param sinks: reload sinks (names or objects) given each new desired state.
    :param paths: where state, logs and the control socket live.
    :param profile: the agent-config profile supplying the defaults of the rest.
    :param control_socket: serve the CLI on ``paths.control_socket``.
    :param rollback_grace_s: how long a replacement must hold up before it is kept.
    """

    def __init__(
        self,
        *,
        engine: str | Engine | None = None,
        source: str | ConfigSource | None = None,
        source_options: Mapping[str, Any] | None = None,
        sinks: Sequence[str | ReloadSink | tuple[str, Mapping[str, Any]]] | None = None,
        paths: Paths | None = None,
        profile: Profile | None = None,
        plugins: PluginHost | None = None,
        control_socket: bool = True,
        rollback_grace_s: float = 10.0,
        concurrency: int = 8,
        max_failures: int = 5,
        backoff_cap_s: float = 60.0,
        sink_timeout_s: float = 30.0,
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
        self.control_socket = control_socket
        self.rollback_grace_s = rollback_grace_s
        self.concurrency = concurrency
        self.max_failures = max_failures
        self.backoff_cap_s = backoff_cap_s
        self.sink_timeout_s = sink_timeout_s
        self.stuck_after_s = stuck_after_s
        self.arch = device_arch(self.profile.arch)
        self.converter = self.plugins.make_converter()
        self.engine: Engine | None = engine if isinstance(engine, Engine) else None
        self.source: ConfigSource | None = source if isinstance(source, ConfigSource) else None
        self.sinks: list[ReloadSink] = []
        self.store: Store | None = None
        self.reconciler: Reconciler | None = None
        self.desired: DesiredState | None = None
        self.documents: list[Any] | None = None
        self.applied_digest: str | None = None
        self.started = asyncio.Event()
        self.last_pass: PassResult | None = None
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._changed = False
        self._pass_waiters: list[asyncio.Future[PassResult]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._last_desired: DesiredState | None = None

    @classmethod
    def from_config(cls, config: AgentConfig, paths: Paths, **kwargs: Any) -> Agent:
        """An agent for the current profile of ``config`` (what ``fogwire daemon`` runs)."""
        return cls(profile=config.profile, paths=paths, **kwargs)

    # -- building the parts -------------------------------------------------------------

    def _make_engine(self) -> Engine:
        if self.engine is not None:
            return self.engine
        assert isinstance(self._engine_spec, str)
        factory = self.plugins.engine_factory(self._engine_spec)
        context = EngineContext(
            agent_id=self.profile.agent_id,
            data_dir=self.paths.state_dir / "engine",
            run_dir=self.paths.run_dir,
            log_dir=self.paths.log_dir,
            url=self.profile.container_engine_url,
            options=dict(self.profile.engine_options),
        )
        return factory(context)

    def _make_source(self) -> ConfigSource | None:
        if self.source is not None or self._source_spec is None:
            return self.source
        assert isinstance(self._source_spec, str)
        context = SourceContext(self.paths.state_dir, self.paths.run_dir, self._source_options, self.environ)
        return self.plugins.source_factory(self._source_spec)(context)

    def _make_sinks(self) -> list[ReloadSink]:
        sinks: list[ReloadSink] = []
        for spec in self._sink_specs:
            if isinstance(spec, ReloadSink):
                sinks.append(spec)
                continue
            name, options = (spec, {}) if isinstance(spec, str) else spec
            context = SinkContext(self.paths.state_dir, self.paths.run_dir, dict(options), self.environ)
            sinks.append(self.plugins.sink_factory(name)(context))
        return sinks

    @property
    def source_file(self) -> Path | None:
        """The file the ``file`` source watches, when that is the source."""
        if self.source is not None and getattr(self.source, "name", "") == "file":
            path = getattr(self.source, "path", None)
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
        """
        self._loop = asyncio.get_running_loop()
        self.paths.ensure()
        self.store = await asyncio.to_thread(Store.open, self.paths.database)
        try:
            self.engine = self._make_engine()
            self.source = self._make_source()
            self.sinks = self._make_sinks()
            await self.engine.start()
            self.reconciler = Reconciler(
                self.engine,
                self.store,
                arch=self.arch,
                concurrency=self.concurrency,
                max_failures=self.max_failures,
                backoff_cap_s=self.backoff_cap_s,
                rollback_grace_s=self.rollback_grace_s,
            )
            await self.reconciler.load()
            await self._initial_desired()
            yield self
        finally:
            for closable in [self.source, *self.sinks]:
                if closable is not None:
                    try:
                        await closable.close()
                    except Exception:  # shutting down: log and go on
                        log.exception("closing %r failed", closable)
            if self.engine is not None:
                try:
                    await self.engine.close()
                except Exception:
                    log.exception("closing the engine failed")
            await asyncio.to_thread(self.store.close)

    async def run(self) -> None:
        """Run until :meth:`stop`: start the engine, load the desired state, reconcile.

        The desired state comes from the config source; when it can't be reached (or
        holds an invalid state) the agent runs from the state last applied.
        """
        async with self.session():
            server = None
            tasks: list[asyncio.Task[Any]] = []
            try:
                if self.control_socket:
                    from fogwire.control import ControlServer

                    server = ControlServer(self, self.paths.control_socket)
                    await server.start()
                self._loop_task = asyncio.create_task(self._reconcile_loop(), name="fogwire-reconcile")
                tasks = [
                    asyncio.create_task(self._watch_source(), name="fogwire-source"),
                    asyncio.create_task(self._watch_engine(), name="fogwire-engine-events"),
                    asyncio.create_task(self._prune_loop(), name="fogwire-prune"),
                    asyncio.create_task(self._watchdog_loop(), name="fogwire-watchdog"),
                ]
                if self.profile.bundle_watch_dir:
                    tasks.append(asyncio.create_task(self._watch_bundles(), name="fogwire-bundles"))
                self._wake_up(changed=True)
                sd_notify("READY=1", self.environ)
                self.started.set()
                await self._stopping.wait()
            finally:
                sd_notify("STOPPING=1", self.environ)
                self.started.clear()
                everything = [*tasks, *([self._loop_task] if self._loop_task else [])]
                for task in everything:
                    task.cancel()
                await asyncio.gather(*everything, return_exceptions=True)
                for waiter in self._pass_waiters:
                    if not waiter.done():
                        waiter.set_exception(FogwireError("the agent stopped before the pass ran"))
                if server is not None:
                    await server.close()

    def stop(self) -> None:
        """Ask :meth:`run` to return. Workloads keep running. Safe from any thread or a signal handler."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopping.set)
        else:
            self._stopping.set()

    async def _initial_desired(self) -> None:
        assert self.store is not None
        if self.source is not None:
            try:
                await self._load_snapshot(await self.source.fetch(), initial=True)
                if self.desired is not None:
                    return
            except (SourceError, ConfigError) as error:
                log.warning("config source unavailable at start (%s); using the state last applied", error)
                await self.store.call(self.store.add_event, None, "source-unavailable", str(error))
        applied = await self.store.call(self.store.load_applied)
        if applied is not None:
            try:
                self.desired = assemble(self.converter, applied.documents, applied.origin)
                self.documents = applied.documents
                self.applied_digest = applied.digest
                log.info("running from the desired state last applied (%s)", applied.origin)
            except ConfigError as error:
                log.error("the stored desired state no longer validates: %s", error)
        if self.desired is None:
            self.desired = DesiredState()

    async def _load_snapshot(self, snapshot: ConfigSnapshot, *, initial: bool = False) -> bool:
        """Take a fetched snapshot as the desired state; ``False`` if unchanged or invalid."""
        assert self.store is not None
        if snapshot.digest == self.applied_digest and self.desired is not None:
            return False
        documents = snapshot.payload if isinstance(snapshot.payload, list) else [snapshot.payload]
        try:
            desired = assemble(self.converter, documents, snapshot.origin)
        except ConfigError as error:
            log.error("new desired state rejected, keeping the last one:\n%s", error)
            await self.store.call(self.store.add_event, None, "config-rejected", str(error))
            if initial:
                raise
            return False
        await self.store.call(self.store.save_applied, snapshot.origin, snapshot.digest, documents)
        self.desired = desired
        self.documents = documents
        self.applied_digest = snapshot.digest
        if self.reconciler is not None:  # a one-shot rebuild request is kept from the delivery carrying it
            await self.reconciler.note_desired(desired)
        await self.store.call(
            self.store.add_event,
            None,
            "desired-state",
            f"{len(desired.microservices)} microservices from {snapshot.origin}",
        )
        return True

    def _wake_up(self, *, changed: bool = False) -> None:
        self._changed = self._changed or changed
        self._wake.set()

    async def _reconcile_loop(self) -> None:
        assert self.reconciler is not None
        failures = 0
        while not self._stopping.is_set():
            timeout = jittered(self.profile.resync_seconds)
            retry = self.reconciler.next_retry()
            if retry is not None:
                timeout = min(timeout, max(0.05, retry - time.monotonic()))
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            changed, self._changed = self._changed, False
            waiters, self._pass_waiters = self._pass_waiters, []
            self.reconciler.progress = time.monotonic()
            try:
                result = await self.reconciler.run_pass(self.desired or DesiredState(), changed=changed)
            except asyncio.CancelledError:
                # Stopped, or restarted by the watchdog: the next loop (if any) serves them.
                self._pass_waiters.extend(waiters)
                self._changed = self._changed or changed
                raise
            except Exception as error:  # e.g. the engine is down: retry later
                failures += 1
                log.warning("reconcile pass failed: %s", error)
                await asyncio.sleep(min(30.0, 0.5 * 2**failures))
                self._changed = self._changed or changed
                self._pass_waiters.extend(waiters)
                self._wake.set()
                continue
            failures = 0
            self.last_pass = result
            if result.plan.actions:
                log.info(
                    "pass: %d actions (%d failed) in %.2fs",
                    len(result.plan.actions),
                    sum(not o.ok for o in result.outcomes),
                    result.duration_s,
                )
            if changed:
                await self._run_sinks()
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(result)

    async def _run_sinks(self) -> None:
        desired = self.desired
        for sink in self.sinks:
            try:
                report = await bounded(sink.apply(desired, self._last_desired), self.sink_timeout_s)
                if not report.ok:
                    log.warning("reload sink %s: %s", sink.name, report)
            except Exception as error:  # one sink never stops the others
                reason = f"timed out after {self.sink_timeout_s:g}s" if isinstance(error, TimeoutError) else str(error)
                reason = reason or type(error).__name__
                log.warning("reload sink %s failed: %s", getattr(sink, "name", sink), reason)
                if self.store is not None:
                    await self.store.call(
                        self.store.add_event, None, "sink-failed", f"{getattr(sink, 'name', sink)}: {reason}"
                    )
        self._last_desired = desired

    async def _watch_source(self) -> None:
        if self.source is None:
            return
        delay = 1.0
        while not self._stopping.is_set():
            try:
                async for _notice in self.source.changes():
                    delay = 1.0
                    try:
                        if await self._load_snapshot(await self.source.fetch()):
                            self._wake_up(changed=True)
                    except SourceError as error:
                        log.warning("config source: %s", error)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("config source watch failed (%s); retrying in %.0fs", error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)

    async def _watch_bundles(self) -> None:
        """Import offline bundles dropped into ``bundleWatchDir`` into the engine.

        When one lands, microservices that failed (typically waiting for an image
        from registry ``local``) are retried at once.
        """
        from fogwire.bundle.importer import EngineTarget, import_bundle
        from fogwire.bundle.oci import machine_platform
        from fogwire.bundle.watch import BundleWatcher, WatchOutcome

        assert self.engine is not None and self.profile.bundle_watch_dir is not None
        target = EngineTarget(self.engine, machine_platform())
        bundles_state = self.paths.state_dir / "bundles"

        async def importer(path: Path) -> Any:
            return await import_bundle(
                path, target, work_dir=bundles_state / "staging", cache_file=bundles_state / "imported.json"
            )

        async def landed(outcome: WatchOutcome) -> None:
            if not outcome.ok or self.reconciler is None:
                return
            cleared = await self.reconciler.retry_failed()
            if self.store is not None:
                detail = f"{outcome.bundle}: retrying {', '.join(cleared) or 'nothing'}"
                await self.store.call(self.store.add_event, None, "bundle-imported", detail)
            self._wake_up(changed=True)

        watcher = BundleWatcher(Path(self.profile.bundle_watch_dir), importer, on_done=landed)
        await watcher.run()

    async def _watch_engine(self) -> None:
        assert self.engine is not None
        delay = 1.0
        while not self._stopping.is_set():
            try:
                async for event in self.engine.events():
                    delay = 1.0
                    if event.kind in (EventKind.DIE, EventKind.OOM) or event.health is Health.UNHEALTHY:
                        self._wake_up()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("engine event stream failed (%s); retrying in %.0fs", error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)

    async def _prune_loop(self) -> None:
        hours = self.profile.pruning_frequency
        if hours <= 0:
            return
        while True:
            await asyncio.sleep(jittered(hours * 3600, 0.05))
            try:
                await self.prune()
            except Exception as error:
                log.warning("pruning failed: %s", error)

    async def prune(self) -> list[str]:
        """Remove images no desired microservice or managed workload uses; return what went."""
        assert self.engine is not None and self.reconciler is not None
        keep = {w.image for w in await self.reconciler.list_actual()}
        if self.desired is not None:
            resolved, _ = self.reconciler.resolve_all(self.desired)
            keep |= {r.spec.image for r in resolved.values()}
        result = await self.engine.prune_images(keep=sorted(keep))
        if self.store is not None:
            await self.store.call(self.store.add_event, None, "pruned", f"{len(result.removed)} images")
        return list(result.removed)

    async def _watchdog_loop(self) -> None:
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
        assert self.reconciler is not None
        busy = self.reconciler._lock.locked()
        return busy and time.monotonic() - self.reconciler.progress > self.stuck_after_s

    async def restart_loop(self) -> None:
        """Cancel the reconcile loop and start a new one (what the watchdog does)."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        if self.store is not None:
            await self.store.call(self.store.add_event, None, "watchdog", "reconcile loop restarted")
        self._loop_task = asyncio.create_task(self._reconcile_loop(), name="fogwire-reconcile")
        self._wake_up(changed=True)

    # -- the API the CLI and embedders use ----------------------------------------------

    def validate(self, documents: list[Any], origin: str = "apply") -> DesiredState:
        """Assemble ``documents`` into a desired state or raise :class:`ConfigError` with every problem."""
        return assemble(self.converter, documents, origin)

    async def reconcile_now(self, *, changed: bool = False, timeout: float | None = None) -> PassResult:
        """Trigger a pass and wait for it to finish."""
        waiter: asyncio.Future[PassResult] = asyncio.get_running_loop().create_future()
        self._pass_waiters.append(waiter)
        self._wake_up(changed=changed)
        async with asyncio.timeout(timeout):
            return await waiter

    async def apply(self, documents: list[Any], origin: str = "apply", *, wait: bool = True) -> dict[str, Any]:
        """Make ``documents`` the whole desired state.

        They are validated first (a bad input changes nothing). With the ``file``
        source the watched file is rewritten (atomically) so it stays the truth;
        with no source the state is kept in the store. With another source the
        source owns the desired state and this raises :class:`FogwireError`.
        """
        desired = self.validate(documents, origin)
        path = self.source_file
        if self.source is not None and path is None:
            raise FogwireError(
                f"the desired state comes from the {self.source.name!r} config source; "
                "apply works with the 'file' source (or none)"
            )
        if path is not None:
            await asyncio.to_thread(write_documents, path, documents)
        snapshot = ConfigSnapshot.of(str(path) if path else origin, documents)
        assert self.store is not None
        await self.store.call(self.store.save_applied, snapshot.origin, snapshot.digest, documents)
        self.desired, self.documents, self.applied_digest = desired, documents, snapshot.digest
        if self.reconciler is not None:
            await self.reconciler.note_desired(desired)
        await self.store.call(
            self.store.add_event,
            None,
            "desired-state",
            f"{len(desired.microservices)} microservices applied from {origin}",
        )
        if not wait:
            self._wake_up(changed=True)
            return {"microservices": sorted(desired.microservices)}
        result = await self.reconcile_now(changed=True)
        return pass_summary(result)

    async def delete(self, name: str) -> dict[str, Any]:
        """Remove microservice ``name`` from the desired state (its workload goes on the next pass)."""
        documents = remove_microservice(self.documents or [], name)
        if documents is None:
            raise FogwireError(f"no microservice named {name!r} in the desired state")
        return await self.apply(documents, f"delete {name}")

    async def plan(self, documents: list[Any] | None = None, origin: str = "plan") -> Plan:
        """What a pass would do for ``documents`` (default: the current desired state); changes nothing."""
        assert self.reconciler is not None
        desired = self.validate(documents, origin) if documents is not None else (self.desired or DesiredState())
        return await self.reconciler.plan(desired)

    async def status(self, *, refresh: bool = True) -> dict[str, Any]:
        """Each microservice (desired, actual state, health, restarts, last error) and recent events."""
        assert self.reconciler is not None and self.store is not None
        if refresh:
            await self.reconciler.list_actual()
        statuses = self.reconciler.statuses(self.desired)
        events = await self.store.call(self.store.events, 20)
        return {
            "engine": getattr(self.engine, "name", "") or str(self._engine_spec),
            "arch": self.arch,
            "desiredDigest": self.applied_digest,
            "microservices": [attrs.asdict(s) for s in statuses],
            "events": [attrs.asdict(e) for e in events],
        }

    def logs(self, name: str, *, tail: int | None = None, follow: bool = False) -> AsyncIterator[LogLine]:
        """A microservice's output from the engine."""
        assert self.engine is not None
        return self.engine.logs(name, tail=tail, follow=follow)


def pass_summary(result: PassResult) -> dict[str, Any]:
    """A pass as plain data: each action with its outcome."""
    return {
        "actions": [
            {"action": o.action.kind, "name": o.action.name, "reason": o.action.reason, "ok": o.ok, "detail": o.detail}
            for o in result.outcomes
        ],
        "unchanged": list(result.plan.unchanged),
        "deferred": dict(result.plan.deferred),
        "problems": dict(result.plan.problems),
        "engineWrites": result.engine_writes,
        "seconds": round(result.duration_s, 3),
    }


def write_documents(path: Path, documents: list[Any]) -> None:
    """Write ``documents`` as multi-document YAML to ``path`` atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump_all(documents, sort_keys=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
