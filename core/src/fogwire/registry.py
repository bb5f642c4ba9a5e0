"""The registries plugins add their factories to from the registration hooks."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import attrs

from fogwire.engine import Engine, EngineContext
from fogwire.errors import DuplicatePluginError
from fogwire.payloads import PayloadKind
from fogwire.services import AgentService, ServiceContext
from fogwire.sinks import ReloadSink, SinkContext
from fogwire.sources import ConfigSource, SourceContext
from fogwire.validation import DocumentValidator

F = TypeVar("F")

EngineFactory = Callable[[EngineContext], Engine]
"""Builds an engine; usually the engine class itself, imported lazily."""
SourceFactory = Callable[[SourceContext], ConfigSource[Any]]
"""Builds a config source."""
SinkFactory = Callable[[SinkContext], ReloadSink[Any]]
"""Builds a reload sink."""
ServiceFactory = Callable[[ServiceContext], AgentService]
"""Builds a service the agent's daemon runs beside its loops."""
ValidatorFactory = Callable[[], DocumentValidator]
"""Builds a document validator for ``fogwire validate``."""


@attrs.frozen
class CommandSpec:
    """A ``fogwire`` subcommand a plugin adds (see :func:`fogwire.hookspecs.fogwire_register_commands`).

    ``module`` is imported only when the command runs; it defines
    ``add_arguments(name, parser)`` and ``run(args) -> int`` (the exit code). With
    ``own_argv`` the module instead defines ``main(argv) -> int`` and parses its own
    arguments (a container entrypoint whose flags must not mix with fogwire's).
    """

    help: str
    module: str
    own_argv: bool = False


@attrs.frozen
class Registration(Generic[F]):
    """One registered plugin name and the factory behind it.

    ``payload`` is the kind a config source produces or a reload sink takes (``None``
    for other kinds, or a plugin that declared none). ``requires`` names the modules
    the factory imports (an SDK), which ``fogwire plugins`` checks are installed.
    """

    name: str
    factory: F
    owner: str
    description: str = ""
    aliases: tuple[str, ...] = ()
    payload: PayloadKind[Any] | None = None
    requires: tuple[str, ...] = ()


class PluginRegistry(Generic[F]):
    """Name → registration for one plugin kind; each kind's subclass has the ``add`` its hook calls.

    ``owner`` (set by the host while a plugin's hook runs) names the distribution
    registering, so a clash can name both sides.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._by_name: dict[str, Registration[F]] = {}
        self.owner = "fogwire"

    def _add(self, registration: Registration[F]) -> None:
        """Store ``registration`` under its name and aliases; a name another owner holds is an error."""
        for key in (registration.name, *registration.aliases):
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


class FactoryRegistry(PluginRegistry[F]):
    """A kind whose plugins are factories with no payload (engines, agent services)."""

    def add(
        self,
        name: str,
        factory: F,
        *,
        description: str = "",
        aliases: Sequence[str] = (),
        requires: Sequence[str] = (),
    ) -> None:
        """Register ``factory`` under ``name`` (and each of ``aliases``).

        ``requires`` lists the modules the factory imports (``("docker",)``): ``fogwire
        plugins`` reports a plugin whose module is missing. Raises
        :class:`~fogwire.errors.DuplicatePluginError` if another distribution has
        already registered that name for this kind.
        """
        self._add(Registration(name, factory, self.owner, description, tuple(aliases), None, tuple(requires)))


class SourceRegistry(PluginRegistry[SourceFactory]):
    """Config sources: each declares the :class:`~fogwire.payloads.PayloadKind` it produces."""

    def add(
        self,
        name: str,
        factory: SourceFactory,
        *,
        produces: PayloadKind[Any] | None = None,
        description: str = "",
        aliases: Sequence[str] = (),
        requires: Sequence[str] = (),
    ) -> None:
        """Register a source that produces payloads of kind ``produces`` (see :meth:`FactoryRegistry.add`).

        ``produces=None`` is allowed so an old plugin still registers, but every
        consumer refuses such a source when it is selected, saying why.
        """
        self._add(Registration(name, factory, self.owner, description, tuple(aliases), produces, tuple(requires)))


class SinkRegistry(PluginRegistry[SinkFactory]):
    """Reload sinks: each declares the :class:`~fogwire.payloads.PayloadKind` it takes."""

    def add(
        self,
        name: str,
        factory: SinkFactory,
        *,
        consumes: PayloadKind[Any] | None = None,
        description: str = "",
        aliases: Sequence[str] = (),
        requires: Sequence[str] = (),
    ) -> None:
        """Register a sink taking payloads of kind ``consumes`` (:data:`fogwire.payloads.ANY`: every kind)."""
        self._add(Registration(name, factory, self.owner, description, tuple(aliases), consumes, tuple(requires)))


class CommandRegistry(PluginRegistry[CommandSpec]):
    """``fogwire`` subcommands: name → :class:`CommandSpec`."""

    def add(self, name: str, *, help: str, module: str, own_argv: bool = False, aliases: Sequence[str] = ()) -> None:
        """Register subcommand ``name``, run by ``module`` (see :class:`CommandSpec`), with one line of ``help``."""
        self._add(Registration(name, CommandSpec(help, module, own_argv), self.owner, help, tuple(aliases)))


EngineRegistry = FactoryRegistry[EngineFactory]
"""Engines: ``factory(EngineContext)`` returns an :class:`~fogwire.engine.Engine`."""
ServiceRegistry = FactoryRegistry[ServiceFactory]
"""Agent services: ``factory(ServiceContext)`` returns an :class:`~fogwire.services.AgentService`."""
ValidatorRegistry = FactoryRegistry[ValidatorFactory]
"""Document validators: ``factory()`` returns a :class:`~fogwire.validation.DocumentValidator`."""
