"""The router supervisor: config → skrouterd file → skrouterd process → live reloads.

Flow: the config source (``pot`` or ``kubernetes`` by ``SKUPPER_PLATFORM``) delivers
the router config; it is validated (:mod:`fogwire_router.model`), merged with the
SSL profile directories, written atomically to ``QDROUTERD_CONF`` (pot mode; in
kubernetes mode that file is the operator's and is never written) and skrouterd is
started on it. Every later change goes to the ``skrouter`` reload sink, which applies
it live over AMQP management and rolls back on failure; only a successful apply
becomes the current config and is written to the file. When the sink says a change
needs a restart, the file is written first and then skrouterd is restarted.

skrouterd's output goes to our log. A crash restarts it after a backoff that doubles
up to a maximum (reset once it has run for a while); several crashes in a window are
reported as a crash loop. After every start the sink converges the router's actual
entities to the current config. SIGTERM/SIGINT are forwarded and the supervisor
exits with skrouterd's exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import tempfile
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from fogwire.errors import ConfigError, FogwireError, SourceError
from fogwire.paths import replace_file
from fogwire.payloads import JSONValue
from fogwire.sinks import ApplyReport, Outcome, ReloadSink, SinkContext
from fogwire.sources import ConfigSource, SourceContext
from fogwire_router.certs import CertProfiles
from fogwire_router.model import (
    ROUTER_CONFIG,
    ROUTER_DOCUMENT,
    Role,
    RouterConfig,
    router_config_from_payload,
    router_converter,
    unstructure_skrouterd_list,
)

log = logging.getLogger(__name__)
child_log = logging.getLogger("fogwire.router.skrouterd")

ROUTER = "fogwire router (fogwire-router)"
"""How load-time errors name the router wrapper as the consumer of a source or sink."""

PLATFORM_SOURCES = {"pot": "pot", "iofog": "pot", "kubernetes": "kubernetes"}
"""``SKUPPER_PLATFORM`` → config source name."""


@attrs.frozen(kw_only=True)
class RouterSettings:
    """Everything the supervisor needs, from options and environment (see :mod:`fogwire_router.command`)."""

    platform: str = "pot"
    source: str = "pot"
    source_options: Mapping[str, Any] = attrs.field(factory=dict)
    conf: Path = Path("/tmp/skrouterd.json")
    write_conf: bool = True
    skrouterd: str = "skrouterd"
    home: str = "/home/skrouterd"
    ssl_profile_path: Path = Path("/etc/skupper-router-certs")
    ssl_keep_ordinals: int = 1
    management_url: str | None = None
    request_timeout: float = 5.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    stable_after: float = 30.0
    crash_loop_count: int = 5
    crash_loop_window: float = 120.0
    stop_timeout: float = 10.0
    poll_interval: float = 0.5
    state_dir: Path = Path(tempfile.gettempdir()) / "fogwire-router"
    environ: Mapping[str, str] = attrs.field(factory=dict)


def management_url_for(config: RouterConfig) -> str | None:
    """The first plain, unauthenticated AMQP listener of ``config`` as a loopback URL, if any."""
    for listener in config.listeners:
        if listener.role not in (None, Role.NORMAL) or listener.ssl_profile or listener.require_ssl:
            continue
        if listener.authenticate_peer or listener.http or listener.port is None:
            continue
        if listener.sasl_mechanisms not in (None, "ANONYMOUS"):
            continue
        host = listener.host or "127.0.0.1"
        if host in ("0.0.0.0", "::", "", "localhost"):
            host = "127.0.0.1"
        return f"amqp://{host}:{listener.port}"
    return None


def write_atomically(path: Path, config: RouterConfig, converter: Any = None) -> None:
    """Write ``config`` as skrouterd's JSON list to ``path`` via a temporary file and rename."""
    replace_file(path, json.dumps(unstructure_skrouterd_list(config, converter), indent=4) + "\n")


