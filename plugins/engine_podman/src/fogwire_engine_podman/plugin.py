"""Registers the ``podman`` engine; imports only fogwire, never the podman SDK."""

from __future__ import annotations

from fogwire.engine import Engine, EngineContext
from fogwire.hookspecs import hookimpl
from fogwire.registry import EngineRegistry


def _podman_engine(context: EngineContext) -> Engine:
    from fogwire_engine_podman.engine import PodmanEngine

    return PodmanEngine(context)


@hookimpl
def fogwire_register_engines(registry: EngineRegistry) -> None:
    """Register ``podman``: Podman's libpod REST service, started by the plugin if none answers."""
    registry.add("podman", _podman_engine, description="Podman through its libpod REST service", requires=("podman",))
