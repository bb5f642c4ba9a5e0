"""Registers the ``pot`` config source (and its alias ``iofog``).

Imports only ``fogwire``: ``aiohttp`` is imported when the source is built.
"""

from __future__ import annotations

from fogwire_router.model import ROUTER_DOCUMENT

from fogwire.hookspecs import hookimpl
from fogwire.payloads import JSONValue
from fogwire.registry import SourceRegistry
from fogwire.sources import ConfigSource, SourceContext


def _local_api_source(context: SourceContext) -> ConfigSource[JSONValue]:
    from fogwire_config_pot.source import LocalApiSource

    return LocalApiSource(context)


@hookimpl
def fogwire_register_config_sources(registry: SourceRegistry) -> None:
    """Register ``pot`` (alias ``iofog``): router config from the ioFog/PoT local API."""
    registry.add(
        "pot",
        _local_api_source,
        produces=ROUTER_DOCUMENT,
        description="router config from the ioFog/PoT local API (EdgeletAPI v1 or legacy v2), control websocket",
        requires=("aiohttp",),
        aliases=("iofog",),
    )
