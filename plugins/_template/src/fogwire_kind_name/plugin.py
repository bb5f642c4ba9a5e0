"""Entry-point module of ``fogwire-kind-name``: registers the engine ``name``.

Imports only fogwire and light code, so listing or selecting another plugin costs
nothing; the engine class and its SDK are imported by :func:`make_engine`, on use.
"""

from __future__ import annotations

from fogwire.engine import Engine, EngineContext
from fogwire.hookspecs import hookimpl
from fogwire.registry import EngineRegistry


def make_engine(context: EngineContext) -> Engine:
    """Build the engine; imports the class module (and its SDK) only now."""
    from fogwire_kind_name.engine import NameEngine

    return NameEngine(context)


@hookimpl
def fogwire_register_engines(registry: EngineRegistry) -> None:
    """Register ``name`` (the entry-point name, the ``containerEngine`` config key)."""
    registry.add("name", make_engine, description="<what it drives>")
