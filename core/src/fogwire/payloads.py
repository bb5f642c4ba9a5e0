"""Payload kinds: what a config source produces and what a reload sink takes.

A source and a sink each declare one kind when they register
(``registry.add(name, factory, produces=IOFOG_DOCUMENTS)``). A consumer (the agent,
or a program such as the router wrapper) asks the plugin host for a source of the
kind it needs, and gets a :class:`~fogwire.errors.PluginLoadError` naming both sides
at load time when they don't fit, instead of a failure on every change at run time.

Core declares the kinds the agent uses; a distribution that defines another
consumer declares its own kind next to its model (the router wrapper declares
its router config). A kind is a name plus the Python type of the payload, carried
only for type checkers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar

import attrs

if TYPE_CHECKING:
    from fogwire.model.desired import DesiredState

P = TypeVar("P")

JSONValue: TypeAlias = "None | bool | int | float | str | list[JSONValue] | dict[str, JSONValue]"
"""Plain data as YAML or JSON parsing gives it."""

Documents: TypeAlias = "list[JSONValue]"
"""ioFog documents (Application, Microservice, CatalogItem, Registry, …) as parsed, not yet validated."""


@attrs.frozen
class PayloadKind(Generic[P]):
    """One kind of payload, identified by ``name``; ``description`` is what error messages say."""

    name: str
    description: str

    def accepts(self, other: PayloadKind[Any]) -> bool:
        """True when a payload of kind ``other`` may be handed to a taker of this kind."""
        return self.name in (other.name, ANY.name)

    def __str__(self) -> str:
        return self.description


ANY: PayloadKind[object] = PayloadKind("any", "any payload")
"""What a sink that takes anything (the ``log`` sink) declares."""

IOFOG_DOCUMENTS: PayloadKind[Documents] = PayloadKind(
    "iofog-documents", "ioFog documents (Applications, Microservices, CatalogItems, Registries)"
)
"""What the agent's config source must produce: the documents it validates into a desired state."""

DESIRED_STATE: PayloadKind[DesiredState] = PayloadKind(
    "iofog-desired-state", "the agent's validated desired state (fogwire.model.desired.DesiredState)"
)
"""What the agent hands its reload sinks after each change."""