class RouterSupervisor:
    """Runs skrouterd on the config from a source and keeps it current (see the module docstring)."""

    def __init__(self, settings: RouterSettings, *, host: Any = None) -> None:
        self.settings = settings
        if host is None:
            from fogwire.plugins import PluginHost

            host = PluginHost(environ=settings.environ)
        self.host = host
        self.certs = CertProfiles(settings.ssl_profile_path, keep=settings.ssl_keep_ordinals)
        self.converter = router_converter(host.make_converter())
        """The router's one converter, handed to its source and sink (made once: building costs milliseconds)."""
        self.source_config: RouterConfig | None = None
        self.desired: RouterConfig | None = None
        self.last_applied: RouterConfig | None = None
        self.sink: ReloadSink[RouterConfig] | None = None
        self.sink_url: str | None = None
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.crashes: deque[float] = deque()
        self._stopping = asyncio.Event()
        self._stop_signal: int | None = None
        self._restart_requested = False
        self._lock = asyncio.Lock()
        self._started = asyncio.Event()

    # -- config ------------------------------------------------------------------------
    def _make_source(self) -> ConfigSource[JSONValue]:
        factory = self.host.source_factory(self.settings.source, ROUTER_DOCUMENT, ROUTER)
        context = SourceContext(
            state_dir=self.settings.state_dir,
            run_dir=self.settings.state_dir,
            options=dict(self.settings.source_options),
            environ=dict(self.settings.environ),
            converter=self.converter,
        )
        source: ConfigSource[JSONValue] = factory(context)
        return source

    async def _fetch(self, source: ConfigSource[JSONValue]) -> RouterConfig:
        snapshot = await source.fetch()
        return router_config_from_payload(snapshot.payload, snapshot.origin, self.converter)

    def _desired(self) -> RouterConfig | None:
        return None if self.source_config is None else self.certs.merge(self.source_config)

    def _write(self, config: RouterConfig) -> None:
        if self.settings.write_conf:
            write_atomically(self.settings.conf, config, self.converter)
            log.info("wrote router config to %s", self.settings.conf)

    # -- sink ------------------------------------------------------------------------------
    async def _ensure_sink(self, config: RouterConfig) -> ReloadSink[RouterConfig]:
        url = self.settings.management_url or management_url_for(config) or "amqp://127.0.0.1:5672"
        if self.sink is not None and url == self.sink_url:
            return self.sink
        if self.sink is not None:
            await self.sink.close()
        factory = self.host.sink_factory("skrouter", ROUTER_CONFIG, ROUTER)
        context = SinkContext(
            state_dir=self.settings.state_dir,
            run_dir=self.settings.state_dir,
            options={"url": url, "timeout": self.settings.request_timeout},
            environ=dict(self.settings.environ),
            converter=self.converter,
        )
        self.sink = factory(context)
        self.sink_url = url
        return self.sink

    async def _apply(self, config: RouterConfig, last: RouterConfig | None) -> ApplyReport:
        sink = await self._ensure_sink(config)
        return await sink.apply(config, last)

    @staticmethod
    def _unreachable(report: ApplyReport) -> bool:
        failed = [i for i in report.items if i.outcome is Outcome.FAILED]
        return bool(failed) and all(i.action == "connect" for i in failed)

    async def reload(self, reason: str) -> None:
        """Fetch, validate and apply the config; on success make it current (file written, restart if needed)."""
        async with self._lock:
            await self._reload(reason)

    async def _reload(self, reason: str) -> None:
        assert self._source is not None
        try:
            self.source_config = await self._fetch(self._source)
        except (SourceError, ConfigError) as error:
            log.error("router config not applied (%s), keeping the last good one:\n%s", reason, error)
            return
        await self._apply_desired(reason)

    async def _apply_desired(self, reason: str) -> None:
        desired = self._desired()
        if desired is None or desired == self.desired:
            return
        log.info("router config changed (%s); applying", reason)
        try:
            report = await self._apply(desired, self.last_applied)
        except ConfigError as error:
            log.error("router config invalid, not applied; keeping the last good one:\n%s", error)
            return
        except FogwireError as error:
            log.error("router config not applied: %s; keeping the last good one", error)
            return
        except Exception:  # a sink bug must not stop the supervisor
            log.exception("router config not applied (unexpected error in the sink); keeping the last good one")
            return
        if self._unreachable(report):
            log.warning("router management unreachable; the new config is written and applied when skrouterd is up")
            self.desired, self.last_applied = desired, None
            self._write(desired)
            return
        if not report.ok:
            for item in report.items:
                if item.outcome in (Outcome.FAILED, Outcome.ROLLED_BACK):
                    log.error(
                        "router config not applied: %s %s %s: %s",
                        item.key,
                        item.action,
                        item.outcome.value,
                        item.detail,
                    )
            return
        self.desired = self.last_applied = desired
        self._write(desired)
        if report.restart_needed:
            reasons = "; ".join(f"{i.key}: {i.detail}" for i in report.items if i.outcome is Outcome.RESTART_NEEDED)
            log.warning("restarting skrouterd for changes it can't take live: %s", reasons)
            await self._restart()

    # -- process -----------------------------------------------------------------------
    def _child_env(self) -> dict[str, str]:
        env = dict(self.settings.environ)
        env.setdefault("QDROUTERD_HOME", self.settings.home)
        env["QDROUTERD_CONF"] = str(self.settings.conf)
        return env

    async def _spawn(self) -> asyncio.subprocess.Process:
        argv = [self.settings.skrouterd, "-c", str(self.settings.conf)]
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self._child_env(),
        )
        self.starts += 1
        log.info("started skrouterd (pid %d): %s", process.pid, " ".join(argv))
        return process

    @staticmethod
    async def _pump(process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while True:
            line = await process.stdout.readline()
            if not line:
                return
            child_log.info("%s", line.decode(errors="replace").rstrip())

    async def _restart(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        self._restart_requested = True
        process.terminate()

    def _backoff(self, ran_for: float) -> float:
        now = time.monotonic()
        if ran_for >= self.settings.stable_after:
            self.crashes.clear()
        self.crashes.append(now)
        while self.crashes and now - self.crashes[0] > self.settings.crash_loop_window:
            self.crashes.popleft()
        delay = float(min(self.settings.backoff_max, self.settings.backoff_initial * 2 ** (len(self.crashes) - 1)))
        if len(self.crashes) >= self.settings.crash_loop_count:
            log.error(
                "skrouterd crash loop: %d exits in the last %.0f s; next restart in %.1f s",
                len(self.crashes),
                self.settings.crash_loop_window,
                delay,
            )
        return delay

    async def _converge_after_start(self) -> None:
        """Bring the fresh router to the current config (it may lack what was applied live)."""
        while not self._stopping.is_set():
            desired = self.desired
            if desired is None:
                return
            try:
                async with self._lock:
                    report = await self._apply(self.desired or desired, None)
            except Exception as error:  # retried; the supervisor keeps running
                log.error("converging the router failed: %s", error)
                report = None
            if report is not None and not self._unreachable(report):
                if report.ok:
                    self.last_applied = self.desired
                    log.info("router converged to the current config (%d item(s))", len(report.items))
                else:
                    log.error(
                        "converging the router failed: %s",
                        [(i.key, i.detail) for i in report.items if i.outcome is Outcome.FAILED],
                    )
                return
            await asyncio.sleep(0.2)

    async def _run_process(self) -> int:
        while True:
            self.process = await self._spawn()
            started = time.monotonic()
            pump = asyncio.create_task(self._pump(self.process))
            converge = asyncio.create_task(self._converge_after_start())
            self._started.set()
            code = await self.process.wait()
            await asyncio.wait({pump}, timeout=1)
            converge.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await converge
            ran_for = time.monotonic() - started
            if self._stopping.is_set():
                return code
            if self._restart_requested:
                self._restart_requested = False
                log.info("skrouterd stopped for a restart (exit %d); starting it again", code)
                continue
            delay = self._backoff(ran_for)
            log.error("skrouterd exited with code %d after %.1f s; restarting in %.1f s", code, ran_for, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
            if self._stopping.is_set():
                return code

    def _on_signal(self, signum: int) -> None:
        log.info("received signal %d; forwarding it to skrouterd", signum)
        self._stop_signal = signum
        self._stopping.set()
        process = self.process
        if process is not None and process.returncode is None:
            process.send_signal(signum)
            asyncio.get_running_loop().call_later(self.settings.stop_timeout, self._kill, process)

    @staticmethod
    def _kill(process: asyncio.subprocess.Process) -> None:
        if process.returncode is None:
            log.error("skrouterd did not stop in time; killing it")
            process.kill()

    # -- watchers ------------------------------------------------------------------------
    async def _watch_source(self) -> None:
        assert self._source is not None
        async for notice in self._source.changes():
            await self.reload(notice.reason)

    async def _watch_certs(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_interval)
            if await asyncio.to_thread(self.certs.refresh):
                async with self._lock:
                    await self._apply_desired("ssl profile certificates changed")

    # -- main --------------------------------------------------------------------------------
    async def _initial(self) -> RouterConfig:
        assert self._source is not None
        attempt = 0
        while True:
            attempt += 1
            try:
                self.source_config = await self._fetch(self._source)
                desired = self._desired()
                assert desired is not None
                return desired
            except (SourceError, ConfigError) as error:
                if attempt >= 30:
                    raise
                log.warning("router config not available yet (attempt %d): %s", attempt, error)
                await asyncio.sleep(min(1.0 * attempt, 5.0))

    async def run(self) -> int:
        """Run until a signal stops skrouterd; return the exit code to exit with."""
        self._source: ConfigSource[JSONValue] | None = self._make_source()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        tasks: list[asyncio.Task[Any]] = []
        try:
            await asyncio.to_thread(self.certs.refresh)
            try:
                desired = await self._initial()
            except (SourceError, ConfigError) as error:
                log.error("no usable router config, giving up: %s", error)
                return 1
            self.desired = desired
            self._write(desired)
            runner = asyncio.create_task(self._run_process())
            tasks = [asyncio.create_task(self._watch_source()), asyncio.create_task(self._watch_certs())]
            done, _ = await asyncio.wait({runner, *tasks}, return_when=asyncio.FIRST_COMPLETED)
            if runner not in done:
                for task in done:
                    task.result()
            code = await runner
            if self._stop_signal is not None:
                log.info("skrouterd exited with code %d after signal %d", code, self._stop_signal)
            return code if code >= 0 else 128 - code
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            if self.sink is not None:
                await self.sink.close()
            await self._source.close()
            await self._stop_process()

    async def _stop_process(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=self.settings.stop_timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
