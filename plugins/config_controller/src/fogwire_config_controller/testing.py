"""A stand-in ioFog Controller for tests, benchmarks and the fleet demo.

:class:`StandInController` is an aiohttp server on loopback that answers the agent
API as ``controller-agent-api.md`` recorded a real controller (eclipse-iofog
Controller v3.0.4) answering it, quirks included:

* provisioning keys: 8 characters, single use, 20 minutes; asking again replaces the key;
  ``type`` checked as the controller checks it (400 texts), an unknown or used key is 404,
  an expired one 401; provisioning again rotates the node's credentials;
* both auth generations: the raw 16-character token of v3.0.x (no scheme; ``Bearer``
  is 401; **no header at all is a 500**), or (``auth="jwt"``) the Datasance ≥ 3.5
  EdDSA JWT checked with the node's public key, each ``jti`` accepted once;
* the append-only change-event table: GET ORs the rows' flags and has no side effect;
  the PATCH ack deletes the rows up to the ``lastUpdated`` it names;
* ``GET agent/microservices`` clears ``rebuild`` as a side effect, leaves out a
  microservice with no image for the node's type, and serves ``config`` as a JSON string;
* ``PUT agent/status`` validated as the controller does: 500 without
  ``microserviceStatus`` or with a non-array inside it (node fields still saved),
  400 for an array not wrapped in a string or a negative number;
* HTML error pages for a malformed JSON body (400) and an unknown route (404);
* ``POST agent/deprovision`` (the token stays valid) and ``DELETE agent/delete-node``.

The user side (what iofogctl or the ECN Viewer would do) is plain methods:
:meth:`create_node`, :meth:`provisioning_key`, :meth:`deploy`, :meth:`update`,
:meth:`delete`, :meth:`add_registry`, :meth:`update_node_config`, :meth:`command`,
:meth:`delete_node`, and :meth:`reported` to read what the node said. Faults are
injected with :meth:`fail`, :meth:`slow` and :meth:`stop`/:meth:`start`.

Nothing here is imported by the source itself.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import secrets
import string
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import attrs
import jwt
import jwt.algorithms
from aiohttp import web


class _Ed25519(jwt.algorithms.Algorithm):
    """EdDSA over Ed25519 with PyNaCl, so PyJWT frames and checks the token without ``cryptography``."""

    def prepare_key(self, key: Any) -> Any:
        """A PyNaCl ``SigningKey`` (to sign) or ``VerifyKey`` (to verify), as given."""
        return key

    def sign(self, msg: bytes, key: Any) -> bytes:
        """The 64-byte Ed25519 signature of ``msg``."""
        signature: bytes = key.sign(msg).signature
        return signature

    def verify(self, msg: bytes, key: Any, sig: bytes) -> bool:
        """Whether ``sig`` is ``key``'s signature of ``msg``."""
        import nacl.exceptions

        try:
            key.verify(msg, sig)
        except nacl.exceptions.BadSignatureError:
            return False
        return True

    @staticmethod
    def to_jwk(key_obj: Any, as_dict: bool = False) -> Any:
        """Not needed: keys come from the provision answer."""
        raise NotImplementedError

    @staticmethod
    def from_jwk(jwk: Any) -> Any:
        """Not needed: :func:`signing_key` reads the provisioned JWK."""
        raise NotImplementedError


@functools.cache
def jws() -> Any:
    """PyJWT's JWS codec with EdDSA (PyNaCl) as its only algorithm: the stand-in checks tokens with it."""
    codec = jwt.PyJWS(algorithms=[])
    codec.register_algorithm("EdDSA", _Ed25519())
    return codec


T = TypeVar("T")

AGENT_PREFIX = "/api/v3/agent/"
CHANGE_FLAGS = (
    "config",
    "version",
    "reboot",
    "deleteNode",
    "microserviceList",
    "microserviceConfig",
    "routing",
    "registries",
    "tunnel",
    "diagnostics",
    "isImageSnapshot",
    "prune",
    "routerChanged",
    "linkedEdgeResources",
)
"""The flags of ``GET agent/config/changes``, in the controller's order."""

REBUILD_FIELDS = ("env", "cmd", "portMappings", "volumeMappings", "extraHosts", "rootHostAccess", "images")
"""A change to one of these sets ``rebuild`` (a ``config``-only change does not)."""

