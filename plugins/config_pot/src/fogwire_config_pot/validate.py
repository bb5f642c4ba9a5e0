"""Validation of the router config object the controller sends in pot mode.

The controller generates a JSON object (``upstream-systems.md`` §1.3) of named
maps: ``listeners``, ``connectors``, ``sslProfiles``, ``addresses``,
``logConfig``, ``bridges.tcpListeners`` / ``bridges.tcpConnectors``, plus
``metadata`` and ``siteConfig``. It is checked in full by the core's router model
(:func:`fogwire_router.model.structure_controller_config`: every attribute of
every entity, types, duplicates, dangling ``sslProfile`` references), the same
model the reload sink applies, so a config this source hands on is one the sink
can apply. Every problem is reported with its field path; nothing of an invalid
config is handed on.
"""

from __future__ import annotations

from typing import Any

import cattrs
from fogwire_router.model import router_converter, structure_controller_config

from fogwire.errors import ConfigError, Problem, SourceError


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


def validate_router_config(payload: Any, origin: str, converter: cattrs.Converter | None = None) -> dict[str, Any]:
    """Check ``payload`` is a valid router config object; return it, or raise :class:`InvalidConfigError`.

    ``origin`` (the URL it came from) is named in the error; ``converter`` is the
    router converter to reuse (made when not given).
    """
    if not isinstance(payload, dict):
        problem = Problem(origin, 1, "", f"expected a JSON object, got {type(payload).__name__}")
        raise InvalidConfigError(origin, [problem])
    try:
        structure_controller_config(payload, origin, converter or router_converter())
    except ConfigError as error:
        raise InvalidConfigError(origin, list(error.problems)) from None
    return payload
