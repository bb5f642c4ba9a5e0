"""Diff two router configs and order the management operations that turn one into the other.

Pure (no I/O), so it is tested and benchmarked on its own. Entities are matched by
type and key (``name``; ``prefix`` for an address; ``module`` for a log) and compared
on **every** attribute, after dropping values equal to the schema default (the
router reports defaults it was never given).

What the router allows decides the operation: UPDATE for an sslProfile (every
attribute but the uid ones), a tcpListener's ``observer`` and a log's settings;
DELETE then CREATE for everything else. ``router`` and ``site`` can't change live,
nor can the listener the sink itself is connected through: those become
restart-needed items. Deletes run first (dependants before what they depend on),
then creates and updates (sslProfiles first, tcpConnectors before tcpListeners).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import cattrs
from fogwire_router.model import (
    SCHEMA_DEFAULTS,
    RouterConfig,
    entities_of,
    entity_attributes,
)

DELETE_ORDER = ("tcpListener", "tcpConnector", "listener", "connector", "address", "sslProfile")
"""Deletes: users of an sslProfile before the profile; listeners before connectors of a bridge."""
CREATE_ORDER = ("sslProfile", "listener", "connector", "address", "tcpConnector", "tcpListener", "log")
"""Creates and updates: profiles before their users; tcpConnectors before tcpListeners."""
UPDATABLE: dict[str, frozenset[str]] = {
    "sslProfile": frozenset(
        {
            "ciphers",
            "protocols",
            "caCertFile",
            "certFile",
            "privateKeyFile",
            "password",
            "ordinal",
            "oldestValidOrdinal",
        }
    ),
    "tcpListener": frozenset({"observer"}),
    "log": frozenset({"enable", "includeTimestamp", "includeSource", "outputFile"}),
}
"""Attributes the router accepts in an UPDATE, per type (skrouter.json 3.5.1, confirmed on the router)."""
SECRET_ATTRIBUTES = frozenset({"password", "saslPassword"})
"""Never shown in a detail or log line."""


@attrs.frozen
class Op:
    """One management operation of a plan.

    ``attributes`` is the CREATE body or the UPDATE's changed attributes; ``before``
    is the entity's attribute map before the operation (what a rollback restores).
    """

    action: str
    type_name: str
    key: str
    name: str | None
    attributes: Mapping[str, Any] = attrs.field(factory=dict)
    before: Mapping[str, Any] | None = None
    replace: bool = False

    @property
    def label(self) -> str:
        """``tcpListener/svc-listener``."""
        return f"{self.type_name}/{self.key}"


@attrs.frozen
class RestartItem:
    """A change that only takes effect when the router restarts, and why."""

    type_name: str
    key: str
    reason: str

    @property
    def label(self) -> str:
        """``router/router``."""
        return f"{self.type_name}/{self.key}"


@attrs.frozen
class Plan:
    """The ordered operations, the restart-needed changes and how many entities are unchanged."""

    ops: tuple[Op, ...] = ()
    restart: tuple[RestartItem, ...] = ()
    unchanged: int = 0


def normalized(type_name: str, attributes: Mapping[str, Any]) -> dict[str, Any]:
    """``attributes`` without unset values and without values equal to the schema default."""
    defaults = SCHEMA_DEFAULTS.get(type_name, {})
    return {k: v for k, v in attributes.items() if v is not None and not (k in defaults and defaults[k] == v)}


def _changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> set[str]:
    return {k for k in set(before) | set(after) if before.get(k) != after.get(k)}


def _management_name(type_name: str, attributes: Mapping[str, Any]) -> str | None:
    if type_name == "log":
        return None
    name = attributes.get("name")
    return None if name is None else str(name)


def plan_changes(
    converter: cattrs.Converter,
    base: RouterConfig,
    desired: RouterConfig,
    *,
    own_listener_port: str | None = None,
    converge: bool = False,
) -> Plan:
    """The plan that turns ``base`` (what the router has) into ``desired``.

    ``converge`` is set when ``base`` was read from the router (QUERY): then the
    ``router``/``site`` singletons and the logs are compared only on the attributes
    ``desired`` sets (the router reports many more), logs the config does not
    mention are left alone, and a number or flag the router reports for an attribute
    ``desired`` leaves unset is not a difference.
    """
    ops_delete: dict[str, list[Op]] = {t: [] for t in DELETE_ORDER}
    ops_create: dict[str, list[Op]] = {t: [] for t in CREATE_ORDER}
    restart: list[RestartItem] = []
    unchanged = 0

    for type_name in ("router", "site"):
        old = {k: entity_attributes(converter, e) for k, e in entities_of(base, type_name).items()}
        new = {k: entity_attributes(converter, e) for k, e in entities_of(desired, type_name).items()}
        old_attrs = normalized(type_name, old.get(type_name, {}))
        new_attrs = normalized(type_name, new.get(type_name, {}))
        if converge:
            old_attrs = {k: v for k, v in old_attrs.items() if k in new_attrs}
        if old_attrs != new_attrs:
            names = ", ".join(sorted(_changed(old_attrs, new_attrs)))
            restart.append(
                RestartItem(type_name, type_name, f"{type_name} attributes ({names}) are only read at start")
            )
        elif new:
            unchanged += 1

    old_logs = {k: normalized("log", entity_attributes(converter, e)) for k, e in entities_of(base, "log").items()}
    new_logs = {k: normalized("log", entity_attributes(converter, e)) for k, e in entities_of(desired, "log").items()}
    for module, attributes in new_logs.items():
        before = old_logs.get(module, {"module": module})
        compared = {k: v for k, v in before.items() if k in attributes} if converge else before
        changed = _changed(compared, attributes)
        if not changed:
            unchanged += 1
        elif any(attributes.get(k) is None for k in changed):
            unset = ", ".join(sorted(k for k in changed if attributes.get(k) is None))
            restart.append(RestartItem("log", module, f"log setting(s) {unset} can't be unset live"))
        else:
            body = {k: attributes[k] for k in sorted(changed)}
            ops_create["log"].append(Op("update", "log", module, None, body, {k: before.get(k) for k in changed}))
    if not converge:
        for module in old_logs.keys() - new_logs.keys():
            restart.append(RestartItem("log", module, "removed log settings stay until the router restarts"))

    for type_name in DELETE_ORDER:
        old_entities = entities_of(base, type_name)
        new_entities = entities_of(desired, type_name)
        old = {}
        new = {}
        for key, entity in old_entities.items():
            other = new_entities.get(key)
            if other is not None and other == entity:
                unchanged += 1  # equal values: no need to look at attributes (the common case)
                continue
            old[key] = entity_attributes(converter, entity)
            if other is not None:
                new[key] = entity_attributes(converter, other)
        for key, entity in new_entities.items():
            if key not in old_entities:
                new[key] = entity_attributes(converter, entity)
        for key, before in old.items():
            own = (
                type_name == "listener"
                and own_listener_port is not None
                and str(before.get("port")) == own_listener_port
            )
            name = _management_name(type_name, before)
            if key not in new:
                if own:
                    restart.append(RestartItem(type_name, key, "the sink manages the router through this listener"))
                else:
                    ops_delete[type_name].append(Op("delete", type_name, key, name, {}, before))
                continue
            after = new[key]
            old_norm, new_norm = normalized(type_name, before), normalized(type_name, after)
            if converge:
                # The router may fill numbers and flags the config leaves unset with values of
                # its own (computed, not the schema default); only a string it reports for an
                # unset attribute (a profile, an address, a site id) is drift.
                old_norm = {k: v for k, v in old_norm.items() if k in new_norm or not isinstance(v, (int, bool))}
            changed = _changed(old_norm, new_norm)
            if not changed:
                unchanged += 1
                continue
            if own:
                restart.append(RestartItem(type_name, key, "the sink manages the router through this listener"))
                continue
            updatable = UPDATABLE.get(type_name, frozenset())
            defaults = SCHEMA_DEFAULTS.get(type_name, {})
            if changed <= updatable and all(k in new_norm or k in defaults for k in changed):
                body = {k: new_norm.get(k, defaults.get(k)) for k in sorted(changed)}
                ops_create[type_name].append(Op("update", type_name, key, name, body, before))
            else:
                ops_delete[type_name].append(Op("delete", type_name, key, name, {}, before, replace=True))
                ops_create[type_name].append(
                    Op("create", type_name, key, _management_name(type_name, after), after, before, replace=True)
                )
        for key, after in new.items():
            if key not in old_entities:
                ops_create[type_name].append(
                    Op("create", type_name, key, _management_name(type_name, after), after, None)
                )

    ops = [op for t in DELETE_ORDER for op in ops_delete[t]] + [op for t in CREATE_ORDER for op in ops_create[t]]
    return Plan(tuple(ops), tuple(restart), unchanged)


def inverse(op: Op) -> Op | None:
    """The operation that undoes ``op`` (``None`` if nothing needs undoing)."""
    if op.action == "create":
        return Op("delete", op.type_name, op.key, op.name, {}, op.attributes)
    if op.action == "delete" and op.before is not None:
        return Op("create", op.type_name, op.key, op.name, op.before, None)
    if op.action == "update" and op.before is not None:
        defaults = SCHEMA_DEFAULTS.get(op.type_name, {})
        body = {k: op.before.get(k, defaults.get(k)) for k in op.attributes}
        return Op("update", op.type_name, op.key, op.name, body, op.attributes)
    return None


def redact(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """``attributes`` with secrets replaced, for details and logs."""
    return {k: ("*****" if k in SECRET_ATTRIBUTES and v is not None else v) for k, v in attributes.items()}
