"""The ``controller`` config source: the node's half of an ioFog / Datasance PoT fleet.

Three loops, none of which the reconcile loop ever waits on:

* :meth:`ControllerSource.changes` polls ``GET agent/config/changes`` every
  ``changeFrequency`` seconds and runs a handler per flag: the microservices and
  registries become the desired state (written to the source's SQLite file before
  anything else happens), ``config`` sets the node's own settings, ``prune`` prunes,
  ``deleteNode`` deprovisions, and the rest are acknowledged with an event saying
  fogwire does not do them. The change is acknowledged (``PATCH agent/config/changes``)
  only after the agent took the new state and every handler succeeded, so a failure
  is retried on the next poll and nothing is lost.
* :meth:`ControllerSource.serve` reports the node's status every ``statusFrequency``
  seconds, and at once when a microservice's status changes.
* :meth:`ControllerSource.fetch` hands the agent the state last fetched, from the
  SQLite file: a node that restarts without network runs what it last knew.

The credentials are the ones ``fogwire provision`` stored; a new provisioning is
picked up within a second, without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import attrs

from fogwire.convert import PositiveInt, structure_options
from fogwire.errors import SourceError
from fogwire.payloads import Documents
from fogwire.sources import ChangeNotice, ConfigSnapshot, ConfigSource, SourceContext
from fogwire_config_controller import credentials as creds_store
from fogwire_config_controller.client import AuthRejected, ControllerClient, ControllerError
from fogwire_config_controller.state import ControllerState, Snapshot, state_path
from fogwire_config_controller.status import DeviceProbe, controller_word, microservice_entries, status_body
from fogwire_config_controller.translate import documents as translate

if TYPE_CHECKING:
    from fogwire.services import AgentHandle

log = logging.getLogger(__name__)

UNAUTHORIZED_LIMIT = 5
"""Consecutive 401s before the node counts as deleted at the controller (edgelet ≥ 1.0.2)."""
UNAUTHORIZED_SPAN_S = 60.0
"""…and the least time they must span: a controller restart or a proxy may answer 401 briefly."""
BACKOFF_CAP_S = 300.0
"""The longest wait between polls of a controller that does not answer."""
FETCH_FLAGS = ("microserviceList", "microserviceConfig", "routing", "registries", "routerChanged")
"""Flags after which the microservices and registries are fetched again."""
UNSUPPORTED_FLAGS = {
    "reboot": "rebooting the device is left to its operator",
    "version": "upgrading or rolling back the agent is left to the package manager",
    "tunnel": "SSH tunnels are not supported",
    "diagnostics": "strace diagnostics are not supported",
    "isImageSnapshot": "image snapshots are not supported",
    "linkedEdgeResources": "edge resources are not supported",
}
"""Commands the controller may send that fogwire acknowledges without doing, and why."""
SETTINGS = ("changeFrequency", "statusFrequency", "dockerPruningFrequency", "availableDiskThreshold", "logLevel")
"""The node settings from ``GET agent/config`` that have an effect on a fogwire node."""


@attrs.frozen
class ControllerOptions:
    """The source's own options (``configSource: {name: controller, options: {...}}``).

    ``controllerUrl``/``controllerCert`` override the profile's keys of the same
    name; ``timeoutS`` bounds every call to the controller.
    """

    controller_url: str | None = None
    controller_cert: str | None = None
    timeout_s: PositiveInt = PositiveInt(15)


class ControllerSource(ConfigSource[Documents]):
    """Desired state from an ioFog Controller; see the module docstring."""

    name = "controller"

    def __init__(self, context: SourceContext) -> None:
        super().__init__(context)
        options = structure_options(
            context.converter, context.options, ControllerOptions, plugin="controller", key="configSource.options"
        )
        profile = context.profile
        self.controller_url: str | None = options.controller_url or profile.get("controllerUrl")
        self.controller_cert: str | None = options.controller_cert or profile.get("controllerCert")
        self.timeout_s = float(options.timeout_s)
        self.change_s = float(profile.get("changeFrequency") or 20)
        self.status_s = float(profile.get("statusFrequency") or 10)
        self.disk_threshold = int(profile.get("availableDiskThreshold") or 0)
        self.interface = str(profile.get("networkInterface") or "dynamic")
        self.started_at = time.time()
        self.agent: AgentHandle | None = None
        self._state: ControllerState | None = None
        self._client: ControllerClient | None = None
        self._client_for: tuple[Any, ...] | None = None
        self._unauthorized: list[float] = []
        self._rejected: dict[str, str] = {}
        self._wanted: list[str] = []
        self._report_now = asyncio.Event()
        self._disk_low = False
        self._first_seen: dict[tuple[str, str], float] = {}
        self._cpu_seen: dict[str, tuple[float, float]] = {}
        self._credentials: tuple[Any, creds_store.Credentials | None] = (None, None)

    # ------------------------------------------------------------------ parts

    async def state(self) -> ControllerState:
        """The source's SQLite file, opened on first use."""
        if self._state is None:
            self._state = await asyncio.to_thread(ControllerState.open, state_path(self.context.state_dir))
        return self._state

    def client(self, credentials: creds_store.Credentials) -> ControllerClient:
        """A client for the controller ``credentials`` were provisioned at, signing with them."""
        key = (credentials.controller_url, credentials.uuid, credentials.provisioned_at, self.controller_cert)
        if self._client is None or self._client_for != key:
            self._client = ControllerClient(
                credentials.controller_url,
                controller_cert=self.controller_cert,
                authorization=credentials.authorization,
                timeout_s=self.timeout_s,
            )
            self._client_for = key
        return self._client

    def credentials(self) -> creds_store.Credentials | None:
        """The stored credentials, read again only when the file changed (a stat per call)."""
        identity = creds_store.identity(self.context.state_dir)
        if identity != self._credentials[0]:
            self._credentials = (identity, creds_store.load(self.context.state_dir) if identity else None)
        return self._credentials[1]

    async def _event(self, kind: str, detail: str) -> None:
        log.info("%s: %s", kind, detail)
        if self.agent is not None:
            await self.agent.add_event(kind, detail)

    # ------------------------------------------------------------------ the desired state

    async def fetch(self) -> ConfigSnapshot[Documents]:
        """The state last fetched from the controller (from the SQLite file, no network)."""
        state = await self.state()
        deprovisioned = await asyncio.to_thread(state.get, "deprovisioned")
        if deprovisioned is not None:
            return ConfigSnapshot.of(f"controller (deprovisioned: {deprovisioned})", [])
        credentials = self.credentials()
        if credentials is None:
            raise SourceError("the node is not provisioned: run 'fogwire provision KEY' (see docs/controller.md)")
        snapshot = await asyncio.to_thread(state.snapshot)
        if snapshot is None or snapshot.node != credentials.uuid:
            raise SourceError(f"nothing fetched yet from the controller at {credentials.controller_url}")
        self._adopt(snapshot)
        origin = f"controller {credentials.controller_url} (node {credentials.uuid})"
        return ConfigSnapshot.of(origin, list(snapshot.documents))

    def _adopt(self, snapshot: Snapshot) -> None:
        self._rejected = dict(snapshot.rejected)
        self._wanted = [
            d["metadata"]["name"] for d in snapshot.documents if isinstance(d, dict) and d.get("kind") == "Microservice"
        ]

    async def changes(self) -> AsyncIterator[ChangeNotice]:
        """Poll the controller; yield a notice when the desired state changed; ack what was handled."""
        state = await self.state()
        last_identity: Any = None
        started = False
        next_poll = 0.0
        failures = 0
        while True:
            identity = creds_store.identity(self.context.state_dir)
            if identity != last_identity or not started:
                last_identity = identity
                if await self._credentials_changed(state) or started:
                    yield ChangeNotice("the node's provisioning changed")
                started = True
                next_poll, failures = 0.0, 0
            credentials = self.credentials()
            if credentials is None or time.monotonic() < next_poll:
                await asyncio.sleep(0.5 if credentials is None else min(1.0, max(0.05, next_poll - time.monotonic())))
                continue
            try:
                changed, cursor = await self._poll(state, credentials)
            except AuthRejected as error:
                self._count_poll("unauthorized")
                self._unauthorized.append(time.monotonic())
                if await self._unauthorized_too_long(state, error):
                    yield ChangeNotice("deprovisioned: the controller no longer accepts this node")
                next_poll = time.monotonic() + min(self.change_s, 15.0)
                continue
            except ControllerError as error:
                self._count_poll("error")
                failures += 1
                delay = min(self.change_s * 2 ** min(failures - 1, 8), BACKOFF_CAP_S) * random.uniform(0.9, 1.1)
                log.warning("controller poll failed (%s); next try in %.0f s", error, delay)
                next_poll = time.monotonic() + delay
                continue
            self._count_poll("changed" if changed else "unchanged")
            self._unauthorized.clear()
            failures = 0
            if changed:
                yield ChangeNotice("the controller's microservices changed")
            if cursor is not None:
                await self._ack(state, credentials, cursor)
            next_poll = time.monotonic() + self.change_s

    def _count_poll(self, result: str) -> None:
        """Count one change poll in the agent's metrics (once the agent has handed itself over)."""
        if self.agent is not None:
            polls = self.agent.metrics.counter(
                "fogwire_source_polls_total", "config-source polls by source and result", ("source", "result")
            )
            polls.inc(source="controller", result=result)

    async def _credentials_changed(self, state: ControllerState) -> bool:
        """Adopt new (or no) credentials; ``True`` when the desired state may differ now."""
        credentials = self.credentials()
        self._unauthorized.clear()
        if credentials is None:
            return False
        snapshot = await asyncio.to_thread(state.snapshot)
        changed = False
        if await asyncio.to_thread(state.get, "deprovisioned") is not None:
            await asyncio.to_thread(state.delete, "deprovisioned")
            changed = True
        if snapshot is not None and snapshot.node != credentials.uuid:
            await asyncio.to_thread(state.clear_snapshot)
            changed = True
        if await asyncio.to_thread(state.get, "settings_sent_for") != credentials.uuid:
            try:
                await self.client(credentials).request("PATCH", "agent/config", self._local_settings())
                await asyncio.to_thread(state.put, "settings_sent_for", credentials.uuid)
            except ControllerError as error:
                log.info("could not send this node's settings to the controller yet (%s)", error)
        return changed

    def _local_settings(self) -> dict[str, Any]:
        profile = self.context.profile
        settings: dict[str, Any] = {
            "changeFrequency": int(self.change_s),
            "statusFrequency": int(self.status_s),
            "availableDiskThreshold": self.disk_threshold,
            "dockerPruningFrequency": int(profile.get("pruningFrequency") or 0),
            "watchdogEnabled": bool(profile.get("watchdogEnabled")),
            "logLevel": str(profile.get("logLevel") or "info").upper(),
        }
        if self.interface != "dynamic":
            settings["networkInterface"] = self.interface
        return settings

    async def _poll(self, state: ControllerState, credentials: creds_store.Credentials) -> tuple[bool, str | None]:
        """One poll: (whether the desired state changed, the cursor to ack or ``None`` when a handler failed)."""
        client = self.client(credentials)
        flags = (await client.request("GET", "agent/config/changes")).data
        if not isinstance(flags, dict):
            raise ControllerError("GET agent/config/changes: the answer is not a JSON object")
        cursor = flags.get("lastUpdated") if isinstance(flags.get("lastUpdated"), str) else None
        if flags.get("deleteNode"):
            await self._deprovision_locally(state, "the controller deleted this node")
            return True, None
        ok = True
        changed = False
        if flags.get("config"):
            try:
                await self._apply_settings(state, (await client.request("GET", "agent/config")).data)
            except ControllerError as error:
                ok = False
                log.warning("controller config change not applied (%s); retried next poll", error)
        snapshot = await asyncio.to_thread(state.snapshot)
        if any(flags.get(f) for f in FETCH_FLAGS) or snapshot is None or snapshot.node != credentials.uuid:
            changed = await self._fetch_desired(state, client, credentials, cursor)
        if flags.get("prune"):
            if self.agent is None:
                ok = False
            else:
                try:
                    removed = await self.agent.prune()
                    await self._event(
                        "controller-prune", f"pruned {len(removed)} unused images as the controller asked"
                    )
                except Exception as error:
                    ok = False
                    log.warning("prune asked by the controller failed (%s); retried next poll", error)
        for flag, why in UNSUPPORTED_FLAGS.items():
            if flags.get(flag):
                await self._event("controller-command", f"{flag} asked by the controller: not supported ({why})")
        return changed, (cursor if ok else None)

    async def _fetch_desired(
        self, state: ControllerState, client: ControllerClient, credentials: creds_store.Credentials, cursor: str | None
    ) -> bool:
        registries = (await client.request("GET", "agent/registries")).data
        listed = (await client.request("GET", "agent/microservices")).data
        rows = registries.get("registries") if isinstance(registries, dict) else None
        microservices = listed.get("microservices") if isinstance(listed, dict) else None
        if not isinstance(rows, list) or not isinstance(microservices, list):
            raise ControllerError("GET agent/microservices or agent/registries: the answer has no list")
        origin = f"controller {credentials.controller_url} (node {credentials.uuid})"
        translation = translate(self.context.converter, microservices, rows, origin)
        rejected = {r.uuid: f"{r.path}: {r.message}" for r in translation.rejected}
        before = await asyncio.to_thread(state.snapshot)
        # Durable before anything acts on it: the GET that showed rebuild=true cleared it at the controller.
        ids = [r.get("id") for r in rows if isinstance(r, dict)]
        await asyncio.to_thread(state.save_snapshot, credentials.uuid, translation.documents, rejected, ids, cursor)
        for uuid, reason in rejected.items():
            if before is None or before.rejected.get(uuid) != reason:
                await self._event("microservice-rejected", f"{uuid}: {reason}")
        after = await asyncio.to_thread(state.snapshot)
        if after is not None:
            self._adopt(after)
        self._report_now.set()
        return before is None or before.documents != translation.documents or before.node != credentials.uuid

    async def _apply_settings(self, state: ControllerState, settings: Any) -> None:
        if not isinstance(settings, dict):
            raise ControllerError("GET agent/config: the answer is not a JSON object")
        await asyncio.to_thread(state.put, "settings", {k: settings.get(k) for k in SETTINGS})
        self.apply_settings(settings)
        await self._event(
            "controller-config",
            "node settings from the controller: "
            + ", ".join(f"{k}={settings[k]}" for k in SETTINGS if settings.get(k) is not None),
        )

    def apply_settings(self, settings: dict[str, Any]) -> None:
        """Give the controller's node settings their effect on this node."""
        if isinstance(settings.get("changeFrequency"), int | float) and settings["changeFrequency"] > 0:
            self.change_s = float(settings["changeFrequency"])
        if isinstance(settings.get("statusFrequency"), int | float) and settings["statusFrequency"] > 0:
            self.status_s = float(settings["statusFrequency"])
        if isinstance(settings.get("availableDiskThreshold"), int | float):
            self.disk_threshold = int(settings["availableDiskThreshold"])
        level = settings.get("logLevel")
        if isinstance(level, str) and level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "WARN"):
            logging.getLogger().setLevel("WARNING" if level.upper() == "WARN" else level.upper())
        pruning = settings.get("dockerPruningFrequency")
        if self.agent is not None and isinstance(pruning, int) and pruning >= 0:
            self.agent.set_pruning_frequency(pruning)

    async def _ack(self, state: ControllerState, credentials: creds_store.Credentials, cursor: str) -> None:
        try:
            await self.client(credentials).request("PATCH", "agent/config/changes", {"lastUpdated": cursor})
            await asyncio.to_thread(state.acknowledged, cursor)
        except ControllerError as error:
            log.warning("acknowledging the controller's changes failed (%s); they come again next poll", error)

    async def _unauthorized_too_long(self, state: ControllerState, error: AuthRejected) -> bool:
        """Edgelet's rule: deprovisioned after 5 consecutive 401s spanning at least 60 s, never after one."""
        recent = self._unauthorized[-UNAUTHORIZED_LIMIT:]
        log.warning("the controller refused this node's credentials (%d in a row): %s", len(self._unauthorized), error)
        if len(recent) >= UNAUTHORIZED_LIMIT and recent[-1] - recent[0] >= UNAUTHORIZED_SPAN_S:
            await self._deprovision_locally(
                state, f"the controller refused the node's credentials {len(self._unauthorized)} times in a row"
            )
            return True
        return False

    async def _deprovision_locally(self, state: ControllerState, reason: str) -> None:
        await asyncio.to_thread(deprovision_locally, self.context.state_dir, state, reason)
        self._unauthorized.clear()
        self._rejected, self._wanted = {}, []
        await self._event("deprovisioned", reason)

    # ------------------------------------------------------------------ status

    async def serve(self, agent: AgentHandle) -> None:
        """Report the node's status every ``statusFrequency`` seconds, and at once when a microservice's changes."""
        self.agent = agent
        state = await self.state()
        settings = await asyncio.to_thread(state.get, "settings")
        if isinstance(settings, dict):
            self.apply_settings(settings)
        last_signature: Any = None
        next_report = 0.0
        probe: DeviceProbe | None = None
        while True:
            credentials = self.credentials()
            statuses = agent.statuses()
            signature = (
                tuple((s.name, controller_word(s), s.container_id) for s in statuses if s.name in self._wanted),
                tuple(sorted(self._rejected.items())),
            )
            now = time.monotonic()
            due = now >= next_report or signature != last_signature or self._report_now.is_set()
            if credentials is not None and due:
                self._report_now.clear()
                if probe is None or probe.peer is None:
                    client = self.client(credentials)
                    probe = DeviceProbe(str(self.context.state_dir), self.interface, (client.host, client.port))
                try:
                    await self.report(credentials, statuses, probe)
                    last_signature = signature
                    self._unauthorized.clear()
                    next_report = now + self.status_s
                except AuthRejected as error:
                    self._unauthorized.append(now)
                    log.warning("status report refused: %s", error)
                    next_report = now + min(self.status_s, 15.0)
                except ControllerError as error:
                    log.warning("status report failed (%s)", error)
                    next_report = now + min(self.status_s, 30.0)
            try:
                async with asyncio.timeout(1.0):
                    await self._report_now.wait()
            except TimeoutError:
                pass

    async def report(self, credentials: creds_store.Credentials, statuses: Any, probe: DeviceProbe) -> None:
        """Send one status."""
        import fogwire

        now = time.time()
        device = probe.read()
        body = status_body(
            entries=microservice_entries(
                statuses, self._wanted, self._rejected, now, self._first_seen, await self._usage(statuses)
            ),
            device=device,
            started_at=self.started_at,
            version=f"fogwire {fogwire.__version__}",
            disk_threshold=self.disk_threshold,
            now=now,
        )
        if body["diskViolation"] != self._disk_low:
            self._disk_low = bool(body["diskViolation"])
            if self._disk_low:
                await self._event("disk-low", f"{device.disk_free_percent}% disk free, under {self.disk_threshold}%")
        await self.client(credentials).request("PUT", "agent/status", body)

    async def _usage(self, statuses: Any) -> dict[str, tuple[float, int]]:
        """uuid → (CPU percent since the last report, memory bytes) of the running microservices."""
        if self.agent is None:
            return {}
        running = [s.name for s in statuses if s.name in self._wanted and s.state == "running"]
        try:
            measured = await self.agent.usage(running) if running else {}
        except Exception as error:  # figures are a nicety: a report goes out without them
            log.debug("workload usage unavailable: %s", error)
            return {}
        now = time.monotonic()
        out: dict[str, tuple[float, int]] = {}
        last, self._cpu_seen = self._cpu_seen, {}
        for name, usage in measured.items():
            self._cpu_seen[name] = (usage.cpu_seconds, now)
            before = last.get(name)
            percent = 0.0
            if before is not None and now > before[1] and usage.cpu_seconds >= before[0]:
                percent = round(100 * (usage.cpu_seconds - before[0]) / (now - before[1]), 2)
            out[name] = (percent, usage.memory_bytes)
        return out

    async def close(self) -> None:
        """Close the state file."""
        if self._state is not None:
            await asyncio.to_thread(self._state.close)
            self._state = None


def deprovision_locally(state_dir: Any, state: ControllerState, reason: str) -> None:
    """Forget the credentials and the fetched state; the desired state is empty from now on."""
    state.clear_snapshot()
    state.put("deprovisioned", reason)
    state.delete("settings_sent_for")
    creds_store.forget(state_dir)
