"""Registers the ``kubernetes`` config source.

Imports only ``fogwire``: the watcher is imported when the source is built.
"""

from __future__ import annotations

from fogwire_router.model import ROUTER_DOCUMENT

from fogwire.hookspecs import hookimpl
from fogwire.payloads import JSONValue
from fogwire.registry import SourceRegistry
from fogwire.sources import ConfigSource, SourceContext


def _mounted_file_source(context: SourceContext) -> ConfigSource[JSONValue]:
    from fogwire_config_k8s.source import MountedFileSource

    return MountedFileSource(context)


@hookimpl
def fogwire_register_config_sources(registry: SourceRegistry) -> None:
    """Register ``kubernetes``: the skrouterd config file a ConfigMap mounts, watched through its directory."""
    registry.add(
        "kubernetes",
        _mounted_file_source,
        produces=ROUTER_DOCUMENT,
        description="skrouterd JSON config mounted at QDROUTERD_CONF (ConfigMap), watched through its directory",
    )
