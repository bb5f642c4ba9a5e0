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

from fogwire.convert import NonNegativeInt, PositiveInt, to_camel

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
    disk_limit: float | None = None
    """GiB the agent's state and disk directory may take; over it, an event (edgelet's ``diskLimit``)."""
    memory_limit: NonNegativeInt | None = None
    """MiB the agent process may take; over it, an event (edgelet's ``memoryLimit``)."""
    cpu_limit: float | None = None
    """Percent of one core the agent process may use; over it, an event (edgelet's ``cpuLimit``)."""
    log_limit: float | None = None
    """GiB the agent's own log files take together, when ``logDirectory`` is set (edgelet's ``logLimit``)."""
    log_directory: str | None = None
    """Where the daemon also writes its own log, rotated (``fogwire.log``); ``None``: stderr only."""
    log_file_count: PositiveInt = PositiveInt(10)
    """How many rotated log files are kept."""
    cdi_spec_dirs: tuple[str, ...] = ("/etc/cdi", "/var/run/cdi")
    """Where the CDI spec files a microservice's ``cdiDevices`` name are read from (a later one wins)."""
    workload_log_size: PositiveInt = PositiveInt(10)
    """MiB of output each workload keeps when its microservice sets no ``logSize`` (rotated by its engine)."""
    gps_mode: str | None = None
    gps_device: str | None = None
    gps_scan_frequency: NonNegativeInt | None = None
    gps_coordinates: str | None = None
    edge_guard_frequency: NonNegativeInt | None = None
    secure_mode: bool | None = None
    dev_mode: bool | None = None
    time_zone: str | None = None
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


PROFILE_ALIASES: Mapping[str, str] = {
    # edgelet's ``edgelet config`` long flags, as config keys
    "changeFrequencySeconds": "changeFrequency",
    "statusFrequencySeconds": "statusFrequency",
    "diskLimitGib": "diskLimit",
    "memoryLimitMib": "memoryLimit",
    "cpuLimitPercent": "cpuLimit",
    "logLimitGib": "logLimit",
    "timezone": "timeZone",
    # the Java agent's config.xml settings
    "dockerUrl": "containerEngineUrl",
    "diskConsumptionLimit": "diskLimit",
    "memoryConsumptionLimit": "memoryLimit",
    "processorConsumptionLimit": "cpuLimit",
    "logDiskConsumptionLimit": "logLimit",
    "logDiskDirectory": "logDirectory",
    "getChangesFreq": "changeFrequency",
    "statusUpdateFreq": "statusFrequency",
    "dockerPruningFreq": "pruningFrequency",
    "fogType": "arch",
    "gps": "gpsMode",
    "gpsScanFreq": "gpsScanFrequency",
    "upgradeScanFreq": "upgradeScanFrequency",
    "edgeGuardFreq": "edgeGuardFrequency",
}
"""Other names operators' configs use for a profile key (edgelet's flags, the Java agent's settings) → the key."""

NO_EFFECT_KEYS = (
    "gpsMode",
    "gpsDevice",
    "gpsScanFrequency",
    "gpsCoordinates",
    "edgeGuardFrequency",
    "secureMode",
    "devMode",
    "timeZone",
    "upgradeScanFrequency",
)
"""Keys accepted (an operator's config carries them) that change nothing on a fogwire node."""

EDGELET_SHORT_FLAGS: Mapping[str, str] = {
    "a": "controllerUrl",
    "ac": "controllerCert",
    "ce": "containerEngine",
    "cu": "containerEngineUrl",
    "ft": "arch",
    "cf": "changeFrequency",
    "sf": "statusFrequency",
    "d": "diskLimit",
    "dl": "diskDirectory",
    "m": "memoryLimit",
    "p": "cpuLimit",
    "l": "logLimit",
    "ld": "logDirectory",
    "lc": "logFileCount",
    "ll": "logLevel",
    "n": "networkInterface",
    "pf": "pruningFrequency",
    "dt": "availableDiskThreshold",
    "wd": "watchdogEnabled",
    "gps": "gpsMode",
    "gpsd": "gpsDevice",
    "gpsf": "gpsScanFrequency",
    "gpsc": "gpsCoordinates",
    "egf": "edgeGuardFrequency",
    "uf": "upgradeScanFrequency",
    "sec": "secureMode",
    "dev": "devMode",
    "tz": "timeZone",
}
"""``edgelet config``'s short flags (``--cf``) → the profile key (upstream-systems.md §2.3)."""


def profile_key(name: str) -> str | None:
    """The profile key ``name`` means: a key, an alias, an edgelet long flag (``--change-frequency-seconds``) or short one."""
    bare = name.lstrip("-")
    if bare in EDGELET_SHORT_FLAGS:
        return EDGELET_SHORT_FLAGS[bare]
    if bare in EDGELET_LONG_FLAGS:
        return EDGELET_LONG_FLAGS[bare]
    if "-" in bare or "_" in bare:
        head, *rest = bare.replace("_", "-").split("-")
        bare = head + "".join(part[:1].upper() + part[1:] for part in rest)
    bare = PROFILE_ALIASES.get(bare, bare)
    keys = {to_camel(a.name) for a in attrs.fields(Profile)}
    return bare if bare in keys else None


EDGELET_LONG_FLAGS: Mapping[str, str] = {
    "controller-url": "controllerUrl",
    "controller-cert": "controllerCert",
    "container-engine": "containerEngine",
    "container-engine-url": "containerEngineUrl",
    "arch": "arch",
    "change-frequency-seconds": "changeFrequency",
    "status-frequency-seconds": "statusFrequency",
    "disk-limit-gib": "diskLimit",
    "disk-directory": "diskDirectory",
    "memory-limit-mib": "memoryLimit",
    "cpu-limit-percent": "cpuLimit",
    "log-limit-gib": "logLimit",
    "log-directory": "logDirectory",
    "log-file-count": "logFileCount",
    "log-level": "logLevel",
    "network-interface": "networkInterface",
    "pruning-frequency": "pruningFrequency",
    "available-disk-threshold": "availableDiskThreshold",
    "watchdog-enabled": "watchdogEnabled",
    "gps-mode": "gpsMode",
    "gps-device": "gpsDevice",
    "gps-scan-frequency": "gpsScanFrequency",
    "gps-coordinates": "gpsCoordinates",
    "edge-guard-frequency": "edgeGuardFrequency",
    "upgrade-scan-frequency": "upgradeScanFrequency",
    "secure-mode": "secureMode",
    "dev-mode": "devMode",
    "timezone": "timeZone",
}
"""``edgelet config``'s long flags → the profile key."""
