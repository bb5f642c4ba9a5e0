"""The controller's microservices and registries as the ioFog documents the agent validates.

``GET agent/microservices`` serves one flat object per microservice
(``controller-agent-api.md`` §5); the agent's desired state is made of ioFog
``Microservice`` and ``Registry`` documents. :func:`documents` turns the one into
the other and checks each microservice alone with the agent's converter: a
malformed one is left out with its uuid and the field path *in the controller's
terms* (``portMappings[0].portInternal``), and the others run. Fields the
controller added and fogwire does not know are ignored (controllers add fields);
fields fogwire knows but can't honour reach the agent, which refuses that one
microservice naming the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import cattrs

from fogwire.errors import ConfigError
from fogwire.model.desired import BUILTIN_REGISTRIES, parse_document

API_VERSION = "iofog.org/v3"

CONTAINER_FIELDS = (
    "rootHostAccess",
    "hostNetworkMode",
    "isPrivileged",
    "memoryLimit",
    "healthCheck",
    "capAdd",
    "capDrop",
    "runAsUser",
    "cpuSetCpus",
    "logSize",
    "pidMode",
    "ipcMode",
    "runtime",
    "platform",
    "cdiDevices",
    "annotations",
)
"""Controller fields that are container fields of the same name in an ioFog document."""

_PATHS = (
    ("spec.container.ports", "portMappings"),
    ("spec.container.volumes", "volumeMappings"),
    ("spec.container.commands", "cmd"),
    ("spec.container.extraHosts", "extraHosts"),
    ("spec.container.env", "env"),
    ("spec.container.", ""),
    ("spec.images.registry", "registryId"),
    ("spec.images", "imageId"),
    ("spec.config", "config"),
    ("spec.", ""),
)
_LEAVES = {"internal": "portInternal", "external": "portExternal", "protocol": "isUdp"}


@attrs.frozen
class Rejected:
    """A microservice (or registry) left out of the desired state, and why."""

    uuid: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"microservice {self.uuid}: {self.path}: {self.message}"


@attrs.frozen
class Translation:
    """The documents for the agent and what was left out."""

    documents: list[Any]
    rejected: tuple[Rejected, ...] = ()


def controller_path(document_path: str) -> str:
    """A path in the translated document as the controller's field path (``spec.container.ports[0].internal`` → ``portMappings[0].portInternal``)."""
    for prefix, field in _PATHS:
        if document_path.startswith(prefix):
            rest = document_path[len(prefix) :]
            path = (field + rest) if field else rest
            head, _, leaf = path.rpartition(".")
            if leaf in _LEAVES:
                path = f"{head}.{_LEAVES[leaf]}" if head else _LEAVES[leaf]
            return path or field
    return document_path


def _config(value: Any) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    parsed = json.loads(value) if isinstance(value, str) else value
    if not isinstance(parsed, dict):
        raise ValueError(f"expected a JSON object (as a string), got {type(parsed).__name__}")
    return parsed


def microservice_document(ms: Mapping[str, Any]) -> dict[str, Any]:
    """One controller microservice as an ioFog ``Microservice`` document (plain data).

    Raises ``ValueError`` (with the field) for what can't even be translated: no
    ``uuid``, no ``imageId``, a ``config`` that is not a JSON object.
    """
    uuid = ms.get("uuid")
    if not isinstance(uuid, str) or not uuid:
        raise ValueError("uuid: expected the microservice's uuid")
    image = ms.get("imageId")
    if not isinstance(image, str) or not image:
        raise ValueError("imageId: expected an image reference")
    container: dict[str, Any] = {}
    if ms.get("cmd"):
        container["commands"] = ms["cmd"]
    if ms.get("env"):
        container["env"] = ms["env"]
    if ms.get("extraHosts"):
        container["extraHosts"] = ms["extraHosts"]
    if ms.get("portMappings"):
        container["ports"] = [_port(p) for p in ms["portMappings"]]
    if ms.get("volumeMappings"):
        container["volumes"] = ms["volumeMappings"]
    for field in CONTAINER_FIELDS:
        if ms.get(field) is not None:
            container[field] = ms[field]
    try:
        config = _config(ms.get("config"))
    except ValueError as error:
        raise ValueError(f"config: {error}") from None
    spec: dict[str, Any] = {
        "name": uuid,
        # imageId is already the one image for this node's type: offer it for either field
        "images": {"x86": image, "arm": image, "registry": ms.get("registryId", 1)},
        "container": container,
        "config": config,
        "rebuild": bool(ms.get("rebuild")),
    }
    if isinstance(ms.get("application"), str) and ms["application"]:
        spec["application"] = ms["application"]
    return {"apiVersion": API_VERSION, "kind": "Microservice", "metadata": {"name": uuid}, "spec": spec}


