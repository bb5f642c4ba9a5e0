"""Entry-point module of ``fogwire-engine-containerd``: registers the engine, imports nothing heavy.

h2, protobuf and the generated stubs are imported by the factory only, when
the agent selects ``containerd`` (or its alias ``edgelet``), so ``fogwire --help``
and every other engine pay nothing for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fogwire.engine import Engine, EngineContext
from fogwire.hookspecs import hookimpl
from fogwire.registry import EngineRegistry

if TYPE_CHECKING:
    import cattrs


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
        requires=("h2", "hpack", "google.protobuf"),
    )


@hookimpl
def fogwire_configure_converter(converter: cattrs.Converter) -> None:
    """Teach the consumer's converter the engine's options (``engineOptions``: camelCase keys, strict)."""
    from fogwire.convert import register_options_class
    from fogwire_engine_containerd._options import ContainerdOptions, configure

    configure(converter)
    register_options_class(converter, ContainerdOptions)
