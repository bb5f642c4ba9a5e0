"""The ioFog v3 documents: Application, Microservice, CatalogItem, Registry.

As iofogctl (``apiVersion: iofog.org/v3``) and potctl (``datasance.com/v3``) write
them. Every field a document may carry is declared; anything else is an error.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

from fogwire.convert import NonNegativeInt, Port, PositiveInt


class ApiVersion(enum.Enum):
    """The document schema versions fogwire reads."""

    IOFOG_V3 = "iofog.org/v3"
    DATASANCE_V3 = "datasance.com/v3"


class Kind(enum.Enum):
    """The document kinds the agent acts on."""

    APPLICATION = "Application"
    MICROSERVICE = "Microservice"
    CATALOG_ITEM = "CatalogItem"
    REGISTRY = "Registry"


class Protocol(enum.Enum):
    """Transport protocol of a published port."""

    TCP = "tcp"
    UDP = "udp"


class AccessMode(enum.Enum):
    """Access of a volume mapping inside the container."""

    RW = "rw"
    RO = "ro"


class VolumeType(enum.Enum):
    """A bind mount of a host path, or a named volume."""

    BIND = "bind"
    VOLUME = "volume"


RegistryRef = int | str
"""``remote`` (id 1), ``local`` / ``from_cache`` (id 2), or a registry id."""


@attrs.frozen
class Metadata:
    """A document's metadata; ``name`` identifies it."""

    name: str | None = None
    namespace: str | None = None
    labels: Mapping[str, str] | None = None
    annotations: Mapping[str, str] | None = None


class EnvValue(str):
    """A string that may be written as a YAML scalar of any type (``8080`` → ``"8080"``)."""


@attrs.frozen
class EnvVar:
    """One environment variable; YAML numbers and booleans are taken as their text."""

    key: str
    value: EnvValue = EnvValue("")


@attrs.frozen
class PortMapping:
    """Publish container port ``internal`` on host port ``external``."""

    internal: Port
    external: Port
    protocol: Protocol = Protocol.TCP


@attrs.frozen
class VolumeMapping:
    """Mount ``host_destination`` (a path, or a volume name) at ``container_destination``."""

    host_destination: str
    container_destination: str
    access_mode: AccessMode = AccessMode.RW
    type: VolumeType = VolumeType.BIND


@attrs.frozen
class DeviceMapping:
    """A host device node (under ``/dev``) made available in the container, as ``docker run --device``."""

    host_path: str
    container_path: str | None = None
    permissions: str = "rwm"


@attrs.frozen
class ExtraHost:
    """An ``/etc/hosts`` entry; written ``{name, address}`` or as the string ``name:address``."""

    name: str
    address: str


@attrs.frozen
class HealthCheck:
    """A container health check; durations in seconds."""

    test: tuple[str, ...]
    interval: NonNegativeInt | None = None
    timeout: NonNegativeInt | None = None
    start_period: NonNegativeInt | None = None
    start_interval: NonNegativeInt | None = None
    retries: NonNegativeInt | None = None


@attrs.frozen
class Container:
    """How a microservice's container runs. ``memory_limit`` is in MiB; ``log_size`` is the MiB of output kept."""

    commands: tuple[str, ...] = ()
    volumes: tuple[VolumeMapping, ...] = ()
    env: tuple[EnvVar, ...] = ()
    extra_hosts: tuple[ExtraHost, ...] = ()
    ports: tuple[PortMapping, ...] = ()
    root_host_access: bool = False
    host_network_mode: bool = False
    is_privileged: bool = False
    pid_mode: str | None = None
    ipc_mode: str | None = None
    runtime: str | None = None
    platform: str | None = None
    run_as_user: str | None = None
    cdi_devices: tuple[str, ...] = ()
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    annotations: Mapping[str, str] | None = None
    cpu_set_cpus: str | None = None
    memory_limit: PositiveInt | None = None
    health_check: HealthCheck | None = None
    log_size: PositiveInt | None = None
    devices: tuple[DeviceMapping, ...] = ()


