"""Every hook a fogwire plugin can implement.

Hooks only *register* things; the work then goes through the typed objects they
registered (:class:`fogwire.engine.Engine`, :class:`fogwire.sources.ConfigSource`,
:class:`fogwire.sinks.ReloadSink`). No hook is called on a hot path.

A plugin module implements hooks with :data:`hookimpl`::

    from fogwire.hookspecs import hookimpl

    @hookimpl
    def fogwire_register_engines(registry):
        registry.add("myengine", _make_engine)

Hooks evolve only by adding: a new parameter may be added to a spec (old
implementations that don't take it keep working); nothing is ever renamed or
removed without a deprecation period.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import cattrs

    from fogwire.registry import (
        CommandRegistry,
        EngineRegistry,
        ServiceRegistry,
        SinkRegistry,
        SourceRegistry,
        ValidatorRegistry,
    )

PROJECT = "fogwire"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def fogwire_register_engines(registry: EngineRegistry) -> None:
    """Register container engines.

    Called once per plugin module, when the host loads it: built-ins at start-up,
    an entry-point plugin when its name is selected in config (or when
    ``fogwire plugins`` lists everything). Only call ``registry.add(name, factory)``
    here; import heavy SDKs inside the factory, not at module level, so selecting
    another engine costs nothing.

    :param registry: add ``name -> factory`` pairs; ``factory(EngineContext)``
        returns an :class:`fogwire.engine.Engine`. A name already registered by
        another distribution raises :class:`fogwire.errors.DuplicatePluginError`.
    :return: nothing; the return value is ignored.
    """


@hookspec
def fogwire_register_config_sources(registry: SourceRegistry) -> None:
    """Register config sources.

    Called like :func:`fogwire_register_engines`. Only call
    ``registry.add(name, factory, produces=KIND)`` here, where ``KIND`` is the
    :class:`fogwire.payloads.PayloadKind` the source's payloads are
    (:data:`fogwire.payloads.IOFOG_DOCUMENTS` for the agent's desired state). A
    consumer loads only a source of the kind it needs and refuses another at load
    time, naming both.

    :param registry: add ``name -> factory`` pairs; ``factory(SourceContext)``
        returns a :class:`fogwire.sources.ConfigSource`.
    :return: nothing; the return value is ignored.
    """


@hookspec
def fogwire_register_reload_sinks(registry: SinkRegistry) -> None:
    """Register reload sinks.

    Called like :func:`fogwire_register_engines`. Only call
    ``registry.add(name, factory, consumes=KIND)`` here, where ``KIND`` is the
    :class:`fogwire.payloads.PayloadKind` the sink takes (the agent gives its sinks
    :data:`fogwire.payloads.DESIRED_STATE`; :data:`fogwire.payloads.ANY` takes every
    kind). A consumer refuses a sink of another kind at load time, naming both.

    :param registry: add ``name -> factory`` pairs; ``factory(SinkContext)``
        returns a :class:`fogwire.sinks.ReloadSink`.
    :return: nothing; the return value is ignored.
    """


@hookspec
def fogwire_register_agent_services(registry: ServiceRegistry) -> None:
    """Register services the agent's daemon can run beside its own loops.

    Called like :func:`fogwire_register_engines`, when the agent config selects the
    service by name (``services: [{name: ..., options: ...}]``). Only call
    ``registry.add(name, factory)`` here.

    :param registry: add ``name -> factory`` pairs; ``factory(ServiceContext)``
        returns a :class:`fogwire.services.AgentService`.
    :return: nothing; the return value is ignored.
    """


@hookspec
def fogwire_register_commands(registry: CommandRegistry) -> None:
    """Register ``fogwire`` subcommands (a program of its own, such as ``fogwire router``).

    Called when the ``fogwire`` command lists its commands (``fogwire --help``) or
    runs one that is not built in; the entry point's name in ``fogwire.commands`` is
    the command's name. Only call ``registry.add(name, help=..., module=...)`` here:
    the module, imported only when the command runs, defines
    ``add_arguments(name, parser)`` and ``run(args) -> int``, or ``main(argv) -> int``
    with ``own_argv=True``. Core's own commands register through this hook too.

    :param registry: add commands by name.
    :return: nothing; the return value is ignored.
    """


@hookspec
def fogwire_register_validators(registry: ValidatorRegistry) -> None:
    """Register validators of documents the plugin owns, for ``fogwire validate``.

    Called when ``fogwire validate`` runs, on every plugin in the ``fogwire.validators``
    entry-point group (a broken one is warned about and skipped). Only call
    ``registry.add(name, factory)`` here; ``factory()`` returns a
    :class:`fogwire.validation.DocumentValidator`, which ``fogwire validate`` offers
    every document that is neither an ioFog document nor an agent config.

    :param registry: add ``name -> factory`` pairs.
    :return: nothing; the return value is ignored.
    """


@hookspec
def fogwire_configure_converter(converter: cattrs.Converter) -> None:
    """Add a plugin's own types to the core's cattrs converter.

    Called on every loaded plugin right after the host makes its converter and
    before anything is structured with it. Register structure/unstructure hooks
    for the plugin's attrs classes here (e.g. options of an engine); never replace
    the core's hooks for core types.

    :param converter: the one converter core owns (made by
        :func:`fogwire.convert.make_converter`).
    :return: nothing; the return value is ignored.
    """
