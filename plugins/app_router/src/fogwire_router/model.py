"""The skrouterd (skupper-router 3.5.1) router config: entities, keys and validation.

Long on purpose: it is skupper-router 3.5.1's whole settable schema, one class per
entity type, checked attribute by attribute.

skrouterd reads a JSON file holding a list of ``[entityType, {attributes}]`` pairs;
the wrapper builds it from the controller's router config object (pot mode) or reads
it from the operator's file (kubernetes mode), and the ``skrouter`` reload sink
applies the same entities live over AMQP management. Every entity class declares the
attributes skupper-router's management schema (``skrouter.json`` @3.5.1) lets a
configuration set; anything else is an error, so a misspelt ``siteID`` is caught
instead of being written to the file and silently ignored.

Attribute names are snake_case; the core converter maps them to the schema's
camelCase (``site_id`` ↔ ``siteId``): the classes are marked camelCase at import. Unset attributes are ``None`` and are left out
of the file and of management requests, so the router's own defaults apply.

The functions at the end turn plain data into a :class:`RouterConfig` (the skrouterd
list, or the controller's object form) and back into the skrouterd list, all through
:func:`router_converter`; the classes themselves hold no serialisation code.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs
import cattrs

from fogwire.convert import ValueProblem, make_converter, mark_camel_case, problems_from, to_camel
from fogwire.errors import ConfigError, Problem
from fogwire.payloads import JSONValue, PayloadKind


class PortText(str):
    """A port as skrouterd keeps it: a string (``"5672"``, or a service name like ``"amqp"``).

    The controller and hand-written files give ports as integers or strings; the
    router stores and reports them as strings, so the model does too, which makes a
    config and the router's QUERY answer compare equal.
    """


class Role(enum.Enum):
    """The role of an AMQP listener or connector."""

    NORMAL = "normal"
    INTER_ROUTER = "inter-router"
    ROUTE_CONTAINER = "route-container"
    EDGE = "edge"
    INTER_EDGE = "inter-edge"
    INTER_NETWORK = "inter-network"


class RouterMode(enum.Enum):
    """How the router joins the network."""

    STANDALONE = "standalone"
    INTERIOR = "interior"
    EDGE = "edge"


class Distribution(enum.Enum):
    """How messages to an address are distributed."""

    MULTICAST = "multicast"
    CLOSEST = "closest"
    BALANCED = "balanced"
    UNAVAILABLE = "unavailable"


class StripAnnotations(enum.Enum):
    """Which message annotations a listener or connector strips."""

    IN = "in"
    OUT = "out"
    BOTH = "both"
    NO = "no"


class SocketAddressFamily(enum.Enum):
    """Force IPv4 or IPv6 for a listener or connector."""

    IPV4 = "IPv4"
    IPV6 = "IPv6"


class MultiAddressStrategy(enum.Enum):
    """How a tcpListener spreads connections over several addresses."""

    NONE = "none"
    PRIORITY = "priority"
    WEIGHTED = "weighted"


class Observer(enum.Enum):
    """The protocol observer of a tcpListener (the one attribute it can UPDATE)."""

    NONE = "none"
    AUTO = "auto"
    HTTP1 = "http1"
    HTTP2 = "http2"


class LogModule(enum.Enum):
    """The router's log modules (a ``log`` entity is keyed by its module)."""

    ROUTER = "ROUTER"
    ROUTER_CORE = "ROUTER_CORE"
    ROUTER_HELLO = "ROUTER_HELLO"
    ROUTER_LS = "ROUTER_LS"
    ROUTER_MA = "ROUTER_MA"
    MESSAGE = "MESSAGE"
    SERVER = "SERVER"
    AGENT = "AGENT"
    CONTAINER = "CONTAINER"
    ERROR = "ERROR"
    POLICY = "POLICY"
    HTTP = "HTTP"
    CONN_MGR = "CONN_MGR"
    PYTHON = "PYTHON"
    PROTOCOL = "PROTOCOL"
    TCP_ADAPTOR = "TCP_ADAPTOR"
    HTTP_ADAPTOR = "HTTP_ADAPTOR"
    FLOW_LOG = "FLOW_LOG"
    ADDRESS_WATCH = "ADDRESS_WATCH"
    HTTP1_OBSERVER = "HTTP1_OBSERVER"
    HTTP2_OBSERVER = "HTTP2_OBSERVER"
    HTTP2_DECODER = "HTTP2_DECODER"
    DEFAULT = "DEFAULT"


