"""Validation of skrouterd's JSON config: a list of ``[entityType, {attributes}]`` pairs.

The shape is ``upstream-systems.md`` §1.4. The original reader silently ignored
unknown entity types and keyed entities by ``name`` whether or not there was one.
Here the file is checked in full by the core's router model
(:func:`fogwire_router.model.structure_skrouterd_list`): known entity types only,
every attribute by name and type, the key attribute present and unique per type,
no dangling ``sslProfile`` reference. It is the model the reload sink applies, so
a config this source hands on is one the sink can apply. Every problem is
reported with its path (``[3].listener.port``).
"""

from __future__ import annotations

from typing import Any

import cattrs
from fogwire_router.model import router_converter, structure_skrouterd_list

from fogwire.errors import ConfigError, Problem, SourceError


class InvalidConfigError(SourceError):
    """The file is not a valid skrouterd config; ``problems`` lists each with its path."""

    def __init__(self, origin: str, problems: list[Problem]) -> None:
        self.origin = origin
        self.problems = tuple(problems)
        super().__init__(
            f"invalid skrouterd config {origin}:\n"
            + "\n".join(f"  {p.path or '(top level)'}: {p.message}" for p in self.problems)
        )


def validate_skrouterd_config(payload: Any, origin: str, converter: cattrs.Converter | None = None) -> list[Any]:
    """Check ``payload`` is a valid skrouterd config list; return it, or raise :class:`InvalidConfigError`."""
    try:
        structure_skrouterd_list(payload, origin, converter or router_converter())
    except ConfigError as error:
        raise InvalidConfigError(origin, list(error.problems)) from None
    return payload  # type: ignore[no-any-return]
