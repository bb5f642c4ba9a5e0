"""Entry point of ``fogwire-config-controller``: the ``controller`` source and ``provision``/``deprovision``.

Imports only ``fogwire``: the source's code (and PyNaCl) loads when it is selected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fogwire.hookspecs import hookimpl
from fogwire.payloads import IOFOG_DOCUMENTS

if TYPE_CHECKING:
    from fogwire.payloads import Documents
    from fogwire.registry import CommandRegistry, SourceRegistry
    from fogwire.sources import ConfigSource, SourceContext


def _controller(context: SourceContext) -> ConfigSource[Documents]:
    from fogwire_config_controller.source import ControllerSource

    return ControllerSource(context)


@hookimpl
def fogwire_register_config_sources(registry: SourceRegistry) -> None:
    """Register ``controller``: the desired state from an ioFog / Datasance PoT Controller."""
    registry.add(
        "controller",
        _controller,
        produces=IOFOG_DOCUMENTS,
        description="desired state from an ioFog / PoT Controller (provision, change polling, status reports)",
        requires=("nacl",),
    )


@hookimpl
def fogwire_register_commands(registry: CommandRegistry) -> None:
    """Register ``fogwire provision KEY`` and ``fogwire deprovision``."""
    registry.add(
        "provision",
        help="join an ioFog / PoT Controller with a provisioning key",
        module="fogwire_config_controller.command",
    )
    registry.add(
        "deprovision",
        help="leave the controller: remove the managed workloads, forget the credentials",
        module="fogwire_config_controller.command",
    )