@attrs.frozen(kw_only=True)
class Router:
    """The ``router`` singleton: identity and mode. Set at start only (no UPDATE)."""

    id: str | None = None
    name: str | None = None
    van_id: str | None = None
    mode: RouterMode | None = None
    hello_interval_seconds: int | None = None
    hello_max_age_seconds: int | None = None
    ra_interval_seconds: int | None = None
    ra_interval_flux_seconds: int | None = None
    remote_ls_max_age_seconds: int | None = None
    unreachable_holdoff_seconds: int | None = None
    worker_threads: int | None = None
    debug_dump_file: str | None = None
    sasl_config_dir: str | None = None
    sasl_config_name: str | None = None
    timestampsInUTC: bool | None = None  # the schema spells it so
    timestamp_format: str | None = None
    default_distribution: Distribution | None = None
    metadata: str | None = None
    data_connection_count: str | None = None
    drop_tcp_connections: bool | None = None


@attrs.frozen(kw_only=True)
class SslProfile:
    """TLS material (paths) for listeners and connectors; every attribute but the uid ones can UPDATE.

    ``ordinal`` / ``oldest_valid_ordinal`` drive certificate rotation: raising the
    ordinal makes new connections use the reloaded files, raising the oldest valid
    ordinal closes connections made with older ones.
    """

    name: str
    ca_cert_file: str | None = None
    cert_file: str | None = None
    private_key_file: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    ciphers: str | None = None
    protocols: str | None = None
    uid_format: str | None = None
    uid_name_mapping_file: str | None = None
    ordinal: int | None = None
    oldest_valid_ordinal: int | None = None


@attrs.frozen(kw_only=True)
class Listener:
    """An AMQP listener (CREATE and DELETE only)."""

    name: str
    host: str | None = None
    port: PortText | None = None
    role: Role | None = None
    cost: int | None = None
    ssl_profile: str | None = None
    sasl_mechanisms: str | None = None
    authenticate_peer: bool | None = None
    require_encryption: bool | None = None
    require_ssl: bool | None = None
    socket_address_family: SocketAddressFamily | None = None
    max_frame_size: int | None = None
    max_sessions: int | None = None
    max_session_frames: int | None = None
    idle_timeout_seconds: int | None = None
    initial_handshake_timeout_seconds: int | None = None
    strip_annotations: StripAnnotations | None = None
    link_capacity: int | None = None
    failover_urls: str | None = None
    healthz: bool | None = None
    metrics: bool | None = None
    websockets: bool | None = None
    http: bool | None = None
    http_root_dir: str | None = None
    message_logging_components: str | None = None
    policy_vhost: str | None = None
    open_properties: Mapping[str, Any] | None = None


@attrs.frozen(kw_only=True)
class Connector:
    """An AMQP connector to another router (CREATE and DELETE only)."""

    name: str
    host: str | None = None
    port: PortText | None = None
    role: Role | None = None
    cost: int | None = None
    ssl_profile: str | None = None
    proxy_profile: str | None = None
    sasl_mechanisms: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = attrs.field(default=None, repr=False)
    allow_redirect: bool | None = None
    verify_hostname: bool | None = None
    socket_address_family: SocketAddressFamily | None = None
    max_frame_size: int | None = None
    max_sessions: int | None = None
    max_session_frames: int | None = None
    idle_timeout_seconds: int | None = None
    strip_annotations: StripAnnotations | None = None
    link_capacity: int | None = None
    message_logging_components: str | None = None
    policy_vhost: str | None = None
    open_properties: Mapping[str, Any] | None = None


