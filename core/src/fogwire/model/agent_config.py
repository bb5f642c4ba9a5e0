"""The agent config: profiles as in edgelet's ``config.yaml``, plus fogwire's own keys.

::

    currentProfile: production
    profiles:
      production:
        containerEngine: containerd      # edgelet is accepted as an alias
        containerEngineUrl: null         # null: the engine's default (embedded containerd)
        pruningFrequency: 24             # hours; 0 disables pruning
        watchdogEnabled: true
        configSource: {name: file, options: {path: /etc/fogwire/desired.yaml}}
        reloadSinks: []
        services: []                     # e.g. [{name: bundle-watch, options: {dir: /var/lib/fogwire/bundles-inbox}}]
        controllerUrl: null              # with configSource {name: controller}: https://controller:51121/api/v3/
        controllerCert: null             # CA file or PEM of a controller behind a private CA
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from fogwire.convert import NonNegativeInt, PositiveInt

ENGINE_ALIASES = {"edgelet": "containerd"}
"""Names accepted for an engine and the name they stand for."""

KNOWN_ENGINES_BY_OS = {
    "linux": ("containerd", "docker", "podman"),
    "darwin": ("docker", "podman"),
    "win32": ("docker", "podman"),
}
"""The fogwire engines each OS can run; third-party engine names pass through."""


def default_engine(platform: str = sys.platform) -> str:
    """``containerd`` on Linux, ``docker`` elsewhere (as edgelet)."""
    return "containerd" if platform.startswith("linux") else "docker"


@attrs.frozen
class PluginSelection:
    """A plugin chosen by name, with its options."""

    name: str
    options: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Profile:
    """One profile of the agent config."""

    container_engine: str | None = None
    container_engine_url: str | None = None
    engine_options: Mapping[str, Any] = attrs.field(factory=dict)
    pruning_frequency: NonNegativeInt = NonNegativeInt(24)
    watchdog_enabled: bool = False
    arch: str = "auto"
    controller_url: str | None = None
    """The ioFog Controller's API base (``https://host:51121/api/v3/``), for the ``controller`` source."""
    controller_cert: str | None = None
    """A CA certificate (file path or PEM text) that the controller's HTTPS certificate is verified with."""
    change_frequency: PositiveInt = PositiveInt(20)
    """Seconds between polls of the controller for changes (the controller's own value wins once fetched)."""
    status_frequency: PositiveInt = PositiveInt(10)
    """Seconds between status reports to the controller (the controller's own value wins once fetched)."""
    available_disk_threshold: NonNegativeInt = NonNegativeInt(20)
    """Percent of free disk under which the agent records an event (and reports the violation)."""
    network_interface: str = "dynamic"
    """The interface whose address is reported to the controller (``dynamic``: the default route's)."""
    upgrade_scan_frequency: NonNegativeInt = NonNegativeInt(24)
    disk_directory: str | None = None
    agent_id: str = "fogwire"
    config_source: PluginSelection | None = None
    reload_sinks: tuple[PluginSelection, ...] = ()
    resync_seconds: PositiveInt = PositiveInt(60)
    services: tuple[PluginSelection, ...] = ()
    """Agent services the daemon runs beside its loops (``fogwire.agent_services`` plugins)."""
    log_level: str = "info"
    catalog_family: Literal["iofog", "iofog-3.0", "datasance", "none"] = "iofog"
    """Whose built-in catalog ``catalogId`` refers to (:mod:`fogwire.model.catalogs`)."""
    agent_name: str | None = None
    """This node's agent name: a microservice whose ``agent.name`` differs is not run here (``None``: run all)."""


@attrs.frozen
class AgentConfig:
    """The whole config file: profiles and which one is current."""

    current_profile: str = "default"
    profiles: Mapping[str, Profile] = attrs.field(factory=lambda: {"default": Profile()})

    @property
    def profile(self) -> Profile:
        """The current profile (validated to exist by :func:`fogwire.config.load_agent_config`)."""
        return self.profiles[self.current_profile]
