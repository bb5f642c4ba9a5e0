"""The ``skrouter`` reload sink: applies a router config to a running skrouterd over AMQP management.

Each apply is transactional: the plan (see :mod:`fogwire_sink_skrouter.plan`) runs
operation by operation; when one fails, the operations already done are undone in
reverse order (deleted entities re-created, created ones deleted, updated ones given
their old values), so the router ends as it was, and the report names the entity
that failed with the router's status code and text.

The sink compares against the router's **actual** entities (one QUERY per type)
instead of the last applied config whenever it can't trust that: on the first
apply, after the management connection was (re)opened (the router may have
restarted and lost what was created live), and after a rollback that itself failed.
A connection lost in the middle of an apply is re-opened once and the apply
converges from the actual state.

Options (``SinkContext.options``): ``url`` (management address, default
``amqp://127.0.0.1:5672``, or ``SKROUTER_MANAGEMENT_URL``), ``timeout`` (seconds per
request, default 5), ``connect_timeout``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import cattrs
from fogwire_router.model import (
    ENTITY_TYPES,
    RouterConfig,
    check_references,
    router_converter,
)

from fogwire.errors import ConfigError, SinkError
from fogwire.sinks import ApplyReport, ItemResult, Outcome, ReloadSink, SinkContext
from fogwire_sink_skrouter.management import (
    ConnectionLost,
    ManagementClient,
    ManagementError,
    ManagementTimeout,
    ManagementUrl,
)
from fogwire_sink_skrouter.plan import Op, Plan, inverse, plan_changes, redact

log = logging.getLogger(__name__)
T = TypeVar("T")

QUERIED_TYPES = (
    "router",
    "sslProfile",
    "listener",
    "connector",
    "tcpListener",
    "tcpConnector",
    "address",
    "log",
    "site",
)
"""Types read back from the router to converge (``router`` and ``site`` only to see whether a restart is needed)."""


def _describe(error: BaseException) -> str:
    if isinstance(error, ManagementError):
        code = f"status {error.status_code}: " if error.status_code is not None else ""
        return f"{code}{error.description}"
    return str(error)


class SkrouterSink(ReloadSink[RouterConfig]):
    """Applies :class:`~fogwire_router.model.RouterConfig` changes to skrouterd live."""

    name = "skrouter"

    def __init__(self, context: SinkContext, converter: cattrs.Converter | None = None) -> None:
        super().__init__(context)
        options = context.options
        url = str(options.get("url") or context.environ.get("SKROUTER_MANAGEMENT_URL") or "amqp://127.0.0.1:5672")
        timeout = float(options.get("timeout", 5.0))
        connect_timeout = options.get("connect_timeout")
        self.client = ManagementClient(
            url, timeout=timeout, connect_timeout=float(connect_timeout) if connect_timeout is not None else None
        )
        self.converter = converter or router_converter(context.converter)
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="skrouter-mgmt")
        self._seen_generation = -1
        self._dirty = True

    @property
    def url(self) -> ManagementUrl:
        """Where the sink reaches the router's management node."""
        return self.client.url

    async def _run(self, function: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function)

    async def close(self) -> None:
        """Close the management connection and the sink's thread."""
        await self._run(self.client.close)
        self._executor.shutdown(wait=True)

    async def actual_config(self) -> RouterConfig:
        """The router's current entities, read with one QUERY per type, as a :class:`RouterConfig`."""
        rows = await self._run(self._query_all)
        return self._to_config(rows)

    def _query_all(self) -> dict[str, list[dict[str, Any]]]:
        return {t: self.client.query(t) for t in QUERIED_TYPES}

    def _to_config(self, rows: dict[str, list[dict[str, Any]]]) -> RouterConfig:
        import attrs

        from fogwire.convert import to_camel

        fields: dict[str, Any] = {}
        for entity_type in ENTITY_TYPES:
            if entity_type.name not in rows:
                continue
            known = {to_camel(f.name) for f in attrs.fields(entity_type.cls)}
            entities = []
            for row in rows[entity_type.name]:
                data = {k: v for k, v in row.items() if k in known and v is not None}
                if entity_type.name == "address" and data.get("priority") == -1:
                    data.pop("priority")
                if entity_type.name in ("router", "site") and row.get("name") == row.get("identity"):
                    data.pop("name", None)  # the router names a singleton after its identity
                try:
                    entities.append(self.converter.structure(data, entity_type.cls))
                except Exception as error:
                    raise SinkError(
                        f"the router reports a {entity_type.name} {row.get('name')!r} this model can't read: {error}"
                    ) from error
            if entity_type.singleton:
                fields[entity_type.field] = entities[0] if entities else None
            else:
                fields[entity_type.field] = tuple(entities)
        return RouterConfig(**fields)

    def _own_port(self) -> str:
        return str(self.client.url.port)

    async def apply(self, desired: RouterConfig, last_applied: RouterConfig | None) -> ApplyReport:
        """Make the router's entities match ``desired``; see the module docstring.

        Raises :class:`ConfigError` (nothing applied) when ``desired`` is not a valid
        :class:`RouterConfig`.
        """
        if not isinstance(desired, RouterConfig):
            raise SinkError(f"the skrouter sink applies a RouterConfig, got {type(desired).__name__}")
        problems = check_references(desired, "desired router config")
        if problems:
            raise ConfigError(problems)
        try:
            return await self._apply_once(desired, last_applied)
        except ConnectionLost as error:
            log.warning("%s; reconnecting and converging from the router's actual state", error)
            self._dirty = True
            try:
                return await self._apply_once(desired, None)
            except ConnectionLost as again:
                return ApplyReport(self.name, (ItemResult("router", "connect", Outcome.FAILED, str(again)),))

    async def _apply_once(self, desired: RouterConfig, last_applied: Any | None) -> ApplyReport:
        await self._run(self.client.connect)
        converge = (
            self._dirty
            or last_applied is None
            or not isinstance(last_applied, RouterConfig)
            or self.client.generation != self._seen_generation
        )
        own = self._own_port()
        if not converge and isinstance(last_applied, RouterConfig):
            plan = plan_changes(self.converter, last_applied, desired, own_listener_port=own)
            if plan.ops:
                # The first operation proves the connection; a lost one raises
                # ConnectionLost and apply() converges from the actual state.
                return await self._execute(plan)
            # Nothing to send: one cheap round trip proves the connection still reaches
            # the same router process, so a restart that dropped it is noticed.
            await self._run(lambda: self.client.query("router", ["identity"]))
            if self.client.generation == self._seen_generation:
                return await self._execute(plan)
        base = await self.actual_config()
        self._seen_generation = self.client.generation
        plan = plan_changes(self.converter, base, desired, own_listener_port=own, converge=True)
        log.info("converging the router to the desired config: %d operation(s)", len(plan.ops))
        self._dirty = False
        return await self._execute(plan)

    async def _execute(self, plan: Plan) -> ApplyReport:
        # The whole plan runs in one hop to the management thread: no event-loop
        # round trip between operations.
        return await self._run(lambda: self._execute_sync(plan))

    def _execute_sync(self, plan: Plan) -> ApplyReport:
        items: list[ItemResult] = []
        done: list[Op] = []
        for op in plan.ops:
            try:
                self._perform(op)
            except ManagementError as error:
                if isinstance(error, ManagementTimeout):
                    self._dirty = True  # the operation may have happened after all
                detail = f"{op.action} {op.label} failed: {_describe(error)}"
                log.error("skrouter: %s; rolling back %d operation(s)", detail, len(done))
                failed = ItemResult(op.label, op.action, Outcome.FAILED, _describe(error))
                return ApplyReport(self.name, (failed, *self._rollback(done, op)))
            done.append(op)
            detail = "replace" if op.replace else ""
            if log.isEnabledFor(logging.INFO):
                shown = redact(op.attributes) if op.action != "delete" else ""
                log.info("skrouter: %s %s %s", op.action, op.label, shown)
            items.append(ItemResult(op.label, op.action, Outcome.APPLIED, detail))
        for item in plan.restart:
            log.info("skrouter: %s needs a router restart: %s", item.label, item.reason)
            items.append(ItemResult(item.label, "restart", Outcome.RESTART_NEEDED, item.reason))
        if not items:
            items.append(ItemResult("router", "none", Outcome.UNCHANGED, f"{plan.unchanged} entities unchanged"))
        return ApplyReport(self.name, tuple(items))

    def _rollback(self, done: list[Op], failed: Op) -> list[ItemResult]:
        results: list[ItemResult] = []
        for op in reversed(done):
            undo = inverse(op)
            try:
                if undo is not None:
                    self._perform(undo)
                results.append(
                    ItemResult(op.label, op.action, Outcome.ROLLED_BACK, f"undone because {failed.label} failed")
                )
            except (ManagementError, ConnectionLost) as error:
                log.error("skrouter: rollback of %s %s failed: %s", op.action, op.label, _describe(error))
                results.append(ItemResult(op.label, "rollback", Outcome.FAILED, _describe(error)))
                self._dirty = True
        return results

    def _perform(self, op: Op) -> None:
        client = self.client
        if op.action == "create":
            body = {k: v for k, v in op.attributes.items() if k != "name"}
            client.create(op.type_name, op.name, body)
        elif op.action == "delete":
            if op.type_name == "address":
                client.delete("address", identity=self._address_identity(op))
            else:
                client.delete(op.type_name, name=op.name)
        elif op.action == "update":
            if op.type_name == "log":
                client.update("log", op.attributes, identity=f"log/{op.key}")
            else:
                client.update(op.type_name, op.attributes, name=op.name)
        else:  # pragma: no cover - plans hold only these actions
            raise SinkError(f"unknown plan action {op.action!r}")

    def _address_identity(self, op: Op) -> str:
        # Addresses loaded from the file have no name; their identity is a number the router picks.
        before = op.before or {}
        for row in self.client.query("address", ["identity", "name", "prefix", "pattern"]):
            if row.get("prefix") == before.get("prefix") and row.get("pattern") == before.get("pattern"):
                return str(row["identity"])
        raise ManagementError(
            "DELETE", "address", op.key, 404, f"no address with prefix/pattern {op.key!r} on the router"
        )