@attrs.frozen(kw_only=True)
class TcpListener:
    """A TCP ingress bridge: accepts TCP on host:port and carries it to ``address``.

    Only ``observer`` can UPDATE; any other change is a DELETE then CREATE.
    """

    name: str
    address: str | None = None
    host: str | None = None
    port: PortText | None = None
    site_id: str | None = None
    ssl_profile: str | None = None
    authenticate_peer: bool | None = None
    backlog: int | None = None
    multi_address_strategy: MultiAddressStrategy | None = None
    observer: Observer | None = None


@attrs.frozen(kw_only=True)
class TcpConnector:
    """A TCP egress bridge: connects to host:port for traffic on ``address`` (CREATE and DELETE only)."""

    name: str
    address: str | None = None
    host: str | None = None
    port: PortText | None = None
    site_id: str | None = None
    process_id: str | None = None
    ssl_profile: str | None = None
    verify_hostname: bool | None = None


@attrs.frozen(kw_only=True)
class Address:
    """A ``router.config.address`` (``address`` in the file): distribution of a prefix or pattern."""

    prefix: str | None = None
    pattern: str | None = None
    name: str | None = None
    distribution: Distribution | None = None
    priority: int | None = None


@attrs.frozen(kw_only=True)
class Log:
    """Log settings of one module (UPDATE only: the router has every module's entity)."""

    module: LogModule
    enable: str | None = None
    include_timestamp: bool | None = None
    include_source: bool | None = None
    output_file: str | None = None


@attrs.frozen(kw_only=True)
class Site:
    """The ``site`` singleton: metadata for the network console. Set at start only."""

    name: str | None = None
    location: str | None = None
    provider: str | None = None
    version: str | None = None
    platform: str | None = None
    namespace: str | None = None


Entity = Router | SslProfile | Listener | Connector | TcpListener | TcpConnector | Address | Log | Site
"""Any router config entity."""


@attrs.frozen(kw_only=True)
class RouterConfig:
    """One whole router configuration; entities keep their source order within a type."""

    router: Router | None = None
    ssl_profiles: tuple[SslProfile, ...] = ()
    listeners: tuple[Listener, ...] = ()
    connectors: tuple[Connector, ...] = ()
    tcp_listeners: tuple[TcpListener, ...] = ()
    tcp_connectors: tuple[TcpConnector, ...] = ()
    addresses: tuple[Address, ...] = ()
    logs: tuple[Log, ...] = ()
    site: Site | None = None


@attrs.frozen
class EntityType:
    """One entity type: its name in the file, its class, and where it sits in :class:`RouterConfig`."""

    name: str
    cls: type[Any]
    field: str
    management_type: str
    singleton: bool = False


ENTITY_TYPES: tuple[EntityType, ...] = (
    EntityType("router", Router, "router", "io.skupper.router.router", singleton=True),
    EntityType("sslProfile", SslProfile, "ssl_profiles", "io.skupper.router.sslProfile"),
    EntityType("listener", Listener, "listeners", "io.skupper.router.listener"),
    EntityType("connector", Connector, "connectors", "io.skupper.router.connector"),
    EntityType("tcpListener", TcpListener, "tcp_listeners", "io.skupper.router.tcpListener"),
    EntityType("tcpConnector", TcpConnector, "tcp_connectors", "io.skupper.router.tcpConnector"),
    EntityType("address", Address, "addresses", "io.skupper.router.router.config.address"),
    EntityType("log", Log, "logs", "io.skupper.router.log"),
    EntityType("site", Site, "site", "io.skupper.router.site", singleton=True),
)
"""Every entity type, in the order the file is written (sslProfiles before their users)."""

TYPES_BY_NAME: dict[str, EntityType] = {t.name: t for t in ENTITY_TYPES}
"""Entity type by its file name (``tcpListener``)."""

_FILE_ALIASES = {"router.config.address": "address"}

