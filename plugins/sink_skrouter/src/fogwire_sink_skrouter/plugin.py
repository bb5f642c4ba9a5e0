"""Entry point of ``fogwire-sink-skrouter``: registers the ``skrouter`` reload sink.

Imports only fogwire; python-qpid-proton is imported when the sink is used.
"""

from __future__ import annotations

from fogwire_router.model import ROUTER_CONFIG, RouterConfig

from fogwire.hookspecs import hookimpl
from fogwire.registry import SinkRegistry
from fogwire.sinks import ReloadSink, SinkContext


def _skrouter_sink(context: SinkContext) -> ReloadSink[RouterConfig]:
    from fogwire_sink_skrouter.sink import SkrouterSink

    return SkrouterSink(context)


@hookimpl
def fogwire_register_reload_sinks(registry: SinkRegistry) -> None:
    """Register ``skrouter``: applies router config changes to skrouterd over AMQP management."""
    registry.add(
        "skrouter",
        _skrouter_sink,
        consumes=ROUTER_CONFIG,
        description="applies skrouterd entities live over AMQP management, with rollback",
        requires=("proton",),
    )