def _port(port: Any) -> Any:
    if not isinstance(port, dict):
        return port
    out = {k: v for k, v in port.items() if k not in ("portInternal", "portExternal", "isUdp")}
    if "portInternal" in port:
        out["internal"] = port["portInternal"]
    if "portExternal" in port:
        out["external"] = port["portExternal"]
    out["protocol"] = "udp" if port.get("isUdp") else "tcp"
    out.pop("isPublic", None)
    out.pop("host", None)
    out.pop("publicPort", None)
    out.pop("protocolPublic", None)
    return out


def registry_document(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """A controller registry row as an ioFog ``Registry`` document; ``None`` for the built-in ids 1 and 2."""
    rid = row.get("id")
    if not isinstance(rid, int) or rid in BUILTIN_REGISTRIES:
        return None
    url = str(row.get("url") or "")
    spec = {
        "id": rid,
        "url": url,
        "private": not row.get("isPublic", False),
        "username": str(row.get("username") or ""),
        "password": str(row.get("password") or ""),
        "email": str(row.get("userEmail") or ""),
        "requiresCert": bool(row.get("requiresCert")),
        "certificate": row.get("certificate") or None,
        "insecure": url.startswith("http://"),
    }
    return {"apiVersion": API_VERSION, "kind": "Registry", "metadata": {"name": f"registry-{rid}"}, "spec": spec}


def documents(
    converter: cattrs.Converter, microservices: Sequence[Any], registries: Iterable[Any], origin: str
) -> Translation:
    """The desired-state documents: every registry, then every microservice that checks on its own.

    A microservice is left out (a :class:`Rejected`) when it can't be translated,
    when its document does not structure with ``converter``, when it names a
    registry the controller did not list, or when it publishes a host port an
    earlier one (in uuid order) already publishes.
    """
    out: list[Any] = []
    registry_ids = set(BUILTIN_REGISTRIES)
    unreadable: dict[int, str] = {}
    for row in registries:
        if not isinstance(row, dict):
            continue
        document = registry_document(row)
        if document is None:
            continue
        try:
            parse_document(converter, document, origin, len(out) + 1)
        except ConfigError as error:
            # a registry row fogwire can't read (requiresCert without a PEM certificate…): microservices
            # naming it are rejected below, with why
            problem = error.problems[0]
            unreadable[row["id"]] = f"{problem.path.removeprefix('spec.')}: {problem.message}"
            continue
        registry_ids.add(row["id"])
        out.append(document)
    rejected: list[Rejected] = []
    ports: dict[tuple[int, str], str] = {}
    ordered = sorted((m for m in microservices if isinstance(m, dict)), key=lambda m: str(m.get("uuid")))
    for ms in ordered:
        uuid = str(ms.get("uuid") or "?")
        try:
            document = microservice_document(ms)
        except ValueError as error:
            field, _, message = str(error).partition(": ")
            rejected.append(Rejected(uuid, field, message))
            continue
        try:
            parsed = parse_document(converter, document, origin, 0)
        except ConfigError as error:
            problem = error.problems[0]
            rejected.append(Rejected(uuid, controller_path(problem.path), problem.message))
            continue
        registry = parsed.spec.images.registry
        if isinstance(registry, int) and registry in unreadable:
            why = unreadable[registry]
            rejected.append(Rejected(uuid, "registryId", f"registry {registry} can't be used: {why}"))
            continue
        if isinstance(registry, int) and registry not in registry_ids:
            rejected.append(Rejected(uuid, "registryId", f"no registry {registry} among the controller's registries"))
            continue
        clash = None
        claimed = []
        for index, port in enumerate(parsed.spec.container.ports):
            key = (int(port.external), port.protocol.value)
            if key in ports:
                clash = Rejected(
                    uuid,
                    f"portMappings[{index}].portExternal",
                    f"host port {key[0]}/{key[1]} is already published by microservice {ports[key]}",
                )
                break
            claimed.append(key)
        if clash is not None:
            rejected.append(clash)
            continue
        ports.update((key, uuid) for key in claimed)
        out.append(document)
    return Translation(out, tuple(rejected))
