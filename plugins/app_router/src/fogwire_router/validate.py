"""``fogwire validate`` for skrouterd configs: a list of ``[entityType, {attributes}]`` pairs."""

from __future__ import annotations

import attrs
import cattrs

from fogwire.errors import ConfigError, Problem
from fogwire.payloads import JSONValue
from fogwire.validation import DocumentValidator
from fogwire_router.model import router_converter, structure_skrouterd_list


class SkrouterdValidator(DocumentValidator):
    """Claims every YAML/JSON list (ioFog documents and agent configs are mappings)."""

    name = "skrouterd"

    def claims(self, document: JSONValue) -> bool:
        """A list is a skrouterd config."""
        return isinstance(document, list)

    def problems(self, document: JSONValue, origin: str, index: int, converter: cattrs.Converter) -> list[Problem]:
        """Every problem of the entity list, numbered as the ``index``-th document of ``origin``."""
        try:
            structure_skrouterd_list(document, origin, router_converter(converter))
        except ConfigError as error:  # the router model numbers every problem DOC#1
            return [attrs.evolve(p, index=index) for p in error.problems]
        return []
