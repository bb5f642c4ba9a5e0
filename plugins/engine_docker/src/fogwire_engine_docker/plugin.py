"""Registers the ``docker`` engine; imports only fogwire, never the docker SDK."""

from __future__ import annotations

from fogwire.engine import Engine, EngineContext
from fogwire.hookspecs import hookimpl
from fogwire.registry import EngineRegistry


def _docker_engine(context: EngineContext) -> Engine:
    from fogwire_engine_docker.engine import DockerEngine

    return DockerEngine(context)


@hookimpl
def fogwire_register_engines(registry: EngineRegistry) -> None:
    """Register ``docker``: Docker Engine over its API socket (local or remote with TLS)."""
    registry.add("docker", _docker_engine, description="Docker Engine through the docker SDK", requires=("docker",))