@attrs.frozen
class Images:
    """Which image to run: a catalog item, or one image per architecture."""

    catalog_id: int | str | None = None
    """A catalog item's id, or its name (for a CatalogItem given without an id)."""
    x86: str | None = None
    arm: str | None = None
    registry: RegistryRef | None = None


@attrs.frozen
class AgentRef:
    """The agent a microservice is placed on."""

    name: str
    config: Mapping[str, Any] | None = None


@attrs.frozen
class Route:
    """A route between two microservices of an application."""

    name: str
    from_: str
    to: str


@attrs.frozen
class MicroserviceSpec:
    """A microservice; inside an Application it carries its own ``name``."""

    images: Images
    name: str | None = None
    agent: AgentRef | None = None
    container: Container = Container()
    config: Mapping[str, Any] = attrs.field(factory=dict)
    application: str | None = None
    ms_routes: tuple[Any, ...] | None = None
    schedule: NonNegativeInt | None = None
    rebuild: bool = False


@attrs.frozen
class ApplicationSpec:
    """An application: a named group of microservices and the routes between them."""

    microservices: tuple[MicroserviceSpec, ...] = ()
    routes: tuple[Route, ...] = ()
    name: str | None = None


@attrs.frozen
class CatalogItemSpec:
    """A catalog item: images per architecture under one id."""

    id: PositiveInt | None = None
    name: str | None = None
    description: str = ""
    category: str | None = None
    publisher: str | None = None
    x86: str | None = None
    arm: str | None = None
    registry: RegistryRef = "remote"
    config_example: str | None = None


@attrs.frozen
class RegistrySpec:
    """A registry and its credentials. The password is never shown in a repr."""

    url: str
    id: PositiveInt | None = None
    private: bool = False
    username: str = ""
    password: str = attrs.field(default="", repr=False)
    email: str = ""
    requires_cert: bool = False
    certificate: str | None = None
    insecure: bool = False


@attrs.frozen
class Application:
    """An ``Application`` document."""

    api_version: ApiVersion
    kind: Kind
    spec: ApplicationSpec
    metadata: Metadata = Metadata()


@attrs.frozen
class Microservice:
    """A ``Microservice`` document."""

    api_version: ApiVersion
    kind: Kind
    spec: MicroserviceSpec
    metadata: Metadata = Metadata()


@attrs.frozen
class CatalogItem:
    """A ``CatalogItem`` document."""

    api_version: ApiVersion
    kind: Kind
    spec: CatalogItemSpec
    metadata: Metadata = Metadata()


@attrs.frozen
class Registry:
    """A ``Registry`` document."""

    api_version: ApiVersion
    kind: Kind
    spec: RegistrySpec
    metadata: Metadata = Metadata()


@attrs.frozen
class VolumeSpec:
    """An iofogctl ``Volume``: the folder ``source`` copied to ``destination`` on each of ``agents``.

    ``permissions`` is the octal mode the copied files get (``"666"``); empty keeps
    the source files' modes. iofogctl pushes it over SSH; a fogwire node given the
    document copies it itself when it is one of ``agents``.
    """

    source: str
    destination: str
    agents: tuple[str, ...] = ()
    permissions: str = ""
    name: str | None = None


@attrs.frozen
class Volume:
    """A ``Volume`` document (iofogctl's, not one of :class:`Kind`: it holds files, not workloads)."""

    api_version: ApiVersion
    kind: str
    spec: VolumeSpec
    metadata: Metadata = Metadata()


Document = Application | Microservice | CatalogItem | Registry
"""Any document the agent acts on."""

DOCUMENT_CLASSES: dict[Kind, type[Application | Microservice | CatalogItem | Registry]] = {
    Kind.APPLICATION: Application,
    Kind.MICROSERVICE: Microservice,
    Kind.CATALOG_ITEM: CatalogItem,
    Kind.REGISTRY: Registry,
}
"""The class each ``kind`` is structured into."""
