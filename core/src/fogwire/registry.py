"""The registries plugins add their factories to from the registration hooks."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

import attrs

from fogwire.engine import Engine, EngineContext
from fogwire.errors import DuplicatePluginError
from fogwire.sinks import ReloadSink, SinkContext
from fogwire.sources import ConfigSource, SourceContext

F = TypeVar("F")

EngineFactory = Callable[[EngineContext], Engine]
"""Builds an engine; usually the engine class itself, imported lazily."""
SourceFactory = Callable[[SourceContext], ConfigSource]
"""Builds a config source."""
SinkFactory = Callable[[SinkContext], ReloadSink]
"""Builds a reload sink."""


@attrs.frozen
class Registration(Generic[F]):
    """One registered plugin name and the factory behind it."""

    name: str
    factory: F
    owner: str
    description: str = ""
    aliases: tuple[str, ...] = ()


class PluginRegistry(Generic[F]):
    """Name → factory for one plugin kind.

    ``owner`` (set by the host while a plugin's hook runs) names the distribution
    registering, so a clash can name both sides.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._by_name: dict[str, Registration[F]] = {}
        self.owner = "fogwire"

    def add(self, name: str, factory: F, *, description: str = "", aliases: Sequence[str] = ()) -> None:
        """Register ``factory`` under ``name`` (and each of ``aliases``).

        Raises :class:`~fogwire.errors.DuplicatePluginError` if another plugin has
        already registered that name for this kind.
        """
        registration = Registration(name, factory, self.owner, description, tuple(aliases))
        for key in (name, *aliases):
            existing = self._by_name.get(key)
            if existing is not None and existing.owner != self.owner:
                raise DuplicatePluginError(
                    f"{self.kind} {key!r} is registered by both {existing.owner!r} and {self.owner!r}; "
                    "uninstall one, or disable one with FOGWIRE_DISABLE_PLUGINS"
                )
            self._by_name[key] = registration

    def get(self, name: str) -> Registration[F] | None:
        """The registration for ``name`` or an alias of it, if any."""
        return self._by_name.get(name)

    def __iter__(self) -> Iterator[Registration[F]]:
        seen: set[str] = set()
        for registration in self._by_name.values():
            if registration.name not in seen:
                seen.add(registration.name)
                yield registration

    def names(self) -> list[str]:
        """Every registered name, aliases included, sorted."""
        return sorted(self._by_name)


EngineRegistry = PluginRegistry[EngineFactory]
SourceRegistry = PluginRegistry[SourceFactory]
SinkRegistry = PluginRegistry[SinkFactory]