DEFAULT_NODE_CONFIG: dict[str, Any] = {
    "networkInterface": "eth0",
    "dockerUrl": "unix:///var/run/docker.sock",
    "diskLimit": 50,
    "diskDirectory": "/var/lib/iofog/",
    "memoryLimit": 4096,
    "cpuLimit": 80,
    "logLimit": 10,
    "logDirectory": "/var/log/iofog/",
    "logFileCount": 10,
    "statusFrequency": 10,
    "changeFrequency": 20,
    "deviceScanFrequency": 20,
    "watchdogEnabled": True,
    "latitude": None,
    "longitude": None,
    "logLevel": "INFO",
    "availableDiskThreshold": 20,
    "dockerPruningFrequency": 1,
    "routerHost": "localhost",
    "routerPort": 5672,
    "timeZone": None,
}
"""``GET agent/config`` of a new node, as the controller answered it."""

STATUS_NUMBERS = (
    "daemonOperatingDuration",
    "daemonLastStart",
    "systemTime",
    "lastStatusTime",
    "lastCommandTime",
    "memoryUsage",
    "diskUsage",
    "cpuUsage",
    "messageSpeed",
    "systemAvailableDisk",
    "systemAvailableMemory",
    "systemTotalCpu",
    "repositoryCount",
    "processedMessages",
)
"""Status fields the controller requires to be numbers ≥ 0."""


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{datetime.now(UTC).microsecond // 1000:03d}Z"


def _parse_iso(value: str) -> float:
    return datetime.strptime(value.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


@attrs.define
class ChangeRow:
    """One row of the controller's change-event table."""

    flags: frozenset[str]
    last_updated: str


@attrs.define
class Microservice:
    """A microservice as the controller keeps it (user side)."""

    uuid: str
    node: str
    images: dict[int, str]
    """Fog type (1 x86, 2 arm) → image."""
    fields: dict[str, Any]
    """Everything else served in ``GET agent/microservices`` (camelCase, as served)."""
    rebuild: bool = False


@attrs.define
class Node:
    """An ioFog node (agent) as the controller keeps it."""

    uuid: str
    name: str
    fog_type: int
    config: dict[str, Any] = attrs.field(factory=lambda: dict(DEFAULT_NODE_CONFIG))
    token: str | None = None
    public_key: bytes | None = None
    key: str | None = None
    key_expires: float = 0.0
    changes: list[ChangeRow] = attrs.field(factory=list)
    status: dict[str, Any] = attrs.field(factory=dict)
    statuses_received: int = 0
    deprovisioned: bool = False
    version_command: str | None = None


@attrs.frozen
class Fault:
    """Answer the next matching call with ``status`` and ``body`` (``html``: as an HTML page)."""

    method: str
    path: str
    status: int
    body: Any = None
    html: bool = False


class StandInController:
    """The stand-in controller; see the module docstring.

    ``auth`` is the generation it speaks: ``"legacy"`` (eclipse-iofog v3.0.x,
    ``{uuid, token}``) or ``"jwt"`` (Datasance ≥ 3.5, ``{uuid, privateKey, namespace}``).
    """

    def __init__(self, *, auth: Literal["legacy", "jwt"] = "legacy", host: str = "127.0.0.1") -> None:
        self.auth = auth
        self.host = host
        self.port = 0
        self.nodes: dict[str, Node] = {}
        self.microservices: dict[str, Microservice] = {}
        self.registries: dict[int, dict[str, Any]] = {
            1: self._registry_row(1, "registry.hub.docker.com", public=True),
            2: self._registry_row(2, "from_cache", public=True),
        }
        self.requests: list[tuple[str, str]] = []
        """(method, path) of every agent call, in order."""
        self.answered: list[tuple[str, str, float]] = []
        """(method, path, ``time.perf_counter()``) of every answer, as it left the handler."""
        self.used_jtis: set[str] = set()
        self.faults: list[Fault] = []
        self.delays: dict[tuple[str, str], float] = {}
        self.ssl_context: Any = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._next_registry = 3

    # ------------------------------------------------------------------ server

    @property
    def url(self) -> str:
        """The API base the agent is configured with (``…/api/v3/``)."""
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}/api/v3/"

    async def start(self, port: int | None = None) -> str:
        """Serve (again on the same port after :meth:`stop`); return :attr:`url`."""
        if self._runner is None:
            app = web.Application(middlewares=[self._middleware], client_max_size=8 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", self._dispatch)
            self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.1)
            await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, port or self.port, ssl_context=self.ssl_context)
        await self._site.start()
        server = self._site._server
        if server is not None and not self.port:
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self.url

    async def stop(self) -> None:
        """Stop answering (the controller is down); :meth:`start` serves again."""
        if self._site is not None:
            await self._site.stop()
            self._site = None

    async def close(self) -> None:
        """Stop for good."""
        await self.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ faults

    def fail(
        self, method: str, path: str, status: int, body: Any = None, *, html: bool = False, times: int = 1
    ) -> None:
        """Answer the next ``times`` calls of ``method path`` (agent path, e.g. ``config/changes``) with an error."""
        self.faults.extend(Fault(method, path, status, body, html) for _ in range(times))

    def slow(self, method: str, path: str, seconds: float) -> None:
        """Delay every ``method path`` answer by ``seconds`` (0 removes the delay)."""
        if seconds:
            self.delays[(method, path)] = seconds
        else:
            self.delays.pop((method, path), None)

    # ------------------------------------------------------------------ user side

    def create_node(self, name: str, fog_type: int = 0) -> str:
        """A new node (``POST /api/v3/iofog``); it already shows microserviceList and microserviceConfig."""
        uuid = self._uuid()
        node = Node(uuid, name, fog_type)
        self.nodes[uuid] = node
        self._change(node, "microserviceList", "microserviceConfig")
        return uuid

    def provisioning_key(self, node: str, *, valid_s: float = 20 * 60) -> str:
        """A provisioning key for ``node``: 8 characters, single use, replacing any earlier one."""
        key = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(8))
        self.nodes[node].key = key
        self.nodes[node].key_expires = time.time() + valid_s
        return key

    def add_registry(self, url: str, username: str = "", password: str = "", *, email: str = "") -> int:
        """A user registry (id ≥ 3); every node sees the ``registries`` flag."""
        rid = self._next_registry
        self._next_registry += 1
        self.registries[rid] = self._registry_row(rid, url, username=username, password=password, email=email)
        for node in self.nodes.values():
            self._change(node, "registries")
        return rid

    def deploy(
        self,
        node: str,
        *,
        x86: str | None = None,
        arm: str | None = None,
        registry_id: int = 1,
        config: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> str:
        """Deploy a microservice on ``node``; ``fields`` are served as given (camelCase: ``env``, ``portMappings``…)."""
        uuid = self._uuid()
        images = {t: i for t, i in ((1, x86), (2, arm)) if i}
        served = {
            "config": json.dumps(dict(config or {})),
            "rootHostAccess": False,
            "logSize": 1,
            "registryId": registry_id,
            "portMappings": [],
            "volumeMappings": [],
            "imageSnapshot": "",
            "delete": False,
            "deleteWithCleanup": False,
            "env": [],
            "extraHosts": [],
            "cmd": [],
            "routes": [],
            "isConsumer": False,
        }
        served.update(fields)
        self.microservices[uuid] = Microservice(uuid, node, images, served)
        self._change(self.nodes[node], "microserviceList", "microserviceConfig")
        return uuid

    def update(self, uuid: str, *, x86: str | None = None, arm: str | None = None, **fields: Any) -> None:
        """Change a microservice; ``rebuild`` is set unless only ``config`` changed."""
        ms = self.microservices[uuid]
        if "config" in fields and not isinstance(fields["config"], str):
            fields["config"] = json.dumps(fields["config"])
        ms.fields.update(fields)
        if x86 is not None:
            ms.images[1] = x86
        if arm is not None:
            ms.images[2] = arm
        if x86 is not None or arm is not None or any(f in REBUILD_FIELDS for f in fields):
            ms.rebuild = True
        self._change(self.nodes[ms.node], "microserviceList", "microserviceConfig", "routing")

    def delete(self, uuid: str) -> None:
        """Delete a microservice: it leaves the list (deletion is absence)."""
        ms = self.microservices.pop(uuid)
        self._change(self.nodes[ms.node], "microserviceList", "microserviceConfig")

    def update_node_config(self, node: str, **config: Any) -> None:
        """``PATCH /api/v3/iofog/{uuid}``: the node's settings (changeFrequency, logLevel, …)."""
        self.nodes[node].config.update(config)
        self._change(self.nodes[node], "config", "routerChanged", "microserviceList", "microserviceConfig")

    def command(self, node: str, flag: str) -> None:
        """Raise one command flag on ``node`` (``prune``, ``reboot``, ``version``, ``tunnel``, …)."""
        self._change(self.nodes[node], flag)

    def delete_node(self, node: str) -> None:
        """Delete the node: node and credentials vanish together (the agent sees 401 from then on)."""
        self.nodes.pop(node)
        for uuid in [u for u, m in self.microservices.items() if m.node == node]:
            del self.microservices[uuid]

    def reported(self, node: str) -> dict[str, Any]:
        """What the node last reported (``microserviceStatus`` parsed into ``microservices``: uuid → entry)."""
        status = dict(self.nodes[node].status)
        entries = json.loads(status.get("microserviceStatus") or "[]")
        status["microservices"] = {e["id"]: e for e in entries if isinstance(e, dict) and "id" in e}
        return status

    def pending_changes(self, node: str) -> list[ChangeRow]:
        """The node's change rows not yet acknowledged."""
        return list(self.nodes[node].changes)

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _uuid() -> str:
        return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))

    @staticmethod
    def _registry_row(
        rid: int, url: str, *, public: bool = False, username: str = "", password: str = "", email: str = ""
    ) -> dict[str, Any]:
        return {
            "id": rid,
            "url": url,
            "isPublic": public,
            "isSecure": not url.startswith("http://"),
            "certificate": "",
            "requiresCert": False,
            "username": username,
            "password": password,
            "userEmail": email,
            "userId": 1,
        }

    @staticmethod
    def _change(node: Node, *flags: str) -> None:
        node.changes.append(ChangeRow(frozenset(flags), _now_iso()))

    @staticmethod
    def _error(status: int, name: str, message: str) -> web.Response:
        body: dict[str, Any] = {"name": name, "message": message}
        if status >= 500:
            body["stack"] = f"{name}: {message}\n    at stand-in"
        return web.json_response(body, status=status)

    @staticmethod
    def _html(status: int, text: str) -> web.Response:
        page = f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Error</title>\n</head>\n<body>\n<pre>{text}</pre>\n</body>\n</html>\n'
        return web.Response(status=status, text=page, content_type="text/html")

    # ------------------------------------------------------------------ agent side

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        path = request.path
        agent_path = path[len(AGENT_PREFIX) :] if path.startswith(AGENT_PREFIX) else path
        self.requests.append((request.method, agent_path))
        delay = self.delays.get((request.method, agent_path))
        if delay:
            await asyncio.sleep(delay)
        for fault in self.faults:
            if fault.method == request.method and fault.path == agent_path:
                self.faults.remove(fault)
                if fault.html:
                    return self._html(fault.status, str(fault.body or "Internal Server Error"))
                return web.json_response(fault.body or {"name": "Error", "message": "injected"}, status=fault.status)
        response: web.StreamResponse = await handler(request)
        self.answered.append((request.method, agent_path, time.perf_counter()))
        return response

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/api/v3/status" and request.method == "GET":
            return web.json_response({"status": "online", "versions": {"controller": "3.0.4", "ecnViewer": "3.0.0"}})
        route = (request.method, path[len(AGENT_PREFIX) :]) if path.startswith(AGENT_PREFIX) else None
        handler = self._routes().get(route) if route else None
        if handler is None and route != ("POST", "provision"):
            return self._html(404, f"Cannot {request.method} {path}")
        body: Any = None
        if request.method in ("POST", "PUT", "PATCH") and request.can_read_body:
            raw = await request.read()
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._html(
                        400,
                        f"SyntaxError: Unexpected token in JSON at position 0<br> &nbsp; &nbsp;at JSON.parse ({path})",
                    )
        if route == ("POST", "provision"):
            return self._provision(body)
        node = self._authenticate(request)
        if isinstance(node, web.Response) or handler is None:
            return node if isinstance(node, web.Response) else self._html(404, f"Cannot {request.method} {path}")
        answer: web.Response = handler(node, body)
        return answer

    def _routes(self) -> dict[tuple[str, str], Any]:
        return {
            ("GET", "config/changes"): self._get_changes,
            ("PATCH", "config/changes"): self._ack_changes,
            ("GET", "microservices"): self._get_microservices,
            ("GET", "registries"): lambda node, body: web.json_response({"registries": list(self.registries.values())}),
            ("GET", "config"): lambda node, body: web.json_response(node.config),
            ("PATCH", "config"): self._patch_config,
            ("PUT", "status"): self._put_status,
            ("POST", "deprovision"): self._deprovision,
            ("DELETE", "delete-node"): self._delete_node,
            ("GET", "version"): self._get_version,
            ("GET", "tunnel"): lambda node, body: self._error(404, "NotFoundError", "Tunnel not found"),
            ("GET", "strace"): lambda node, body: self._error(404, "NotFoundError", "Strace not found"),
            ("GET", "edgeResources"): lambda node, body: web.json_response({"edgeResources": []}),
            ("PUT", "hal/hw"): lambda node, body: web.Response(status=204),
            ("PUT", "hal/usb"): lambda node, body: web.Response(status=204),
        }

    def _provision(self, body: Any) -> web.Response:
        if not isinstance(body, dict) or "type" not in body:
            return self._error(400, "ValidationError", "Required field 'type' is missing")
        if not isinstance(body["type"], int) or isinstance(body["type"], bool):
            return self._error(400, "ValidationError", "Field 'type' is not of a type(s) integer")
        if body["type"] not in (0, 1, 2):
            return self._error(400, "ValidationError", "instance.type must be less than or equal to 2")
        key = body.get("key")
        node = next((n for n in self.nodes.values() if key and n.key == key), None)
        if node is None:
            return self._error(404, "NotFoundError", "Invalid Provisioning Key")
        if time.time() > node.key_expires:
            return self._error(401, "AuthenticationError", "Expired Provisioning Key")
        fog_type = body["type"] or 1
        if node.fog_type == 0:
            node.fog_type = fog_type
        missing = [m for m in self.microservices.values() if m.node == node.uuid and node.fog_type not in m.images]
        if missing:
            return self._error(
                400,
                "ValidationError",
                "Some of microservices haven't proper docker images for this ioFog type. List of invalid microservices:\n"
                + ", ".join(m.uuid for m in missing),
            )
        node.key = None
        node.deprovisioned = False
        if self.auth == "legacy":
            node.token = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(16))
            return web.json_response({"uuid": node.uuid, "token": node.token})
        import nacl.signing

        signing = nacl.signing.SigningKey.generate()
        node.public_key = bytes(signing.verify_key)
        jwk = {
            "kty": "OKP",
            "crv": "Ed25519",
            "d": base64.urlsafe_b64encode(bytes(signing)).rstrip(b"=").decode(),
            "x": base64.urlsafe_b64encode(node.public_key).rstrip(b"=").decode(),
        }
        private = base64.b64encode(json.dumps(jwk).encode()).decode()
        return web.json_response({"uuid": node.uuid, "privateKey": private, "namespace": "default"})

    def _authenticate(self, request: web.Request) -> Node | web.Response:
        header = request.headers.get("Authorization")
        if header is None:
            # the controller's own quirk: a missing header is a database error, not a 401
            return self._error(500, "Error", 'WHERE parameter "token" has invalid "undefined" value')
        failed = self._error(401, "AuthenticationError", "authorization failed")
        if self.auth == "legacy":
            node = next((n for n in self.nodes.values() if n.token is not None and n.token == header), None)
            return failed if node is None else node
        if not header.startswith("Bearer "):
            return failed
        import nacl.signing

        token = header.removeprefix("Bearer ")
        try:
            unverified = json.loads(jws().decode_complete(token, options={"verify_signature": False})["payload"])
            node = self.nodes.get(str(unverified.get("sub")))
            if node is None or node.public_key is None:
                return failed
            verified = jws().decode_complete(token, nacl.signing.VerifyKey(node.public_key), algorithms=["EdDSA"])
            claims = json.loads(verified["payload"])
        except (jwt.InvalidTokenError, ValueError, AttributeError):
            return failed
        now = time.time()
        if claims.get("tokenUse") != "controller" or not claims.get("jti"):
            return failed
        if not (claims.get("nbf", 0) - 5 <= now < claims.get("exp", 0)):
            return failed
        if claims["jti"] in self.used_jtis:
            return failed
        self.used_jtis.add(claims["jti"])
        return node

    def _get_changes(self, node: Node, body: Any) -> web.Response:
        flags = {name: False for name in CHANGE_FLAGS}
        for row in node.changes:
            for flag in row.flags:
                flags[flag] = True
        flags_out: dict[str, Any] = dict(flags)
        flags_out["lastUpdated"] = node.changes[-1].last_updated if node.changes else _now_iso()
        return web.json_response(flags_out)

    def _ack_changes(self, node: Node, body: Any) -> web.Response:
        value = body.get("lastUpdated") if isinstance(body, dict) else None
        if isinstance(value, str):
            try:
                upto = _parse_iso(value)
            except ValueError:
                return self._error(400, "ValidationError", "Field 'lastUpdated' is not a date")
            node.changes = [row for row in node.changes if _parse_iso(row.last_updated) > upto]
        return web.json_response({})

    def _get_microservices(self, node: Node, body: Any) -> web.Response:
        out = []
        for ms in self.microservices.values():
            if ms.node != node.uuid or node.fog_type not in ms.images:
                continue
            out.append({"uuid": ms.uuid, "imageId": ms.images[node.fog_type], "rebuild": ms.rebuild, **ms.fields})
            ms.rebuild = False  # the controller's quirk: serving the list clears rebuild
        return web.json_response({"microservices": out})

    def _patch_config(self, node: Node, body: Any) -> web.Response:
        if isinstance(body, dict):
            node.config.update({k: v for k, v in body.items() if k in DEFAULT_NODE_CONFIG})
        return web.Response(status=204)

    def _put_status(self, node: Node, body: Any) -> web.Response:
        if not isinstance(body, dict):
            return self._error(400, "ValidationError", "Invalid body")
        for key in STATUS_NUMBERS:
            value = body.get(key)
            if value is not None and (not isinstance(value, (int, float)) or value < 0):
                return self._error(400, "ValidationError", f"Field '{key}' must be greater than or equal to 0")
        entries = body.get("microserviceStatus")
        if entries is not None and not isinstance(entries, str):
            return self._error(400, "ValidationError", "Field 'microserviceStatus' is not of a type(s) string")
        saved = {k: v for k, v in body.items() if k != "microserviceStatus"}
        node.status.update(saved)  # node-level fields are saved even when the call then fails
        if entries is None:
            return self._error(500, "TypeError", "Cannot read properties of undefined (reading 'length')")
        try:
            parsed = json.loads(entries)
        except ValueError:
            return self._error(500, "SyntaxError", "Unexpected token in JSON")
        if not isinstance(parsed, list):
            return self._error(500, "TypeError", "microserviceStatus.map is not a function")
        node.status["microserviceStatus"] = entries
        node.statuses_received += 1
        return web.Response(status=204)

    def _deprovision(self, node: Node, body: Any) -> web.Response:
        node.deprovisioned = True
        node.status["daemonStatus"] = "UNKNOWN"
        return web.Response(status=204)

    def _delete_node(self, node: Node, body: Any) -> web.Response:
        self.delete_node(node.uuid)
        return web.Response(status=204)

    def _get_version(self, node: Node, body: Any) -> web.Response:
        if node.version_command is None:
            return self._error(404, "NotFoundError", "Version command not found")
        return web.json_response({"versionCommand": node.version_command, "provisionKey": "", "expirationTime": 0})