SCHEMA_DEFAULTS: dict[str, dict[str, Any]] = {
    "router": {
        "mode": "standalone",
        "helloIntervalSeconds": 1,
        "helloMaxAgeSeconds": 3,
        "raIntervalSeconds": 30,
        "raIntervalFluxSeconds": 4,
        "remoteLsMaxAgeSeconds": 60,
        "unreachableHoldoffSeconds": 1,
        "workerThreads": 4,
        "saslConfigName": "skrouterd",
        "defaultDistribution": "balanced",
        "dataConnectionCount": "auto",
        "dropTcpConnections": True,
    },
    "sslProfile": {},
    "listener": {
        "host": "",
        "port": "amqp",
        "role": "normal",
        "cost": 1,
        "authenticatePeer": False,
        "requireEncryption": False,
        "requireSsl": False,
        "maxFrameSize": 16384,
        "maxSessions": 32768,
        "idleTimeoutSeconds": 16,
        "initialHandshakeTimeoutSeconds": 0,
        "stripAnnotations": "both",
        "healthz": True,
        "metrics": True,
        "websockets": True,
        "http": False,
        "messageLoggingComponents": "none",
    },
    "connector": {
        "host": "127.0.0.1",
        "port": "amqp",
        "role": "normal",
        "cost": 1,
        "allowRedirect": True,
        "maxFrameSize": 16384,
        "maxSessions": 32768,
        "idleTimeoutSeconds": 16,
        "stripAnnotations": "both",
        "verifyHostname": True,
        "messageLoggingComponents": "none",
    },
    "tcpListener": {
        "host": "",
        "backlog": 0,
        "multiAddressStrategy": "none",
        "authenticatePeer": False,
        "observer": "auto",
    },
    "tcpConnector": {"host": "127.0.0.1", "verifyHostname": True},
    "address": {"distribution": "balanced"},
    "log": {},
    "site": {},
}
"""skrouter.json @3.5.1 defaults of the settable attributes, by file type and camelCase name.

Used to compare a config with what the router reports (it fills defaults in): an
attribute left unset and one set to its default mean the same to the router.
"""


def entity_key(type_name: str, entity: Any) -> str:
    """The key that identifies ``entity`` within its type: ``name``; ``prefix`` (or ``pattern``) for an address; ``module`` for a log."""
    if type_name == "address":
        return str(entity.prefix if entity.prefix is not None else f"pattern:{entity.pattern}")
    if type_name == "log":
        return str(entity.module.value)
    if type_name in ("router", "site"):
        return type_name
    return str(entity.name)


def entities_of(config: RouterConfig, type_name: str) -> dict[str, Any]:
    """The entities of one type in ``config``, by key (a singleton gives zero or one)."""
    entity_type = TYPES_BY_NAME[type_name]
    value = getattr(config, entity_type.field)
    items: tuple[Any, ...] = (() if value is None else (value,)) if entity_type.singleton else value
    return {entity_key(type_name, e): e for e in items}


def iter_entities(config: RouterConfig) -> Iterator[tuple[str, Any]]:
    """Every ``(type name, entity)`` of ``config`` in file order."""
    for entity_type in ENTITY_TYPES:
        for entity in entities_of(config, entity_type.name).values():
            yield entity_type.name, entity


def _port_text(value: Any, _: Any) -> PortText:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueProblem(f"expected a port (integer or string), got {value!r}")
    if isinstance(value, int) and not 0 <= value <= 65535:
        raise ValueProblem(f"expected a port 0-65535, got {value!r}")
    return PortText(str(value))


def router_converter(converter: cattrs.Converter | None = None) -> cattrs.Converter:
    """The core converter (:func:`fogwire.convert.make_converter`) with the router model's scalars added.

    Make one and keep it: the functions below make a new one when given none, and
    building its structure functions costs about 15 ms, far more than structuring a
    small config with it.
    """
    converter = converter or make_converter()
    converter.register_structure_hook(PortText, _port_text)
    converter.register_unstructure_hook(PortText, str)
    return converter


def entity_attributes(converter: cattrs.Converter, entity: Any) -> dict[str, Any]:
    """The set attributes of ``entity`` as the router spells them (camelCase, enums as values), unset ones left out."""
    data = converter.unstructure(entity)
    return {key: value for key, value in data.items() if value is not None}


