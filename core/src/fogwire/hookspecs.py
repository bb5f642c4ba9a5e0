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

    from fogwire.registry import EngineRegistry, SinkRegistry, SourceRegistry

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
    ``registry.add(name, factory)`` here.

    :param registry: add ``name -> factory`` pairs; ``factory(SourceContext)``
        returns a :class:`fogwire.sources.ConfigSource`.
    :return: nothing; the return value is ignored.
    """


@hookspec
def fogwire_register_reload_sinks(registry: SinkRegistry) -> None:
    """Register reload sinks.

    Called like :func:`fogwire_register_engines`. Only call
    ``registry.add(name, factory)`` here.

    :param registry: add ``name -> factory`` pairs; ``factory(SinkContext)``
        returns a :class:`fogwire.sinks.ReloadSink`.
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
