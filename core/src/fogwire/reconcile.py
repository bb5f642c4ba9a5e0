"""The reconciler: make the engine's managed workloads equal to the desired microservices.

Long on purpose: one pass is one transaction (plan, act, record, back off, roll
back, rebuild), and its steps share the per-microservice records; split, each step
would reach into the others' state.

One *pass* lists the managed workloads (one engine read), compares each with its
desired microservice and acts:

* **create** a desired microservice that has no workload;
* **replace** one whose ``io.fogwire.config-hash`` label differs from the desired
  spec's hash (or, on a pass after a config change, whose image tag now has a new
  digest), health-gated: the old spec comes back if the new workload exits or turns
  unhealthy within the grace period;
* **start** / **restart** a workload that exited or is unhealthy, with a crash-loop
  backoff;
* **remove** a managed workload no longer desired. An unmanaged container is never
  seen (engines list only workloads with this agent's managed label), so never touched;
* **rebuild** (a replace with reason ``rebuild requested``) a microservice whose
  desired state carries a ``rebuild: true`` request not yet carried out: the image
  is obtained again and the workload recreated even though its hash matches. Each
  request (see :func:`fogwire.resolve.rebuild_request`) is recorded when delivered
  (:meth:`Reconciler.note_desired`) and marked done in the same store transaction
  that records the outcome, so it is carried out once: again after a crash
  mid-rebuild, never again after a restart or a resync.

Actions run concurrently (bounded by ``concurrency``), each in its own ``try``: one
microservice's failure never blocks another's. A failed action is retried with
capped exponential backoff; after ``max_failures`` the microservice is marked
``failed`` with the reason and waits for its desired spec to change. Every action
writes its *intent* to the store first, so an agent killed mid-action finishes it
(a replacement interrupted during its health gate is checked again) after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Literal, TypeVar

import attrs
import cattrs

from fogwire.cdi import DEFAULT_SPEC_DIRS
from fogwire.convert import make_converter
from fogwire.engine import OPTIONAL_FEATURES, Engine, Health, PullPolicy, WorkloadInfo, WorkloadSpec, WorkloadState
from fogwire.errors import EngineError, FogwireError
from fogwire.model.desired import DesiredMicroservice, DesiredState
from fogwire.resolve import (
    CONFIG_HASH_LABEL,
    DIGEST_LABEL,
    ResolvedMicroservice,
    ResolveError,
    diff_fields,
    rebuild_request,
    resolve,
)
from fogwire.resolve import config_hash as hash_of_spec
from fogwire.store import MicroserviceRecord, RebuildRecord, Store

log = logging.getLogger(__name__)

T = TypeVar("T")

SpecAmender = Callable[[DesiredMicroservice, WorkloadSpec], WorkloadSpec]
"""Turns a microservice's resolved spec into the one to run (a pure function: it is part of the spec's hash)."""

ActionKind = Literal["create", "replace", "remove", "start", "restart", "verify"]

NOT_RUNNING = (WorkloadState.EXITED, WorkloadState.DEAD, WorkloadState.CREATED)


async def bounded(call: Awaitable[T], timeout: float) -> T:
    """Await ``call`` for at most ``timeout`` seconds (``TimeoutError`` after).

    ``asyncio.timeout`` rather than ``asyncio.wait_for``: on Python 3.11,
    ``wait_for`` can swallow a cancellation that arrives as the call completes,
    and a stopping agent then never stops.
    """
    async with asyncio.timeout(timeout):
        return await call


@attrs.frozen
class Action:
    """One thing a pass does to one microservice, and why."""

    kind: ActionKind
    name: str
    reason: str
    resolved: ResolvedMicroservice | None = None
    workload: WorkloadInfo | None = None
    rebuild: str | None = None
    """The rebuild request a create or replace carries out (marked done when it finishes)."""

    @property
    def target(self) -> ResolvedMicroservice:
        """The microservice a create, replace or verify brings up (the planner always sets it for those)."""
        if self.resolved is None:
            raise FogwireError(f"internal error: the planner gave {self.kind} of {self.name!r} no microservice")
        return self.resolved

    @property
    def current(self) -> WorkloadInfo:
        """The workload a start, restart or replace acts on (the planner always sets it for those)."""
        if self.workload is None:
            raise FogwireError(f"internal error: the planner gave {self.kind} of {self.name!r} no workload")
        return self.workload


@attrs.frozen
class Plan:
    """What a pass would do: actions, what is left alone, and what can't be resolved."""

    actions: tuple[Action, ...] = ()
    unchanged: tuple[str, ...] = ()
    deferred: Mapping[str, str] = attrs.field(factory=dict)
    """Name → why its action waits (backoff, failed, rolled back)."""
    problems: Mapping[str, str] = attrs.field(factory=dict)
    """Name → why the desired microservice can't be resolved on this device."""
    elsewhere: Mapping[str, str] = attrs.field(factory=dict)
    """Name → the other agent the documents place it on (never run here)."""

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``fogwire plan --json`` and the API."""
        return {
            "actions": [{"action": a.kind, "name": a.name, "reason": a.reason} for a in self.actions],
            "unchanged": list(self.unchanged),
            "deferred": dict(self.deferred),
            "problems": dict(self.problems),
            "elsewhere": dict(self.elsewhere),
        }


@attrs.frozen
class Outcome:
    """The result of one action."""

    action: Action
    ok: bool
    detail: str = ""


@attrs.frozen
class PassResult:
    """What one pass did; ``serial`` numbers the passes of one :class:`Reconciler` from 1."""

    plan: Plan
    outcomes: tuple[Outcome, ...]
    engine_writes: int
    duration_s: float
    serial: int = 0


@attrs.frozen
class MicroserviceStatus:
    """One microservice as ``fogwire status`` shows it."""

    name: str
    desired: bool
    status: str
    state: str
    health: str
    restarts: int
    last_error: str | None
    image: str | None
    config_hash: str | None
    container_id: str | None = None
    started_at: float | None = None
    """When the workload last started (epoch seconds), if known."""


class Reconciler:
    """Compares desired microservices with managed workloads and acts on the difference.

    ``rollback_grace_s`` is how long a replacement must keep running (and not turn
    unhealthy) before it is accepted. ``arch`` is the device architecture used to
    pick images (see :func:`fogwire.resolve.device_arch`).
    """

    def __init__(
        self,
        engine: Engine,
        store: Store,
        *,
        arch: str,
        concurrency: int = 8,
        max_failures: int = 5,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 60.0,
        rollback_grace_s: float = 10.0,
        pull_timeout_s: float = 300.0,
        op_timeout_s: float = 60.0,
        stop_timeout_s: float = 5.0,
        default_log_mib: int | None = None,
        cdi_spec_dirs: tuple[str, ...] = DEFAULT_SPEC_DIRS,
    ) -> None:
        self.engine = engine
        self.store = store
        self.arch = arch
        self.concurrency = concurrency
        self.max_failures = max_failures
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.rollback_grace_s = rollback_grace_s
        self.pull_timeout_s = pull_timeout_s
        self.op_timeout_s = op_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.default_log_mib = default_log_mib
        """MiB of log kept for a microservice that sets no ``logSize`` (``None``: the engine's default)."""
        self.cdi_spec_dirs = cdi_spec_dirs
        """Where CDI spec files are read (``cdiDevices``)."""
        self.records: dict[str, MicroserviceRecord] = {}
        self.rebuilds: dict[str, RebuildRecord] = {}
        self._rebuild_lock = asyncio.Lock()
        self._rebuild_seen: dict[str, str] = {}
        self._retry_at: dict[str, float] = {}
        self._crashes: dict[str, int] = {}
        self._problems: dict[str, str] = {}
        self._writes = 0
        self._lock = asyncio.Lock()
        self._converter = make_converter(cattrs.Converter(forbid_extra_keys=True))
        self.last_actual: dict[str, WorkloadInfo] = {}
        self._resolved: tuple[DesiredState, dict[str, ResolvedMicroservice], dict[str, str]] | None = None
        """The last :meth:`resolve_all` result and the desired state it was for."""
        self.progress = time.monotonic()
        """Monotonic time of the last step of progress (the watchdog reads it)."""
        self.pass_serial = 0
        """The serial of the last pass asked for; a pass with a greater one was asked for later."""
        self.held: set[str] = set()
        """Microservices an operator stopped: no pass starts, replaces or recreates them until released."""
        self.amenders: list[SpecAmender] = []
        """Functions every resolved workload spec goes through (the device API adds the workload's identity)."""

    async def load(self) -> None:
        """Read the per-microservice records from the store (once, at start)."""
        self.records = await self.store.call(self.store.records)
        self.rebuilds = await self.store.call(self.store.rebuilds)
        self.held = await self.store.call(self.store.held)

    # -- rebuild requests ---------------------------------------------------------------

    async def note_desired(self, desired: DesiredState) -> list[str]:
        """Record the rebuild requests ``desired`` carries; return the names with a new one.

        Call it with every desired state delivered (each pass does too): a controller
        sends ``rebuild: true`` once and ``false`` on the next delivery, so a request
        must be kept from the delivery that carried it, not looked for at pass time.
        A request already recorded or already done is not new; ``rebuild: false``
        forgets the done one, so a later ``true`` is a new request. A pending request
        stays pending until carried out, whatever later deliveries say.
        """
        new: list[str] = []
        async with self._rebuild_lock:
            for name, ms in desired.microservices.items():
                request = rebuild_request(ms)
                current = self.rebuilds.get(name)
                if request is None:
                    if current is not None and current.done is not None:
                        await self._save_rebuild(attrs.evolve(current, done=None))
                    continue
                if current is not None and request in (current.done, current.requested):
                    continue
                await self._save_rebuild(RebuildRecord(name, requested=request, done=current.done if current else None))
                new.append(name)
        for name in new:
            await self._event(name, "rebuild-requested", "re-pull the image and recreate the workload")
        return new

    async def _save_rebuild(self, rebuild: RebuildRecord) -> None:
        self.rebuilds[rebuild.name] = rebuild
        await self.store.call(self.store.put_rebuild, rebuild)

    def pending_rebuild(self, ms: DesiredMicroservice) -> str | None:
        """The rebuild request waiting for ``ms``: recorded, or carried by ``ms`` and not done yet."""
        current = self.rebuilds.get(ms.name)
        request = rebuild_request(ms)
        if request is not None and (current is None or request not in (current.done, current.requested)):
            return request
        return current.requested if current is not None else None

    async def _reset_for_rebuilds(self) -> None:
        # A new request is a user's "try again": it clears the failure mark and backoff once.
        for name, rebuild in list(self.rebuilds.items()):
            if rebuild.requested is None or self._rebuild_seen.get(name) == rebuild.requested:
                continue
            self._rebuild_seen[name] = rebuild.requested
            self._retry_at.pop(name, None)
            record = self.records.get(name)
            if record is not None and (record.failures or record.status in ("failed", "retrying")):
                await self._put(attrs.evolve(record, failures=0, status="pending"))

    # -- planning -----------------------------------------------------------------------

    def resolve_all(self, desired: DesiredState) -> tuple[dict[str, ResolvedMicroservice], dict[str, str]]:
        """Resolve every desired microservice; failures are returned by name, not raised.

        Resolving is a pure function of the (frozen) desired state, and hashing 30
        specs costs milliseconds on the event loop, so the result for the same
        ``desired`` object is reused: every pass and plan between two deliveries.
        Only the microservices that failed are resolved again on each call: a
        failure may be mended from outside the desired state (a CDI spec file added).
        """
        cached = self._resolved
        if cached is not None and cached[0] is desired:
            resolved, problems = dict(cached[1]), dict(cached[2])
            if not problems:
                return resolved, problems
            names = list(problems)
        else:
            resolved, problems = {}, {}
            names = list(desired.microservices)
        for name in names:
            problems.pop(name, None)
            ms = desired.microservices[name]
            try:
                resolved[name] = self._amended(
                    resolve(
                        ms, desired, self.arch, default_log_mib=self.default_log_mib, cdi_spec_dirs=self.cdi_spec_dirs
                    ),
                    ms,
                )
            except ResolveError as error:
                problems[name] = str(error)
                continue
            lacking = self._lacking_features(resolved[name].spec)
            if lacking:
                del resolved[name]
                engine = getattr(self.engine, "name", "") or type(self.engine).__name__
                fields = ", ".join(f"{ms.path}.container.{key}" for key in lacking)
                problems[name] = (
                    f"microservice {name!r}: the {engine} engine can't honour {fields}; remove it or use another engine"
                )
        self._resolved = (desired, resolved, problems)
        return dict(resolved), dict(problems)

    def _amended(self, r: ResolvedMicroservice, ms: DesiredMicroservice) -> ResolvedMicroservice:
        if not self.amenders:
            return r
        spec = r.spec
        for amend in self.amenders:
            spec = amend(ms, spec)
        return attrs.evolve(r, spec=spec, config_hash=hash_of_spec(spec, r.auth))

    def _lacking_features(self, spec: WorkloadSpec) -> list[str]:
        used = [(field, key) for field, key in OPTIONAL_FEATURES.items() if getattr(spec, field)]
        if not used:
            return []
        features: frozenset[str] = getattr(type(self.engine), "features", frozenset())
        return [key for field, key in used if field not in features]

    def invalidate(self) -> None:
        """Forget the cached resolution (an amender's output changed, e.g. the host address)."""
        self._resolved = None

    def compute_plan(
        self, desired: DesiredState, actual: list[WorkloadInfo], *, now: float | None = None, gate: bool = True
    ) -> Plan:
        """The actions that make ``actual`` equal ``desired``; pure (no engine or disk access).

        With ``gate`` false, backoff and failure marks are ignored (``fogwire plan``
        shows what would be done given time).
        """
        now = time.monotonic() if now is None else now
        resolved, problems = self.resolve_all(desired)
        by_name = {w.name: w for w in actual}
        actions: list[Action] = []
        unchanged: list[str] = []
        deferred: dict[str, str] = {}
        for name, r in resolved.items():
            if name in self.held:
                deferred[name] = f"stopped by an operator; 'fogwire ms start {name}' starts it again"
                continue
            record = self.records.get(name)
            w = by_name.get(name)
            action = self._action_for(r, w, record, self.pending_rebuild(desired.microservices[name]))
            if action is None:
                unchanged.append(name)
                continue
            if gate and record is not None and record.config_hash == r.config_hash:
                if (
                    action.kind in ("create", "replace")
                    and action.rebuild is None
                    and record.rejected_hash == r.config_hash
                ):
                    if w is not None:
                        unchanged.append(name)
                        continue
                if record.failures >= self.max_failures and action.kind != "verify":
                    deferred[name] = f"failed {record.failures} times; waiting for a change: {record.last_error}"
                    continue
                retry_at = self._retry_at.get(name, 0.0)
                if retry_at > now:
                    deferred[name] = f"backing off {retry_at - now:.1f}s after: {record.last_error}"
                    continue
            actions.append(action)
        for name, w in by_name.items():
            if name not in desired.microservices:
                actions.append(Action("remove", name, "no longer desired", workload=w))
        return Plan(tuple(actions), tuple(sorted(unchanged)), deferred, problems)

    def _action_for(
        self,
        r: ResolvedMicroservice,
        w: WorkloadInfo | None,
        record: MicroserviceRecord | None,
        rebuild: str | None = None,
    ) -> Action | None:
        if w is None:
            return Action("create", r.name, "no workload yet", r, rebuild=rebuild)
        current = w.labels.get(CONFIG_HASH_LABEL)
        if current != r.config_hash:
            if rebuild is None and record is not None and record.rejected_hash == r.config_hash:
                return None
            why = self._why_changed(r, w, record) + ("; rebuild requested" if rebuild else "")
            return Action("replace", r.name, why, r, w, rebuild=rebuild)
        if rebuild is not None:
            # Ahead of "verify" and "start": a rebuild recreates the workload anyway.
            return Action("replace", r.name, "rebuild requested", r, w, rebuild=rebuild)
        if record is not None and record.intent == "replace" and record.intent_data:
            data = json.loads(record.intent_data)
            if data.get("new_hash") == r.config_hash and data.get("old_spec"):
                return Action("verify", r.name, "finishing the health check a restart interrupted", r, w)
        if w.state in NOT_RUNNING:
            code = f" with code {w.exit_code}" if w.exit_code is not None else ""
            why = "created but not started" if w.state is WorkloadState.CREATED else f"{w.state.value}{code}"
            return Action("start", r.name, why, r, w)
        if w.health is Health.UNHEALTHY:
            return Action("restart", r.name, "health check reports unhealthy", r, w)
        return None

    def _why_changed(self, r: ResolvedMicroservice, w: WorkloadInfo, record: MicroserviceRecord | None) -> str:
        current = w.labels.get(CONFIG_HASH_LABEL)
        if current is None:
            return "workload has no config-hash label"
        if record is not None and record.good_spec and record.good_hash == current:
            try:
                old = self._converter.structure(json.loads(record.good_spec), WorkloadSpec)
            except (cattrs.BaseValidationError, ValueError, TypeError):
                return "spec changed"
            fields = diff_fields(old, r.spec)
            if fields:
                return "changed: " + ", ".join(fields)
        return "spec changed (config hash differs)"

    async def list_actual(self) -> list[WorkloadInfo]:
        """The managed workloads (one engine read)."""
        actual = await bounded(self.engine.list_managed(), self.op_timeout_s)
        self.last_actual = {w.name: w for w in actual}
        return actual

    async def plan(self, desired: DesiredState) -> Plan:
        """What a pass would do now, ignoring backoff; changes nothing."""
        return self.compute_plan(desired, await self.list_actual(), gate=False)

    # -- a pass -------------------------------------------------------------------------

    async def run_pass(self, desired: DesiredState, *, changed: bool = False) -> PassResult:
        """Compute and execute one pass. ``changed``: the desired state just changed.

        On a changed pass, failure marks of microservices whose spec changed are
        cleared, and running workloads' image digests are compared with the local
        image (a tag that now names other content is a replacement).
        """
        self.pass_serial += 1  # before any await: this pass works on the ``desired`` it was given now
        serial = self.pass_serial
        async with self._lock:
            started = time.monotonic()
            self.progress = started
            writes_before = self._writes
            actual = await self.list_actual()
            resolved, problems = self.resolve_all(desired)
            await self._note_problems(problems)
            await self.note_desired(desired)
            await self._reset_for_rebuilds()
            if changed:
                await self._reset_changed(resolved)
            plan = self.compute_plan(desired, actual)
            extra: list[Action] = []
            if changed:
                extra = await self._digest_changes(plan, resolved)
            if extra:
                plan = attrs.evolve(
                    plan,
                    actions=plan.actions + tuple(extra),
                    unchanged=tuple(n for n in plan.unchanged if n not in {a.name for a in extra}),
                )
            semaphore = asyncio.Semaphore(self.concurrency)

            async def guarded(action: Action) -> Outcome:
                async with semaphore:
                    return await self._execute(action)

            outcomes = await asyncio.gather(*(guarded(a) for a in plan.actions))
            await self._forget_gone(desired)
            if plan.actions:
                # what the pass made is what status readers (the controller's reports) see next, not the list before it
                try:
                    await self.list_actual()
                except Exception as error:
                    log.debug("listing workloads after the pass failed: %s", error)
            self.progress = time.monotonic()
            return PassResult(plan, tuple(outcomes), self._writes - writes_before, time.monotonic() - started, serial)

    @contextlib.asynccontextmanager
    async def acting(self) -> AsyncIterator[None]:
        """Hold off passes while an operator's action on a workload runs (no pass acts on it meanwhile)."""
        async with self._lock:
            yield

    @property
    def busy(self) -> bool:
        """True while a pass runs."""
        return self._lock.locked()

    def next_retry(self) -> float | None:
        """Monotonic time of the earliest pending retry, if any."""
        pending = [
            t
            for n, t in self._retry_at.items()
            if self.records.get(n, MicroserviceRecord(n)).failures < self.max_failures
        ]
        return min(pending) if pending else None

    async def _note_problems(self, problems: dict[str, str]) -> None:
        for name, message in problems.items():
            record = self.records.get(name, MicroserviceRecord(name))
            if record.status != "unresolvable" or record.last_error != message:
                await self._put(attrs.evolve(record, status="unresolvable", last_error=message))
                await self._event(name, "unresolvable", message)
        self._problems = problems

    async def _reset_changed(self, resolved: dict[str, ResolvedMicroservice]) -> None:
        for name, r in resolved.items():
            record = self.records.get(name)
            if (
                record is not None
                and record.config_hash != r.config_hash
                and (record.failures or record.status == "unresolvable")
            ):
                self._retry_at.pop(name, None)
                await self._put(attrs.evolve(record, failures=0, config_hash=r.config_hash, status="pending"))

    async def _digest_changes(self, plan: Plan, resolved: dict[str, ResolvedMicroservice]) -> list[Action]:
        extra: list[Action] = []
        for name in plan.unchanged:
            w = self.last_actual.get(name)
            r = resolved.get(name)
            if w is None or r is None or DIGEST_LABEL not in w.labels:
                continue
            try:
                local = await bounded(self.engine.image_digest(r.spec.image), self.op_timeout_s)
            except (EngineError, TimeoutError):
                continue
            if local and local != w.labels[DIGEST_LABEL]:
                extra.append(Action("replace", name, f"image {r.spec.image} now has digest {local}", r, w))
        return extra

    async def _forget_gone(self, desired: DesiredState) -> None:
        known = sorted(set(self.records) | set(self.rebuilds))
        gone = [n for n in known if n not in desired.microservices and n not in self.last_actual]
        if gone:
            await self.store.call(self.store.forget, gone)
            for name in gone:
                self.records.pop(name, None)
                self.rebuilds.pop(name, None)
                self._retry_at.pop(name, None)

    # -- actions ------------------------------------------------------------------------

    async def _put(self, record: MicroserviceRecord, rebuild: str | None = None) -> None:
        """Save ``record``; with ``rebuild``, mark that request done in the same transaction."""
        self.records[record.name] = record
        if rebuild is None:
            await self.store.call(self.store.put, record)
            return
        async with self._rebuild_lock:
            current = self.rebuilds.get(record.name, RebuildRecord(record.name))
            # A newer request that arrived meanwhile stays pending.
            requested = None if current.requested == rebuild else current.requested
            done = attrs.evolve(current, requested=requested, done=rebuild)
            self.rebuilds[record.name] = done
            await self.store.call(self.store.put, record, done)

    async def _event(self, name: str | None, kind: str, message: str) -> None:
        log.info("%s %s: %s", kind, name or "-", message)
        await self.store.call(self.store.add_event, name, kind, message)

    async def _write(self, call: Awaitable[T], timeout: float | None = None) -> T:
        self._writes += 1
        result = await bounded(call, timeout or self.op_timeout_s)
        self.progress = time.monotonic()
        return result

    async def _execute(self, action: Action) -> Outcome:
        name = action.name
        record = self.records.get(name, MicroserviceRecord(name))
        handler: dict[ActionKind, Callable[[Action, MicroserviceRecord], Awaitable[str]]] = {
            "create": self._create,
            "replace": self._replace,
            "remove": self._remove,
            "start": self._start,
            "restart": self._start,
            "verify": self._verify_resumed,
        }
        try:
            detail = await handler[action.kind](action, record)
        except (FogwireError, TimeoutError, OSError) as error:
            return await self._failed(action, error)
        except Exception as error:  # one microservice's bug never stops the pass
            log.exception("unexpected error during %s of %s", action.kind, name)
            return await self._failed(action, error)
        if action.kind not in ("start", "restart"):  # a start sets (or clears) its own crash-loop hold
            self._retry_at.pop(name, None)
        return Outcome(action, detail != "rolled back", detail)

    async def retry_failed(self) -> list[str]:
        """Clear every failure mark so failed microservices are tried on the next pass.

        Called when something they may have been waiting for arrives, such as an
        image brought by an offline bundle. Returns the names cleared.
        """
        cleared = []
        for name, record in list(self.records.items()):
            if record.failures or record.status in ("failed", "retrying"):
                self._retry_at.pop(name, None)
                await self._put(attrs.evolve(record, failures=0, status="pending"))
                cleared.append(name)
        return cleared

    async def _failed(self, action: Action, error: BaseException) -> Outcome:
        name = action.name
        message = str(error) or type(error).__name__
        if isinstance(error, TimeoutError):
            message = f"{action.kind} timed out"
        record = self.records.get(name, MicroserviceRecord(name))
        failures = record.failures + 1
        status = "failed" if failures >= self.max_failures else "retrying"
        delay = min(self.backoff_cap_s, self.backoff_base_s * 2 ** (failures - 1)) * random.uniform(0.8, 1.2)
        self._retry_at[name] = time.monotonic() + delay
        config_hash = action.resolved.config_hash if action.resolved else record.config_hash
        await self._put(
            attrs.evolve(
                record,
                status=status,
                failures=failures,
                last_error=message,
                config_hash=config_hash,
                intent=None,
                intent_data=None,
            )
        )
        retry = "giving up until the desired state changes" if status == "failed" else f"retrying in {delay:.1f}s"
        await self._event(name, f"{action.kind}-failed", f"{message} ({retry})")
        return Outcome(action, False, message)

    async def _obtain(self, r: ResolvedMicroservice) -> str | None:
        result = await self._write(self.engine.obtain_image(r.spec.image, r.auth, r.policy), self.pull_timeout_s)
        if result.fallback_reason:
            await self._event(
                r.name, "pull-fallback", f"using local {r.spec.image}: pull failed: {result.fallback_reason}"
            )
        if r.policy is PullPolicy.NEVER or result.digest is None:
            return result.digest
        local = await bounded(self.engine.image_digest(r.spec.image), self.op_timeout_s)
        return local or result.digest

    async def _run_spec(self, spec: WorkloadSpec) -> None:
        await self._write(self.engine.create(spec))
        await self._write(self.engine.start_workload(spec.name))

    def _dump(self, spec: WorkloadSpec) -> str:
        return json.dumps(self._converter.unstructure(spec), sort_keys=True)

    async def _create(self, action: Action, record: MicroserviceRecord) -> str:
        r = action.target
        record = attrs.evolve(record, status="creating", config_hash=r.config_hash, intent="create", intent_data=None)
        await self._put(record)
        digest = await self._obtain(r)
        spec = r.labelled(digest)
        await self._run_spec(spec)
        await self._put(
            attrs.evolve(
                record,
                status="running",
                good_spec=self._dump(spec),
                good_hash=r.config_hash,
                failures=0,
                last_error=None,
                intent=None,
            ),
            action.rebuild,
        )
        await self._event(r.name, "created", f"{spec.image} ({action.reason})")
        return "created"

    async def _remove(self, action: Action, record: MicroserviceRecord) -> str:
        await self._put(attrs.evolve(record, status="removing", intent="remove"))
        await self._write(self.engine.remove(action.name))
        self.last_actual.pop(action.name, None)
        await self.store.call(self.store.forget, [action.name])
        self.records.pop(action.name, None)
        self.rebuilds.pop(action.name, None)
        await self._event(action.name, "removed", action.reason)
        return "removed"

    async def _start(self, action: Action, record: MicroserviceRecord) -> str:
        w = action.current
        crashes = self._crashes.get(action.name, 0)
        if (
            w.started_at is not None
            and w.finished_at is not None
            and (w.finished_at - w.started_at).total_seconds() > 30
        ):
            crashes = 0
        if action.kind == "restart":
            await self._write(self.engine.stop(action.name, self.stop_timeout_s))
        await self._write(self.engine.start_workload(action.name))
        self._crashes[action.name] = crashes + 1
        counted = w.state is not WorkloadState.CREATED
        status = record.status if record.status == "rolled_back" else "running"
        await self._put(attrs.evolve(record, status=status, restarts=record.restarts + counted, intent=None))
        await self._event(action.name, "restarted", action.reason)
        if crashes:
            # A crash loop: hold the next restart back, doubling up to the cap.
            delay = min(self.backoff_cap_s, self.backoff_base_s * 2 ** (crashes - 1))
            self._retry_at[action.name] = time.monotonic() + delay
        else:
            self._retry_at.pop(action.name, None)
        return "started"

    async def _replace(self, action: Action, record: MicroserviceRecord) -> str:
        r, w = action.target, action.current
        old_spec = record.good_spec if record.good_hash == w.labels.get(CONFIG_HASH_LABEL) else None
        digest = await self._obtain(r)
        intent = json.dumps({"new_hash": r.config_hash, "old_spec": old_spec})
        record = attrs.evolve(
            record, status="replacing", config_hash=r.config_hash, intent="replace", intent_data=intent
        )
        await self._put(record)
        await self._write(self.engine.remove(r.name))
        spec = r.labelled(digest)
        await self._run_spec(spec)
        await self._event(r.name, "replaced", action.reason)
        return await self._gate(r, spec, record, old_spec, action.rebuild)

    async def _verify_resumed(self, action: Action, record: MicroserviceRecord) -> str:
        r = action.target
        w = action.workload
        old_spec = json.loads(record.intent_data or "{}").get("old_spec")
        spec = r.labelled(w.labels.get(DIGEST_LABEL) if w else None)
        return await self._gate(r, spec, record, old_spec)

    async def _gate(
        self,
        r: ResolvedMicroservice,
        spec: WorkloadSpec,
        record: MicroserviceRecord,
        old_spec: str | None,
        rebuild: str | None = None,
    ) -> str:
        problem = await self.watch(r.name, spec, self.rollback_grace_s) if old_spec else None
        if problem is None or old_spec is None:
            await self._put(
                attrs.evolve(
                    record,
                    status="running",
                    good_spec=self._dump(spec)
                    if spec.labels.get(CONFIG_HASH_LABEL) == r.config_hash
                    else record.good_spec,
                    good_hash=r.config_hash,
                    rejected_hash=None,
                    failures=0,
                    last_error=None,
                    intent=None,
                    intent_data=None,
                ),
                rebuild,
            )
            return "replaced"
        previous = self._converter.structure(json.loads(old_spec), WorkloadSpec)
        await self._write(self.engine.remove(r.name))
        await self._run_spec(previous)
        message = f"replacement {problem}; rolled back to the previous spec"
        await self._put(
            attrs.evolve(
                record,
                status="rolled_back",
                rejected_hash=r.config_hash,
                last_error=message,
                intent=None,
                intent_data=None,
            ),
            rebuild,
        )
        await self._event(r.name, "rolled-back", message)
        return "rolled back"

    async def watch(self, name: str, spec: WorkloadSpec, grace_s: float) -> str | None:
        """Watch a new workload for ``grace_s``; return why it failed, or ``None`` if it held up.

        It fails if it exits (or vanishes) or its health check reports unhealthy; a
        health check that reports healthy ends the wait early.
        """
        deadline = time.monotonic() + grace_s
        while True:
            info = await bounded(self.engine.inspect(name), self.op_timeout_s)
            self.progress = time.monotonic()
            if info is None:
                return "vanished"
            if info.state in (WorkloadState.EXITED, WorkloadState.DEAD):
                code = f" with code {info.exit_code}" if info.exit_code is not None else ""
                return f"exited{code} within {grace_s:g}s"
            if info.health is Health.UNHEALTHY:
                return f"turned unhealthy within {grace_s:g}s"
            if spec.health_check is not None and info.health is Health.HEALTHY:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            await asyncio.sleep(min(0.25, remaining))

    # -- status -------------------------------------------------------------------------

    def statuses(self, desired: DesiredState | None) -> list[MicroserviceStatus]:
        """Each microservice, desired or still running, from the last list and the records."""
        names = set(desired.microservices if desired else ()) | set(self.last_actual) | set(self.records)
        out = []
        for name in sorted(names):
            record = self.records.get(name, MicroserviceRecord(name))
            w = self.last_actual.get(name)
            out.append(
                MicroserviceStatus(
                    name=name,
                    desired=desired is not None and name in desired.microservices,
                    status="held" if name in self.held else record.status,
                    state=w.state.value if w else "absent",
                    health=w.health.value if w else "none",
                    restarts=record.restarts,
                    last_error=record.last_error,
                    image=w.image if w else None,
                    config_hash=w.labels.get(CONFIG_HASH_LABEL) if w else None,
                    container_id=w.id if w else None,
                    started_at=w.started_at.timestamp() if w and w.started_at else None,
                )
            )
        return out