def _structure_entity(
    converter: cattrs.Converter, type_name: str, data: Any, origin: str, path: str
) -> tuple[Any, list[Problem]]:
    if not isinstance(data, Mapping):
        return None, [
            Problem(
                origin,
                1,
                path,
                f"expected a mapping of attributes, got {type(data).__name__}",
            )
        ]
    try:
        return converter.structure(dict(data), TYPES_BY_NAME[type_name].cls), []
    except Exception as error:
        return None, problems_from(error, origin, 1, path)


def _assemble(items: list[tuple[str, Any, str]], origin: str, problems: list[Problem]) -> RouterConfig:
    fields: dict[str, Any] = {t.field: [] for t in ENTITY_TYPES if not t.singleton}
    singles: dict[str, Any] = {}
    seen: dict[tuple[str, str], str] = {}
    for type_name, entity, path in items:
        entity_type = TYPES_BY_NAME[type_name]
        key = entity_key(type_name, entity)
        if (type_name, key) in seen:
            problems.append(
                Problem(
                    origin,
                    1,
                    path,
                    f"duplicate {type_name} {key!r} (also at {seen[type_name, key]})",
                )
            )
            continue
        seen[type_name, key] = path
        if entity_type.singleton:
            singles[entity_type.field] = entity
        else:
            fields[entity_type.field].append(entity)
    arguments: dict[str, Any] = {k: tuple(v) for k, v in fields.items()}
    config = RouterConfig(**arguments, **singles)
    problems.extend(check_references(config, origin))
    if problems:
        raise ConfigError(problems)
    return config


def check_references(config: RouterConfig, origin: str = "router config") -> list[Problem]:
    """Problems the schema alone can't see: dangling ``sslProfile`` names, tcp endpoints without address or port, addresses without prefix or pattern, bad ordinals."""
    problems: list[Problem] = []
    profiles = set(entities_of(config, "sslProfile"))
    for type_name, entity in iter_entities(config):
        where = f"{type_name}[{entity_key(type_name, entity)}]"
        profile = getattr(entity, "ssl_profile", None)
        if profile is not None and profile not in profiles:
            problems.append(
                Problem(
                    origin,
                    1,
                    f"{where}.sslProfile",
                    f"no sslProfile named {profile!r} in this config",
                )
            )
        if type_name in ("tcpListener", "tcpConnector"):
            if not entity.address and not (
                type_name == "tcpListener" and entity.multi_address_strategy not in (None, MultiAddressStrategy.NONE)
            ):
                problems.append(Problem(origin, 1, f"{where}.address", "required field is missing"))
            if entity.port is None:
                problems.append(Problem(origin, 1, f"{where}.port", "required field is missing"))
        if type_name == "address" and (entity.prefix is None) == (entity.pattern is None):
            problems.append(Problem(origin, 1, where, "exactly one of 'prefix' or 'pattern' must be set"))
        if type_name == "sslProfile":
            for attr in ("ordinal", "oldest_valid_ordinal"):
                value = getattr(entity, attr)
                if value is not None and value < 0:
                    problems.append(Problem(origin, 1, f"{where}.{to_camel(attr)}", "must be ≥ 0"))
            if (
                entity.ordinal is not None
                and entity.oldest_valid_ordinal is not None
                and entity.ordinal < entity.oldest_valid_ordinal
            ):
                problems.append(Problem(origin, 1, f"{where}.ordinal", "must be ≥ oldestValidOrdinal"))
    return problems


