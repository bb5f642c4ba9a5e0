"""Entry-point module: imports only fogwire's light modules and registers ``testengine``."""

from __future__ import annotations

from fogwire.engine import Engine, EngineContext
from fogwire.hookspecs import hookimpl
from fogwire.registry import EngineRegistry


def make_engine(context: EngineContext) -> Engine:
    """Build the engine; its module is imported only when the engine is selected."""
    from fogwire_testplugin_good.engine import TestEngine

    return TestEngine(context)


def make_engine_without_sdk(context: EngineContext) -> Engine:
    """Build an engine whose SDK is missing: the most common real plugin failure."""
    import fogwire_testplugin_missing_sdk  # type: ignore[import-not-found]  # noqa: F401 - fails on purpose

    raise AssertionError("unreachable: the SDK import above fails")


@hookimpl
def fogwire_register_engines(registry: EngineRegistry) -> None:
    """Register ``testengine``, and ``testengine-nosdk`` whose factory needs a missing SDK."""
    registry.add("testengine", make_engine, description="test fixture engine (does nothing)")
    registry.add(
        "testengine-nosdk",
        make_engine_without_sdk,
        description="test fixture engine whose SDK is not installed",
        requires=("fogwire_testplugin_missing_sdk",),
    )