class StandInThread:
    """A stand-in controller on an event loop in a thread of its own, for code that blocks (benchmarks, demos).

    :meth:`call` runs a user-side method on the stand-in's loop; :meth:`provision`
    provisions a state dir as ``fogwire provision`` does.
    """

    def __init__(self, auth: Literal["legacy", "jwt"] = "legacy") -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="stand-in", daemon=True)
        self.thread.start()
        self.controller = StandInController(auth=auth)
        self.url = self.run(self.controller.start())

    def run(self, coroutine: Awaitable[T]) -> T:
        """Run ``coroutine`` on the stand-in's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)  # type: ignore[arg-type]

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a user-side method on the stand-in's loop (its state is the loop's)."""

        async def do() -> T:
            return fn(*args, **kwargs)

        return self.run(do())

    def provision(self, state_dir: Path, name: str) -> str:
        """Create node ``name`` and provision ``state_dir`` for it; the node's uuid."""
        from fogwire_config_controller import credentials
        from fogwire_config_controller.client import ControllerClient

        node = self.call(self.controller.create_node, name)
        key = self.call(self.controller.provisioning_key, node)
        client = ControllerClient(self.url)
        answer = client.call("POST", "agent/provision", {"key": key, "type": 1}, authenticated=False).data
        credentials.save(state_dir, credentials.Credentials.from_answer(client.base, answer, 1))
        return node

    def close(self) -> None:
        """Stop the stand-in and its thread."""
        self.run(self.controller.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
