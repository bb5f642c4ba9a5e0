"""Validation of the router config object the controller sends in pot mode.

The controller generates a JSON object (``upstream-systems.md`` §1.3) of named
maps: ``listeners``, ``connectors``, ``sslProfiles``, ``addresses``,
``logConfig``, ``bridges.tcpListeners`` / ``bridges.tcpConnectors``, plus
``metadata`` and ``siteConfig``. The original wrapper unmarshalled it into Go
structs whose keys match case-insensitively; a type mismatch there failed the
whole update. Here every problem is collected with its field path, and nothing
of an invalid config is handed on.

Unknown top-level keys are kept (a newer controller may add sections); known
sections must have the documented shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fogwire.errors import Problem, SourceError

_NAMED_SECTIONS = ("listeners", "connectors", "sslProfiles", "addresses", "logConfig")
_OBJECT_SECTIONS = ("metadata", "siteConfig")
_BRIDGE_SECTIONS = ("tcpListeners", "tcpConnectors")


class InvalidConfigError(SourceError):
    """A config was fetched but is not a valid router config; nothing of it is used.

    ``problems`` lists each problem with its field path.
    """

    def __init__(self, origin: str, problems: list[Problem]) -> None:
        self.origin = origin
        self.problems = tuple(problems)
        super().__init__(
            f"invalid router config from {origin}; the last good config stays applied:\n"
            + "\n".join(f"  {p.path or '(top level)'}: {p.message}" for p in self.problems)
        )


def _fold(mapping: Mapping[str, Any]) -> dict[str, str]:
    """Lower-cased key → actual key, as Go's case-insensitive matching sees them."""
    return {key.lower(): key for key in mapping}


def _port(value: Any, path: str, problems: list[Problem], origin: str) -> None:
    """A port as the controller sends it: an integer, or a string of digits."""
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None or not 0 <= number <= 65535:
        problems.append(Problem(origin, 1, path, f"expected a port number 0-65535, got {value!r}"))


def _named_map(section: Any, path: str, problems: list[Problem], origin: str) -> None:
    if section is None:
        return
    if not isinstance(section, dict):
        problems.append(Problem(origin, 1, path, f"expected an object of named entries, got {type(section).__name__}"))
        return
    for key, entry in section.items():
        where = f"{path}.{key}"
        if not isinstance(entry, dict):
            problems.append(Problem(origin, 1, where, f"expected an object, got {type(entry).__name__}"))
            continue
        folded = _fold(entry)
        if "port" in folded:
            _port(entry[folded["port"]], f"{where}.{folded['port']}", problems, origin)


def validate_router_config(payload: Any, origin: str) -> dict[str, Any]:
    """Check ``payload`` is a router config object; return it, or raise :class:`InvalidConfigError`.

    ``origin`` (the URL it came from) is named in the error.
    """
    problems: list[Problem] = []
    if not isinstance(payload, dict):
        problems.append(Problem(origin, 1, "", f"expected a JSON object, got {type(payload).__name__}"))
        raise InvalidConfigError(origin, problems)
    folded = _fold(payload)
    for name in _NAMED_SECTIONS:
        key = folded.get(name.lower())
        if key is not None:
            _named_map(payload[key], key, problems, origin)
    for name in _OBJECT_SECTIONS:
        key = folded.get(name.lower())
        if key is not None and payload[key] is not None and not isinstance(payload[key], dict):
            problems.append(Problem(origin, 1, key, f"expected an object, got {type(payload[key]).__name__}"))
    bridges_key = folded.get("bridges")
    if bridges_key is not None and payload[bridges_key] is not None:
        bridges = payload[bridges_key]
        if not isinstance(bridges, dict):
            problems.append(Problem(origin, 1, bridges_key, f"expected an object, got {type(bridges).__name__}"))
        else:
            inner = _fold(bridges)
            for name in _BRIDGE_SECTIONS:
                key = inner.get(name.lower())
                if key is not None:
                    _named_map(bridges[key], f"{bridges_key}.{key}", problems, origin)
    if problems:
        raise InvalidConfigError(origin, problems)
    return payload
