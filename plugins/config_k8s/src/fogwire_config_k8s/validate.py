"""Validation of skrouterd's JSON config: a list of ``[entityType, {attributes}]`` pairs.

The shape is ``upstream-systems.md`` §1.4. The original reader fails on a top
level that is not a list, an element that is not a 2-element list, or a type that
is not a string; it silently ignores unknown types and keys entities by ``name``
(``prefix`` for address, ``module`` for log), so two nameless listeners collapse
into one. Here every problem is collected with its path (``[3][1].port``), the
key attribute must be present and unique per type (the reload sink diffs by it),
and an unknown type is kept (skrouterd may know it) with a warning.
"""

from __future__ import annotations

import logging
from typing import Any

from fogwire.errors import Problem, SourceError

log = logging.getLogger(__name__)

KEY_ATTRIBUTE = {
    "address": "prefix",
    "log": "module",
    "listener": "name",
    "connector": "name",
    "sslProfile": "name",
    "tcpListener": "name",
    "tcpConnector": "name",
}
"""The attribute identifying each keyed entity type."""

KNOWN_TYPES = frozenset(KEY_ATTRIBUTE) | {"router", "site"}
"""The entity types the wrapper models; others are passed through."""

_PORTED = ("listener", "connector", "tcpListener", "tcpConnector")


class InvalidConfigError(SourceError):
    """The file is not a valid skrouterd config; ``problems`` lists each with its path."""

    def __init__(self, origin: str, problems: list[Problem]) -> None:
        self.origin = origin
        self.problems = tuple(problems)
        super().__init__(
            f"invalid skrouterd config {origin}:\n"
            + "\n".join(f"  {p.path or '(top level)'}: {p.message}" for p in self.problems)
        )


def _check_port(value: Any, path: str, problems: list[Problem], origin: str) -> None:
    """skrouterd's port is a string (a number or a service name such as ``amqp``) or an integer."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        problems.append(Problem(origin, 1, path, f"expected a port number or service name, got {value!r}"))
        return
    text = str(value).strip()
    if not text:
        problems.append(Problem(origin, 1, path, "expected a port number or service name, got an empty string"))
    elif text.lstrip("-").isdigit() and not 0 <= int(text) <= 65535:
        problems.append(Problem(origin, 1, path, f"expected a port number 0-65535, got {value!r}"))


def validate_skrouterd_config(payload: Any, origin: str) -> list[Any]:
    """Check ``payload`` is a skrouterd config list; return it, or raise :class:`InvalidConfigError`."""
    problems: list[Problem] = []
    if not isinstance(payload, list):
        problems.append(
            Problem(
                origin, 1, "", f"expected a list of [entityType, {{attributes}}] pairs, got {type(payload).__name__}"
            )
        )
        raise InvalidConfigError(origin, problems)
    seen: dict[tuple[str, str], int] = {}
    routers: list[int] = []
    for index, element in enumerate(payload):
        where = f"[{index}]"
        if not isinstance(element, list) or len(element) != 2:
            problems.append(
                Problem(origin, 1, where, f"expected an [entityType, {{attributes}}] pair, got {element!r:.80}")
            )
            continue
        kind, attributes = element
        if not isinstance(kind, str):
            problems.append(Problem(origin, 1, f"{where}[0]", f"expected an entity type name, got {kind!r:.80}"))
            continue
        if not isinstance(attributes, dict):
            problems.append(
                Problem(
                    origin, 1, f"{where}[1]", f"expected the {kind} attributes object, got {type(attributes).__name__}"
                )
            )
            continue
        if kind not in KNOWN_TYPES:
            log.warning("%s %s: entity type %r is not modelled; passed through as is", origin, where, kind)
            continue
        if kind == "router":
            routers.append(index)
        key_name = KEY_ATTRIBUTE.get(kind)
        if key_name is not None:
            key = attributes.get(key_name)
            if not isinstance(key, str) or not key:
                problems.append(Problem(origin, 1, f"{where}[1].{key_name}", f"a {kind} needs a non-empty {key_name}"))
            elif (kind, key) in seen:
                problems.append(
                    Problem(
                        origin,
                        1,
                        f"{where}[1].{key_name}",
                        f"duplicate {kind} {key_name} {key!r} (also at [{seen[(kind, key)]}])",
                    )
                )
            else:
                seen[(kind, key)] = index
        if kind in _PORTED and "port" in attributes:
            _check_port(attributes["port"], f"{where}[1].port", problems, origin)
    if len(routers) > 1:
        problems.append(Problem(origin, 1, f"[{routers[1]}]", f"more than one router entity (first at [{routers[0]}])"))
    if problems:
        raise InvalidConfigError(origin, problems)
    return payload
