"""Entry-point module: imports only fogwire's light modules and registers ``testengine``."""

from __future__ import annotations

from fogwire.engine import Engine, EngineContext
from fogwire.hookspecs import hookimpl
from fogwire.registry import EngineRegistry


def make_engine(context: EngineContext) -> Engine:
    """Build the engine; its module is imported only when the engine is selected."""
    from fogwire_testplugin_good.engine import TestEngine

    return TestEngine(context)


@hookimpl
def fogwire_register_engines(registry: EngineRegistry) -> None:
    """Register ``testengine``."""
    registry.add("testengine", make_engine, description="test fixture engine (does nothing)")
