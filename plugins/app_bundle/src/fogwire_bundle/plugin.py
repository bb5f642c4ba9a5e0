"""Entry point of ``fogwire-bundle``: the ``bundle`` command and the ``bundle-watch`` agent service.

Imports only ``fogwire``: the bundle code loads when the command or the service runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fogwire.hookspecs import hookimpl

if TYPE_CHECKING:
    from fogwire.registry import CommandRegistry, ServiceRegistry
    from fogwire.services import AgentService, ServiceContext


def _bundle_watch(context: ServiceContext) -> AgentService:
    from fogwire_bundle.service import BundleWatchService

    return BundleWatchService(context)


@hookimpl
def fogwire_register_commands(registry: CommandRegistry) -> None:
    """Register ``fogwire bundle create | import | watch``."""
    registry.add("bundle", help="create, import and watch offline image bundles", module="fogwire_bundle.command")


@hookimpl
def fogwire_register_agent_services(registry: ServiceRegistry) -> None:
    """Register ``bundle-watch``: the daemon imports bundles dropped into a folder into its engine."""
    registry.add(
        "bundle-watch",
        _bundle_watch,
        description="imports offline bundles dropped into a folder into the agent's engine",
    )
