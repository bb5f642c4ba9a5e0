"""Entry point of ``fogwire-device-api``: the ``device-api`` agent service.

Imports only ``fogwire``: the service's code (wsproto, PyNaCl) loads when it is selected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fogwire.hookspecs import hookimpl

if TYPE_CHECKING:
    from fogwire.registry import ServiceRegistry
    from fogwire.services import AgentService, ServiceContext


def _device_api(context: ServiceContext) -> AgentService:
    from fogwire_device_api.service import DeviceApiService

    return DeviceApiService(context)


@hookimpl
def fogwire_register_agent_services(registry: ServiceRegistry) -> None:
    """Register ``device-api``: the on-device API on port 54321 with workload identity."""
    registry.add(
        "device-api",
        _device_api,
        description="the on-device API (54321): microservice config and control sockets, workload identity, admin routes",
    )