def structure_skrouterd_list(data: Any, origin: str, converter: cattrs.Converter | None = None) -> RouterConfig:
    """Read skrouterd's JSON list form (``[["router", {...}], ["listener", {...}], …]``).

    Raises :class:`ConfigError` listing every problem: a malformed element, an entity
    type this model does not know, an unknown or mistyped attribute, a duplicate key,
    a dangling reference.
    """
    converter = converter or router_converter()
    if not isinstance(data, list):
        raise ConfigError(
            [
                Problem(
                    origin,
                    1,
                    "",
                    f"expected a list of [entityType, {{attributes}}] pairs, got {type(data).__name__}",
                )
            ]
        )
    problems: list[Problem] = []
    items: list[tuple[str, Any, str]] = []
    for position, element in enumerate(data):
        path = f"[{position}]"
        if not (isinstance(element, list) and len(element) == 2 and isinstance(element[0], str)):
            problems.append(Problem(origin, 1, path, "expected a pair [entityType, {attributes}]"))
            continue
        type_name = _FILE_ALIASES.get(element[0], element[0])
        if type_name not in TYPES_BY_NAME:
            known = ", ".join(TYPES_BY_NAME)
            problems.append(
                Problem(
                    origin,
                    1,
                    path,
                    f"unknown entity type {element[0]!r} (known: {known})",
                )
            )
            continue
        attributes = element[1]
        if type_name == "router" and isinstance(attributes, Mapping):
            # skrouterd takes integers as digit strings, and the Go wrapper wrote
            # "helloMaxAgeSeconds": "3" (the upstream smoke config has it too)
            attributes = _controller_numbers(dict(attributes))
        entity, found = _structure_entity(converter, type_name, attributes, origin, f"{path}.{type_name}")
        problems.extend(found)
        if entity is not None:
            items.append((type_name, entity, path))
    return _assemble(items, origin, problems)


_CONTROLLER_SECTIONS = {
    "addresses": "address",
    "connectors": "connector",
    "listeners": "listener",
    "logconfig": "log",
    "sslprofiles": "sslProfile",
}
_KEY_ATTRIBUTE = {"address": "prefix", "log": "module"}
_ROUTER_INT_FIELDS = {to_camel(f.name) for f in attrs.fields(Router) if f.type in ("int | None", int)}


def _controller_numbers(attributes: dict[str, Any]) -> dict[str, Any]:
    # The controller writes router numbers as strings ("helloMaxAgeSeconds": "3").
    return {
        k: int(v) if k in _ROUTER_INT_FIELDS and isinstance(v, str) and v.strip().isdigit() else v
        for k, v in attributes.items()
    }


def structure_controller_config(data: Any, origin: str, converter: cattrs.Converter | None = None) -> RouterConfig:
    """Read the controller's router config object (pot mode): ``addresses``, ``bridges``, ``connectors``, ``listeners``, ``logConfig``, ``metadata``, ``siteConfig``, ``sslProfiles``.

    Top-level keys match case-insensitively (as the Go wrapper's untagged struct did);
    each map's key stands in for a missing ``name`` (``prefix`` for addresses,
    ``module`` for logs). Entities are ordered by key, so the file written is stable.
    """
    converter = converter or router_converter()
    if not isinstance(data, Mapping):
        raise ConfigError(
            [
                Problem(
                    origin,
                    1,
                    "",
                    f"expected the router config object, got {type(data).__name__}",
                )
            ]
        )
    problems: list[Problem] = []
    items: list[tuple[str, Any, str]] = []

    def add_map(section: Any, type_name: str, path: str) -> None:
        if section is None:
            return
        if not isinstance(section, Mapping):
            problems.append(Problem(origin, 1, path, "expected a mapping of name to attributes"))
            return
        for key in sorted(section):
            attributes = section[key]
            if isinstance(attributes, Mapping):
                attributes = dict(attributes)
                attributes.setdefault(_KEY_ATTRIBUTE.get(type_name, "name"), key)
            entity, found = _structure_entity(converter, type_name, attributes, origin, f"{path}.{key}")
            problems.extend(found)
            if entity is not None:
                items.append((type_name, entity, f"{path}.{key}"))

    for raw_key, section in data.items():
        key = str(raw_key).lower()
        if key in _CONTROLLER_SECTIONS:
            add_map(section, _CONTROLLER_SECTIONS[key], str(raw_key))
        elif key == "bridges":
            if section is None:
                continue
            if not isinstance(section, Mapping):
                problems.append(
                    Problem(
                        origin,
                        1,
                        str(raw_key),
                        "expected a mapping with tcpListeners and tcpConnectors",
                    )
                )
                continue
            for bridge_key, bridge in section.items():
                kind = {
                    "tcplisteners": "tcpListener",
                    "tcpconnectors": "tcpConnector",
                }.get(str(bridge_key).lower())
                if kind is None:
                    problems.append(
                        Problem(
                            origin,
                            1,
                            f"{raw_key}.{bridge_key}",
                            "unknown field (check the spelling)",
                        )
                    )
                else:
                    add_map(bridge, kind, f"{raw_key}.{bridge_key}")
        elif key in ("metadata", "siteconfig"):
            if section is None:
                continue
            type_name = "router" if key == "metadata" else "site"
            attributes = (
                _controller_numbers(dict(section))
                if type_name == "router" and isinstance(section, Mapping)
                else section
            )
            entity, found = _structure_entity(converter, type_name, attributes, origin, str(raw_key))
            problems.extend(found)
            if entity is not None:
                items.append((type_name, entity, str(raw_key)))
        else:
            problems.append(Problem(origin, 1, str(raw_key), "unknown field (check the spelling)"))
    return _assemble(items, origin, problems)


