"""Entry-point module of ``fogwire-engine-containerd``: registers the engine, imports nothing heavy.

h2, protobuf and the generated stubs are imported by the factory only, when
the agent selects ``containerd`` (or its alias ``edgelet``), so ``fogwire --help``
and every other engine pay nothing for them.
"""

from __future__ import annotations

from fogwire.engine import Engine, EngineContext
from fogwire.hookspecs import hookimpl
from fogwire.registry import EngineRegistry


def _containerd_engine(context: EngineContext) -> Engine:
    from fogwire_engine_containerd.engine import ContainerdEngine

    return ContainerdEngine(context)


@hookimpl
def fogwire_register_engines(registry: EngineRegistry) -> None:
    """Register ``containerd`` (alias ``edgelet``): containerd over gRPC, embedded when none is configured."""
    registry.add(
        "containerd",
        _containerd_engine,
        description="containerd over gRPC; starts an embedded containerd when none is configured",
        aliases=("edgelet",),
    )
