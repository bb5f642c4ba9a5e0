#!/usr/bin/env python3
"""A skupper-router 3.5.1 ``$management`` test peer on python-qpid-proton, and a fake ``skrouterd``.

It answers AMQP management requests the way the real router does as recorded in
``skrouterd-management.md`` (observed against skrouterd 3.5.1) and, where that file
is silent, as skupper-router's agent source (agent.py, schema.py,
agent_config_address.c @3.5.1) says:

* requests on ``$management`` (or ``_topo/0/<id>/$management``); replies only when
  ``reply_to`` is set, to the dynamic receiver named there, **pre-settled**, with the
  request's ``correlation_id`` copied (``message_id`` is ignored);
* ``statusCode`` / ``statusDescription`` application properties: 200 ``OK``,
  201 ``Created``, 204 ``No Content``, and the 400/404/500/501 texts of the reference;
* operations allowed per type (listener CREATE/DELETE/READ, sslProfile
  CREATE/UPDATE/DELETE/READ, tcpListener the same with only ``observer`` updatable,
  tcpConnector and connector CREATE/DELETE/READ, log UPDATE/READ, address via the
  C agent CREATE/DELETE/READ);
* ``name`` taken only from the application properties; identities
  ``listener/<host>:<port>:<name>``, ``sslProfile/<name>``, ``log/<module>``, a
  number for addresses; ports kept and returned as strings; booleans and integers
  coerced like the agent does; long type names in answers, short ones accepted;
* C-layer failures (tcp endpoint without address or port, unknown sslProfile, a
  TLS tcpListener whose profile has no certFile) as 500 ``CError: …``;
* an AMQP ``listener`` CREATE binds the port for real (DELETE closes it); a bind
  failure is logged and the entity kept, as the router does.

What it does not emulate: routing and links other than management, TLS and SASL on
its listeners (it binds every AMQP listener as plain AMQP, on 127.0.0.1 when the
host is empty or a wildcard), tcpListener/tcpConnector sockets (only their
``operStatus`` follows the tcpConnector rule), the ``DELETE`` of a listener closing
existing connections, policy/vhost and other entity types, the exact attribute
lists of operational entities, and the text of the no-``operation`` error after its
prefix.

Run as ``skrouterd -c FILE``: loads the entities of the JSON list in FILE like the
router (exit 1 on a bad file) and serves management on every listener in it. Test
hooks (environment): ``MGMT_PEER_STARTS`` (a file each start appends ``<pid>
<time>`` to), ``MGMT_PEER_EXIT_AFTER`` + ``MGMT_PEER_EXIT_CODE`` (crash that many
seconds after start; only while the file ``MGMT_PEER_CRASH_IF_EXISTS`` exists, if
that is set), ``MGMT_PEER_TERM_CODE`` (exit code on SIGTERM/SIGINT, default 0).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

PREFIX = "io.skupper.router."
OK, CREATED, NO_CONTENT = 200, 201, 204
TEXT = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    404: "Not Found",
    500: "Internal Server Error",
    501: "Not Implemented",
}

ROLES = ["normal", "inter-router", "route-container", "edge", "inter-edge", "inter-network"]
DISTRIBUTIONS = ["multicast", "closest", "balanced", "unavailable"]
STRIP = ["in", "out", "both", "no"]
FAMILY = ["IPv4", "IPv6"]
LOG_MODULES = [
    "ROUTER", "ROUTER_CORE", "ROUTER_HELLO", "ROUTER_LS", "ROUTER_MA", "MESSAGE", "SERVER", "AGENT",
    "CONTAINER", "ERROR", "POLICY", "HTTP", "CONN_MGR", "PYTHON", "PROTOCOL", "TCP_ADAPTOR",
    "HTTP_ADAPTOR", "FLOW_LOG", "ADDRESS_WATCH", "HTTP1_OBSERVER", "HTTP2_OBSERVER", "HTTP2_DECODER", "DEFAULT",
]  # fmt: skip


def A(
    name: str, kind: Any = "string", default: Any = None, create: bool = True, update: bool = False
) -> tuple[str, Any, Any, bool, bool]:
    """One schema attribute: name, type (str or enum list), default, create, update."""
    return (name, kind, default, create, update)


SCHEMA: dict[str, dict[str, Any]] = {
    "listener": {"ops": ["CREATE", "DELETE", "READ"], "cls": "ListenerEntity", "id": "hostportname", "attrs": [
        A("host", default=""), A("port", "port", "amqp"), A("socketAddressFamily", FAMILY), A("role", ROLES, "normal"),
        A("cost", "integer", 1), A("sslProfile"), A("saslMechanisms"), A("authenticatePeer", "boolean", False),
        A("requireEncryption", "boolean", False), A("requireSsl", "boolean", False), A("maxFrameSize", "integer", 16384),
        A("maxSessions", "integer", 32768), A("maxSessionFrames", "integer"), A("idleTimeoutSeconds", "integer", 16),
        A("initialHandshakeTimeoutSeconds", "integer", 0), A("stripAnnotations", STRIP, "both"), A("linkCapacity", "integer"),
        A("failoverUrls"), A("healthz", "boolean", True), A("metrics", "boolean", True), A("websockets", "boolean", True),
        A("http", "boolean", False), A("httpRootDir"), A("messageLoggingComponents", default="none"), A("policyVhost"),
        A("openProperties", "map")]},
    "connector": {"ops": ["CREATE", "DELETE", "READ"], "cls": "ConnectorEntity", "id": "hostportname", "attrs": [
        A("host", default="127.0.0.1"), A("port", "port", "amqp"), A("socketAddressFamily", FAMILY), A("role", ROLES, "normal"),
        A("cost", "integer", 1), A("sslProfile"), A("proxyProfile"), A("saslMechanisms"), A("allowRedirect", "boolean", True),
        A("maxFrameSize", "integer", 16384), A("maxSessions", "integer", 32768), A("maxSessionFrames", "integer"),
        A("idleTimeoutSeconds", "integer", 16), A("stripAnnotations", STRIP, "both"), A("linkCapacity", "integer"),
        A("verifyHostname", "boolean", True), A("saslUsername"), A("saslPassword"), A("messageLoggingComponents", default="none"),
        A("failoverUrls", create=False), A("connectionStatus", create=False), A("connectionMsg", create=False),
        A("policyVhost"), A("openProperties", "map")]},
    "sslProfile": {"ops": ["CREATE", "UPDATE", "DELETE", "READ"], "cls": "SslProfileEntity", "id": "name", "attrs": [
        A("ciphers", update=True), A("protocols", update=True), A("caCertFile", update=True), A("certFile", update=True),
        A("privateKeyFile", update=True), A("password", update=True), A("uidFormat"), A("uidNameMappingFile"),
        A("ordinal", "integer", update=True), A("oldestValidOrdinal", "integer", update=True)]},
    "tcpListener": {"ops": ["CREATE", "UPDATE", "DELETE", "READ"], "cls": "TcpListenerEntity", "id": "hostportname", "attrs": [
        A("address"), A("host", default=""), A("backlog", "integer", 0), A("port", "port"),
        A("multiAddressStrategy", ["none", "priority", "weighted"], "none"), A("siteId"),
        A("connectionsOpened", "integer", 0, create=False), A("connectionsClosed", "integer", 0, create=False),
        A("bytesIn", "integer", 0, create=False), A("bytesOut", "integer", 0, create=False), A("sslProfile"),
        A("authenticatePeer", "boolean", False), A("operStatus", ["up", "down"], "down", create=False),
        A("connectionMsg", default="", create=False), A("observer", ["none", "auto", "http1", "http2"], "auto", update=True)]},
    "tcpConnector": {"ops": ["CREATE", "DELETE", "READ"], "cls": "TcpConnectorEntity", "id": "hostportname", "attrs": [
        A("address"), A("host", default="127.0.0.1"), A("port", "port"), A("siteId"), A("processId"),
        A("connectionsOpened", "integer", 0, create=False), A("connectionsClosed", "integer", 0, create=False),
        A("bytesIn", "integer", 0, create=False), A("bytesOut", "integer", 0, create=False), A("sslProfile"),
        A("verifyHostname", "boolean", True)]},
    "log": {"ops": ["UPDATE", "READ"], "cls": "LogEntity", "id": "module", "attrs": [
        A("module", LOG_MODULES, create=False), A("enable", update=True), A("includeTimestamp", "boolean", update=True),
        A("includeSource", "boolean", update=True), A("outputFile", update=True)]},
    "router": {"ops": ["READ"], "cls": "RouterEntity", "id": "id", "attrs": [
        A("id"), A("vanId"), A("mode", ["standalone", "interior", "edge"], "standalone"), A("area", default="0", create=False),
        A("version", default="3.5.1", create=False), A("hostName", create=False), A("helloIntervalSeconds", "integer", 1),
        A("helloMaxAgeSeconds", "integer", 3), A("raIntervalSeconds", "integer", 30), A("raIntervalFluxSeconds", "integer", 4),
        A("remoteLsMaxAgeSeconds", "integer", 60), A("unreachableHoldoffSeconds", "integer", 1), A("workerThreads", "integer", 4),
        A("debugDumpFile"), A("saslConfigDir"), A("saslConfigName", default="skrouterd"), A("timestampsInUTC", "boolean"),
        A("timestampFormat"), A("defaultDistribution", DISTRIBUTIONS, "balanced"), A("metadata"),
        A("dataConnectionCount", default="auto"), A("dropTcpConnections", "boolean", True)]},
    "site": {"ops": ["READ"], "cls": "SiteEntity", "id": "id", "attrs": [
        A("location"), A("provider"), A("version"), A("platform"), A("namespace")]},
}  # fmt: skip
ADDRESS_TYPE = PREFIX + "router.config.address"
ADDRESS_COLUMNS = ["name", "identity", "type", "prefix", "pattern", "distribution", "priority"]


class Status(Exception):
    """A management error: status code, description, body (``{}`` from the Python agent, ``None`` from the C agent)."""

    def __init__(self, code: int, description: str, body: Any = None, c_agent: bool = False) -> None:
        super().__init__(description)
        self.code, self.description = code, description
        self.body = None if c_agent else ({} if body is None else body)


def long_name(type_name: str) -> str:
    """``listener`` → ``io.skupper.router.listener``."""
    return type_name if type_name.startswith(PREFIX) else PREFIX + type_name


def short_name(type_name: str) -> str:
    """``io.skupper.router.listener`` → ``listener``."""
    return type_name[len(PREFIX) :] if type_name.startswith(PREFIX) else type_name


class ManagementState:
    """The entities, by long type and name, and the logic of every management operation.

    Pure and thread-safe (one lock): :meth:`handle` takes a request's application
    properties and body and returns ``(statusCode, statusDescription, body)``.
    Listener binding goes through ``bind``/``unbind`` callbacks set by the server.
    """

    def __init__(self, router_id: str = "fake-router") -> None:
        self.lock = threading.RLock()
        self.router_id = router_id
        self.entities: dict[str, dict[str, dict[str, Any]]] = {long_name(t): {} for t in SCHEMA}
        self.entities[ADDRESS_TYPE] = {}
        self._address_ids = itertools.count(1)
        self.bind: Callable[[dict[str, Any]], None] = lambda attrs: None
        self.unbind: Callable[[dict[str, Any]], None] = lambda attrs: None
        self.log: Callable[[str], None] = lambda line: None
        self.requests: list[tuple[str, str | None, str | None]] = []
        self.fail_rules: list[tuple[Callable[[dict[str, Any], Any], bool], int, str]] = []
        """Test hook: ``(predicate(properties, body), code, description)``; the first match answers instead."""
        self.silent_rules: list[Callable[[dict[str, Any]], bool]] = []
        """Test hook: requests matching one of these get no reply at all (a hung router)."""
        for module in LOG_MODULES:
            attrs = {
                "module": module,
                "enable": None,
                "includeTimestamp": None,
                "includeSource": None,
                "outputFile": None,
            }
            if module == "DEFAULT":
                attrs.update(enable="info+", includeTimestamp=True, includeSource=False, outputFile="stderr")
            self._store("log", attrs)

    # -- configuration file -------------------------------------------------------
    def configure(self, sections: list[Any]) -> None:
        """Load a skrouterd JSON list like the router does at start; raises :class:`Status` on a bad entity."""
        for type_name, attributes in sections:
            type_name = {"address": "router.config.address"}.get(type_name, type_name)
            attributes = dict(attributes)
            if type_name == "router":
                self.router_id = attributes.get("id") or self.router_id
                self._store("router", self._validate("router", attributes))
            elif type_name == "site":
                self._store("site", self._validate("site", attributes))
            elif type_name == "log":
                target = self._find({"name": "log/" + str(attributes.get("module"))}, None)
                target.update(self._validate("log", dict(target, **attributes)))
            else:
                name = attributes.pop("name", None)
                self.handle(
                    {"operation": "CREATE", "type": long_name(type_name), "name": name}, attributes, raising=True
                )
        if not self.entities[long_name("router")]:
            self._store("router", self._validate("router", {"id": self.router_id}))

    # -- helpers -----------------------------------------------------------------
    def _schema(self, type_name: str) -> dict[str, Any]:
        return SCHEMA[short_name(type_name)]

    def _attr(self, type_name: str, name: str) -> tuple[str, Any, Any, bool, bool]:
        if name in ("name", "identity", "type"):
            return (name, "string", None, name != "identity", False)
        for attr in self._schema(type_name)["attrs"]:
            if attr[0] == name:
                return attr
        raise Status(400, f"Unknown attribute '{name}' for '{long_name(type_name)}'")

    def _coerce(self, type_name: str, name: str, value: Any) -> Any:
        _, kind, _, _, _ = self._attr(type_name, name)
        if value is None:
            return None
        if isinstance(kind, list):
            if value not in kind:
                raise Status(400, f"{long_name(type_name)}: Invalid value for enum{kind}: {value!r}")
            return value
        if kind == "port":
            return str(value)
        if kind == "boolean":
            if isinstance(value, str):
                lowered = value.lower()
                if lowered in ("yes", "true", "on"):
                    return True
                if lowered in ("no", "false", "off"):
                    return False
                raise Status(400, f"{long_name(type_name)}: Invalid value for boolean: {value!r}")
            return bool(value)
        if kind == "integer":
            try:
                return int(value)
            except (TypeError, ValueError):
                raise Status(400, f"{long_name(type_name)}: Invalid value for integer: {value!r}") from None
        return value

    def _validate(self, type_name: str, attributes: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for name, _kind, default, _c, _u in self._schema(type_name)["attrs"]:
            result[name] = self._coerce(type_name, name, attributes.get(name, default))
        result["type"] = long_name(type_name)
        result["name"] = attributes.get("name")
        return result

    def _identity(self, type_name: str, attrs: dict[str, Any]) -> str:
        style = self._schema(type_name)["id"]
        short = short_name(type_name)
        if style == "hostportname":
            tail = f"{attrs['host']}:{attrs['port']}"
            return f"{short}/{tail}:{attrs['name']}" if attrs.get("name") else f"{short}/{tail}"
        if style == "name":
            return f"{short}/{attrs['name']}"
        return f"{short}/{attrs.get(style)}"

    def _store(self, type_name: str, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = dict(attrs)
        attrs["type"] = long_name(type_name)
        attrs["identity"] = self._identity(type_name, attrs)
        if not attrs.get("name"):
            attrs["name"] = attrs["identity"]
        self.entities[long_name(type_name)][attrs["name"]] = attrs
        return attrs

    def _describe(self, type_name: str, attrs: dict[str, Any]) -> str:
        inner = ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs))
        return f"{self._schema(type_name)['cls']}({inner})"

    def _all(self) -> list[dict[str, Any]]:
        return [e for by_name in self.entities.values() for e in by_name.values()]

    def _find(self, properties: dict[str, Any], requested: str | None) -> dict[str, Any]:
        ids = {k: properties[k] for k in ("name", "identity") if k in properties}
        if not ids:
            if requested is None:
                return {"type": "org.amqp.management", "name": "self", "identity": "self"}
            raise Status(400, f"{requested}: No name or identity provided")
        key, value = next(iter(ids.items()))
        found = [e for e in self._all() if e.get(key) == value]
        if not found:
            raise Status(404, "No entity with " + " ".join(f"{k}={v}" for k, v in ids.items()))
        entity = found[0]
        for k, v in ids.items():
            if entity.get(k) != v:
                raise Status(400, "Conflicting " + " ".join(f"{k}={v}" for k, v in ids.items()))
        if requested is not None and entity["type"] != requested:
            raise Status(400, f"Entity type '{entity['type']}' does not extend requested type '{requested}'")
        return entity

    def _entity_type(self, given: Any) -> str:
        if not isinstance(given, str) or short_name(given) not in SCHEMA:
            raise Status(400, f"No such entity type '{given}'")
        return long_name(given)

    def _allowed(self, operation: str, type_name: str) -> None:
        ops = self._schema(type_name)["ops"]
        if operation.upper() not in ops:
            raise Status(501, f"Operation '{operation.upper()}' not implemented for '{long_name(type_name)}' {ops}")

    def _profile(self, name: Any) -> dict[str, Any]:
        profile = self.entities[long_name("sslProfile")].get(name)
        if profile is None:
            raise Status(500, f"CError: Not found: sslProfile '{name}' not found")
        return profile

    def _c_create(self, type_name: str, attrs: dict[str, Any]) -> None:
        short = short_name(type_name)
        if short in ("tcpListener", "tcpConnector"):
            if attrs.get("port") is None:
                raise Status(500, "CError: Python: KeyError: ('port',)")
            if short == "tcpListener" and (attrs.get("address") is None) == (
                attrs.get("multiAddressStrategy") in (None, "none")
            ):
                raise Status(
                    500,
                    "CError: Configuration: Exactly one of the 'address' or 'multiAddressStrategy' field must be set",
                )
            if short == "tcpConnector" and not attrs.get("address"):
                raise Status(500, "CError: Configuration: Address must be set")
        if attrs.get("sslProfile") is not None and short in ("listener", "connector", "tcpListener", "tcpConnector"):
            profile = self._profile(attrs["sslProfile"])
            if short == "tcpListener" and not profile.get("certFile"):
                raise Status(
                    500,
                    f"CError: Configuration: Listener requires a self-identifying certificate (sslProfile: {attrs['sslProfile']})",
                )
        if short == "sslProfile":
            self._check_ordinals(attrs, "Invalid sslProfile configuration: see logs for details.")

    @staticmethod
    def _check_ordinals(attrs: dict[str, Any], text: str) -> None:
        ordinal, oldest = attrs.get("ordinal"), attrs.get("oldestValidOrdinal")
        if (
            (ordinal is not None and ordinal < 0)
            or (oldest is not None and oldest < 0)
            or (ordinal is not None and oldest is not None and ordinal < oldest)
        ):
            raise Status(400, text)

    def _refresh_tcp(self, entity: dict[str, Any]) -> None:
        # A tcpListener is up while some tcpConnector serves its address.
        if entity["type"] not in (long_name("tcpListener"), long_name("tcpConnector")):
            return
        address = entity.get("address")
        served = any(c.get("address") == address for c in self.entities[long_name("tcpConnector")].values())
        for listener in self.entities[long_name("tcpListener")].values():
            if listener.get("address") == address:
                listener["operStatus"] = "up" if served else "down"

    # -- operations ----------------------------------------------------------------
    def handle(self, properties: dict[str, Any], body: Any, raising: bool = False) -> tuple[int, str, Any]:
        """Answer one request: ``(statusCode, statusDescription, body)``."""
        with self.lock:
            self.requests.append(
                (
                    str(properties.get("operation")),
                    properties.get("type") or properties.get("entityType"),
                    properties.get("name"),
                )
            )
            for predicate, code, description in self.fail_rules:
                if predicate(properties, body):
                    return code, description, {}
            try:
                code, result = self._dispatch(properties, body)
                return code, TEXT[code], result
            except Status as status:
                if raising:
                    raise
                self.log(f"AGENT (error) Error performing {properties.get('operation')}: {status.description}")
                return status.code, status.description, status.body

    def _dispatch(self, properties: dict[str, Any], body: Any) -> tuple[int, Any]:
        operation = properties.get("operation")
        if operation is None:
            raise Status(400, f"No 'operation' property: Message(properties={properties!r}, body={body!r})")
        operation = str(operation)
        given_type = properties.get("type")
        if given_type == ADDRESS_TYPE or (
            operation.upper() == "QUERY" and properties.get("entityType") == ADDRESS_TYPE
        ):
            return self._address(operation.upper(), properties, body)
        if operation.upper() == "QUERY":
            return self._query(properties, body)
        if operation.upper() == "CREATE":
            return self._create(properties, body)
        requested = self._entity_type(given_type) if given_type else None
        target = self._find(properties, requested)
        if target["type"] == "org.amqp.management":
            if operation == "GET-OPERATIONS":
                return OK, {long_name(t): s["ops"] for t, s in SCHEMA.items()} | {
                    ADDRESS_TYPE: ["CREATE", "DELETE", "READ"]
                }
            if operation == "GET-MGMT-NODES":
                return OK, []
            raise Status(501, f"Operation '{operation}' not implemented on org.amqp.management")
        self._allowed(operation, target["type"])
        if operation.upper() == "READ":
            return OK, dict(target)
        if operation.upper() == "UPDATE":
            return self._update(target, body if isinstance(body, dict) else {})
        if operation.upper() == "DELETE":
            del self.entities[target["type"]][target["name"]]
            if target["type"] == long_name("listener"):
                self.unbind(target)
            self._refresh_tcp(target)
            return NO_CONTENT, {}
        raise Status(
            501, f"Operation '{operation}' not implemented for '{target['type']}' {self._schema(target['type'])['ops']}"
        )

    def _create(self, properties: dict[str, Any], body: Any) -> tuple[int, Any]:
        attributes = dict(body) if isinstance(body, dict) else {}
        for key in ("type", "name"):
            prop = properties.get(key)
            if prop:
                old = attributes.setdefault(key, prop)
                if old is not None and old != prop:
                    raise Status(400, f"Conflicting values for '{key}'")
            attributes[key] = prop
        if attributes.get("type") is None:
            raise Status(400, f"No 'type' attribute in {attributes}")
        type_name = self._entity_type(attributes["type"])
        self._allowed("CREATE", type_name)
        for key in attributes:
            if not self._attr(type_name, key)[3]:
                raise Status(400, f"Cannot set attribute '{key}' in CREATE")
        attrs = self._validate(type_name, attributes)
        attrs["identity"] = self._identity(type_name, attrs)
        if not attrs.get("name"):
            attrs["name"] = attrs["identity"]
        existing = self._find_by_name(attrs["name"])
        if existing is not None:
            raise Status(
                400,
                f"adding {self._describe(type_name, attrs)} duplicates unique attribute 'name' "
                f"from existing {self._describe(existing['type'], existing)}",
            )
        self._c_create(type_name, attrs)
        stored = self._store(type_name, attrs)
        if type_name == long_name("listener"):
            self.bind(stored)
        self._refresh_tcp(stored)
        return CREATED, dict(stored)

    def _find_by_name(self, name: str) -> dict[str, Any] | None:
        for by_name in self.entities.values():
            if name in by_name:
                return by_name[name]
        return None

    def _update(self, target: dict[str, Any], body: dict[str, Any]) -> tuple[int, Any]:
        type_name = target["type"]
        for key, value in body.items():
            attr = self._attr(type_name, key)
            if not attr[4] and not (key in target and target[key] == value):
                raise Status(400, f"Cannot update attribute '{key}' in UPDATE")
        new = dict(target)
        for key, value in body.items():
            new[key] = self._coerce(type_name, key, value)
        if short_name(type_name) == "sslProfile":
            self._check_ordinals(new, "sslProfile configuration update failed: see logs for details.")
        target.update(new)
        return OK, dict(target)

    def _query(self, properties: dict[str, Any], body: Any) -> tuple[int, Any]:
        wanted = properties.get("entityType")
        names = list((body or {}).get("attributeNames") or []) if isinstance(body, dict) else []
        if wanted is None:
            entities = self._all()
            columns = names or ["name", "identity", "type"]
        else:
            type_name = self._entity_type(wanted)
            entities = list(self.entities[type_name].values())
            every = [a[0] for a in self._schema(type_name)["attrs"]] + ["name", "identity", "type"]
            unknown = [n for n in names if n not in every]
            if unknown:
                raise Status(404, f"Unknown attributes {unknown} for type {type_name}.")
            columns = names or every
        return OK, {"attributeNames": columns, "results": [[e.get(c) for c in columns] for e in entities]}

    def _address(self, operation: str, properties: dict[str, Any], body: Any) -> tuple[int, Any]:
        table = self.entities[ADDRESS_TYPE]

        def lookup() -> dict[str, Any]:
            name, identity = properties.get("name"), properties.get("identity")
            if name is None and identity is None:
                raise Status(400, "No name or identity provided", c_agent=True)
            for entity in table.values():
                if (identity is not None and entity["identity"] == identity) or (
                    identity is None and entity["name"] == name
                ):
                    return entity
            raise Status(404, "Not Found", c_agent=True)

        if operation == "QUERY":
            names = list((body or {}).get("attributeNames") or []) if isinstance(body, dict) else []
            columns = names or ADDRESS_COLUMNS
            return OK, {"attributeNames": columns, "results": [[e.get(c) for c in columns] for e in table.values()]}
        if operation == "CREATE":
            name = properties.get("name")
            if name is not None and any(e["name"] == name for e in table.values()):
                raise Status(400, "Name conflicts with an existing entity", c_agent=True)
            if not isinstance(body, dict):
                raise Status(400, "Body of request must be a map", c_agent=True)
            prefix, pattern = body.get("prefix"), body.get("pattern")
            if prefix is None and pattern is None:
                raise Status(400, "Either a 'prefix' or 'pattern' attribute must be provided", c_agent=True)
            if prefix is not None and pattern is not None:
                raise Status(400, "Cannot specify both a 'prefix' and a 'pattern' attribute", c_agent=True)
            distribution = body.get("distribution", "balanced")
            if distribution not in DISTRIBUTIONS:
                raise Status(400, f"Invalid value for distribution: {distribution}", c_agent=True)
            identity = str(next(self._address_ids))
            entity = {"name": name, "identity": identity, "type": ADDRESS_TYPE, "prefix": prefix, "pattern": pattern,
                      "distribution": distribution, "priority": body.get("priority", -1)}  # fmt: skip
            table[identity] = entity
            return CREATED, dict(entity)
        if operation == "READ":
            return OK, dict(lookup())
        if operation == "DELETE":
            entity = lookup()
            del table[entity["identity"]]
            return NO_CONTENT, None
        raise Status(501, "Not Implemented", c_agent=True)

    def snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        """A deep-enough copy of every entity, by long type and name (addresses by identity)."""
        with self.lock:
            return {t: {n: dict(e) for n, e in by.items()} for t, by in self.entities.items()}


def make_server(state: ManagementState) -> Any:
    """A proton :class:`MessagingHandler` that serves ``state`` on the AMQP listeners it binds."""
    from proton import Message, int32
    from proton.handlers import MessagingHandler

    class Server(MessagingHandler):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(auto_accept=True)
            self.container: Any = None
            self.acceptors: dict[str, Any] = {}
            self.senders: dict[str, Any] = {}
            self.counter = itertools.count(1)
            self.connections: list[Any] = []
            state.bind = self.bind
            state.unbind = self.unbind

        def bind(self, attrs: dict[str, Any]) -> None:
            host = attrs.get("host") or "127.0.0.1"
            if host in ("0.0.0.0", "::", "localhost"):
                host = "127.0.0.1"
            where = f"{host}:{attrs['port']}"
            try:
                self.acceptors[attrs["name"]] = self.container.listen(where)
                state.log(f"SERVER (info) Listening on {where}")
            except Exception as error:
                state.log(f"SERVER (error) Listener error on {where}: {error} (proton:io)")

        def unbind(self, attrs: dict[str, Any]) -> None:
            acceptor = self.acceptors.pop(attrs["name"], None)
            if acceptor is not None:
                acceptor.close()

        def on_start(self, event: Any) -> None:
            from proton.reactor import EventInjector

            self.container = event.container
            self.injector = EventInjector()
            self.container.selectable(self.injector)
            for listener in list(state.entities[long_name("listener")].values()):
                self.bind(listener)

        def on_peer_call(self, event: Any) -> None:
            function, done = event.subject
            try:
                function()
            finally:
                done.set()

        def on_connection_opened(self, event: Any) -> None:
            self.connections.append(event.connection)

        def on_link_opening(self, event: Any) -> None:
            link = event.link
            if link.is_sender and link.remote_source.dynamic:
                address = f"amqp:/_topo/0/{state.router_id}/temp.{next(self.counter)}"
                link.source.address = address
                self.senders[address] = link
            elif link.is_receiver:
                link.target.address = link.remote_target.address

        def on_message(self, event: Any) -> None:
            message = event.message
            target = event.link.remote_target.address or message.address or ""
            if not str(target).endswith("$management"):
                return
            if not message.reply_to:
                state.requests.append((str((message.properties or {}).get("operation")), None, "no reply_to"))
                return
            if any(rule(dict(message.properties or {})) for rule in state.silent_rules):
                state.requests.append((str((message.properties or {}).get("operation")), None, "unanswered"))
                return
            code, description, body = state.handle(dict(message.properties or {}), message.body)
            sender = self.senders.get(message.reply_to)
            if sender is None:
                return
            reply = Message(
                address=message.reply_to,
                correlation_id=message.correlation_id,
                properties={"statusCode": int32(code), "statusDescription": description},
                body=body,
            )
            sender.send(reply).settle()

    return Server()


class PeerThread:
    """The peer served by a proton Container on its own thread (for in-process tests)."""

    def __init__(self, state: ManagementState) -> None:
        from proton.reactor import Container

        self.state = state
        self.server = make_server(state)
        self.container = Container(self.server)
        self.thread = threading.Thread(target=self.container.run, name="mgmt-peer", daemon=True)

    def start(self) -> PeerThread:
        """Start serving; returns once the listeners are bound."""
        self.thread.start()
        deadline = time.monotonic() + 5
        wanted = len(self.state.entities[long_name("listener")])
        while (
            len(self.server.acceptors) < wanted or not hasattr(self.server, "injector")
        ) and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def call(self, function: Callable[[], Any]) -> None:
        """Run ``function`` on the container thread and wait for it."""
        from proton.reactor import ApplicationEvent

        done = threading.Event()
        self.server.injector.trigger(ApplicationEvent("peer_call", subject=(function, done)))
        done.wait(5)

    def drop_connections(self) -> None:
        """Close every client connection (the listeners stay): a lost connection as the client sees it."""

        def close() -> None:
            for connection in self.server.connections:
                connection.close()
            self.server.connections.clear()

        self.call(close)

    def stop(self) -> None:
        """Stop the container and wait for its thread."""

        def stop() -> None:
            # A stopped router's sockets are gone: close them hard, not with an AMQP close handshake.
            for acceptor in self.server.acceptors.values():
                acceptor.close()
            for connection in self.server.connections:
                transport = connection.transport
                if transport is not None:
                    transport.close_tail()
                    transport.close_head()
            self.server.injector.close()
            self.container.stop()

        if self.thread.is_alive():
            self.call(stop)
            self.thread.join(5)


def main(argv: list[str]) -> int:
    """The fake ``skrouterd -c FILE``."""
    config = None
    args = iter(argv)
    for arg in args:
        if arg in ("-c", "--config"):
            config = next(args, None)
        elif arg.startswith("--config="):
            config = arg.split("=", 1)[1]
    if config is None:
        print("usage: skrouterd -c FILE", file=sys.stderr)
        return 2
    starts = os.environ.get("MGMT_PEER_STARTS")
    if starts:
        with open(starts, "a", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()} {time.time():.3f}\n")
    state = ManagementState()
    state.log = lambda line: print(line, flush=True)
    try:
        with open(config, encoding="utf-8") as handle:
            state.configure(json.load(handle))
    except (OSError, ValueError, Status) as error:
        print(f"CONFIG (critical) Router start-up failed: {error}", file=sys.stderr, flush=True)
        return 1
    print(
        f"ROUTER (info) Router started in {state.entities[long_name('router')] and 'configured'} mode, id={state.router_id}",
        flush=True,
    )
    stop = threading.Event()
    exit_code = [0]

    def on_signal(signum: int, _frame: Any) -> None:
        exit_code[0] = int(os.environ.get("MGMT_PEER_TERM_CODE", "0"))
        print(f"SERVER (notice) Shut down on signal {signum}", flush=True)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    peer = PeerThread(state).start()
    crash_after = os.environ.get("MGMT_PEER_EXIT_AFTER")
    crash_file = os.environ.get("MGMT_PEER_CRASH_IF_EXISTS")
    crash = crash_after is not None and (crash_file is None or os.path.exists(crash_file))
    deadline = time.monotonic() + float(crash_after) if crash and crash_after else None
    while not stop.wait(0.05):
        if deadline is not None and time.monotonic() >= deadline:
            print("ROUTER (critical) simulated crash", file=sys.stderr, flush=True)
            os._exit(int(os.environ.get("MGMT_PEER_EXIT_CODE", "3")))
        if not peer.thread.is_alive():
            return 70
    peer.stop()
    return exit_code[0]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