def _is_skrouterd_list(payload: Any) -> bool:
    return isinstance(payload, list) and all(
        isinstance(e, list) and len(e) == 2 and isinstance(e[0], str) for e in payload
    )


def router_config_from_payload(payload: Any, origin: str, converter: cattrs.Converter | None = None) -> RouterConfig:
    """A :class:`RouterConfig` from whatever a config source delivered.

    A mapping is the controller's object form; a list of pairs is the skrouterd
    list; a one-element list (the ``file`` source's list of YAML documents) is
    unwrapped first. Anything else is a :class:`ConfigError`.
    """
    if isinstance(payload, list) and len(payload) == 1 and not _is_skrouterd_list(payload):
        payload = payload[0]
    if isinstance(payload, Mapping):
        return structure_controller_config(payload, origin, converter)
    if isinstance(payload, list):
        return structure_skrouterd_list(payload, origin, converter)
    raise ConfigError(
        [
            Problem(
                origin,
                1,
                "",
                "expected a router config object or a skrouterd [[type, {attributes}], …] list",
            )
        ]
    )


def unstructure_skrouterd_list(config: RouterConfig, converter: cattrs.Converter | None = None) -> list[list[Any]]:
    """``config`` as skrouterd's JSON list, in file order (router, sslProfile, listener, connector, tcpListener, tcpConnector, address, log, site)."""
    converter = converter or router_converter()
    return [[type_name, entity_attributes(converter, entity)] for type_name, entity in iter_entities(config)]


def replace_entities(
    config: RouterConfig,
    type_name: str,
    update: Callable[[dict[str, Any]], dict[str, Any]],
) -> RouterConfig:
    """A copy of ``config`` whose entities of ``type_name`` are ``update(by_key)`` (a new key → entity map)."""
    entity_type = TYPES_BY_NAME[type_name]
    new = update(dict(entities_of(config, type_name)))
    if entity_type.singleton:
        changes: dict[str, Any] = {entity_type.field: next(iter(new.values()), None)}
    else:
        changes = {entity_type.field: tuple(new.values())}
    return attrs.evolve(config, **changes)


ROUTER_DOCUMENT: PayloadKind[JSONValue] = PayloadKind(
    "skrouter-document", "skupper-router config as data (the controller's object form or a skrouterd entity list)"
)
"""What the router wrapper's config sources produce: plain data, already checked against the model."""

ROUTER_CONFIG: PayloadKind[RouterConfig] = PayloadKind(
    "skrouter-config", "a validated skupper-router config (fogwire_router.model.RouterConfig)"
)
"""What the router wrapper gives its reload sink: the parsed config, certificates merged in."""


mark_camel_case(*(t.cls for t in ENTITY_TYPES), RouterConfig)
