"""What engines speaking the Docker Engine API's shape share (docker, podman's compat layer).

For engine authors whose daemon takes Docker-style create arguments and answers with
Docker-style inspect documents and error texts: the create arguments fogwire's
:class:`~fogwire.engine.WorkloadSpec` maps to alike on both, the classification of a
failed pull from the daemon's message, the host-port conflict message, secrets kept
out of messages, and the parsing of health and image ids. No SDK is imported here;
each engine adds what its own API spells differently (mounts, CPU quota, health-check
keys, ulimits).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

from fogwire.engine import Health, RegistryAuth, WorkloadSpec
from fogwire.errors import EngineError, ImageNotFoundError, PortInUseError, RegistryAuthError

NOT_FOUND_MARKERS = ("manifest unknown", "not found", "name unknown", "does not exist", "no such image")
"""Words of a daemon's pull error that mean the image (or its repository) does not exist."""
AUTH_MARKERS = (
    "unauthorized",
    "authentication required",
    "no basic auth credentials",
    "invalid username/password",
    "denied",
)
"""Words of a daemon's pull error that mean the registry refused the credentials (or their absence)."""
AUTH_STATUS = re.compile(r"(?<![\w.-])401(?![\w.-])")
"""HTTP 401 as a status code, not digits inside an image name such as ``app-401f``."""
PORT_MARKERS = ("address already in use", "port is already allocated")
"""Words of a daemon's start error that mean a published host port is taken."""


def redact(text: str, auth: RegistryAuth | None) -> str:
    """``text`` with the registry password (and its base64 forms) replaced by ``***``."""
    if auth is None or not auth.password:
        return text
    raw = auth.password.encode()
    forms = {auth.password, base64.b64encode(raw).decode().rstrip("="), base64.urlsafe_b64encode(raw).decode()}
    for form in forms:
        text = text.replace(form, "***")
    return text


def pull_error(
    message: str,
    reference: str,
    auth: RegistryAuth | None,
    *,
    daemon: str,
    plain_http_fix: str,
    auth_first: bool = False,
) -> EngineError:
    """The fogwire error for a failed pull, classified from the daemon's message (password redacted).

    ``daemon`` names it in messages (``dockerd``); ``plain_http_fix`` says how to let it
    pull from a plain-HTTP registry (``{server}`` is replaced by the registry).
    ``auth_first``: the daemon words a refused login with "not found" too (podman
    does), so a refusal is looked for before a missing image.
    """
    message = redact(message.strip(), auth)
    lower = message.lower()
    server = reference.split("/")[0] if "/" in reference else "docker.io"
    refused = any(marker in lower for marker in AUTH_MARKERS) or bool(AUTH_STATUS.search(lower))
    missing = any(marker in lower for marker in NOT_FOUND_MARKERS)
    if missing and not (auth_first and refused):
        return ImageNotFoundError(f"image {reference!r} was not found in registry {server}: {message}")
    if refused:
        user = f"user {auth.username!r}" if auth else "no credentials"
        return RegistryAuthError(
            f"registry {server} refused {user} pulling {reference!r}: {message}; "
            "check the registry's username and password"
        )
    if "http response to https client" in lower:
        return EngineError(
            f"registry {server} speaks plain HTTP and {daemon} wants HTTPS for {reference!r}: "
            f"{plain_http_fix.format(server=repr(server))}; {message}"
        )
    return EngineError(f"pulling {reference!r} failed: {message}")


def port_conflict(name: str, inspected: Mapping[str, Any], text: str) -> PortInUseError | None:
    """A :class:`PortInUseError` naming the published ports when ``text`` (a start error) says one is taken."""
    if not any(marker in text for marker in PORT_MARKERS):
        return None
    bindings = (inspected.get("HostConfig") or {}).get("PortBindings") or {}
    ports = sorted({f"{b.get('HostIp') or '*'}:{b.get('HostPort')}" for bs in bindings.values() for b in bs or []})
    return PortInUseError(
        f"workload {name!r} cannot start: a host port it publishes ({', '.join(ports)}) is already in use: "
        f"{text}; free the port or change the mapping"
    )


def health_of(value: str | None) -> Health:
    """A daemon's health status word as :class:`Health` (anything unknown is ``none``)."""
    try:
        return Health(value or "none")
    except ValueError:
        return Health.NONE


def image_id(value: str | None) -> str | None:
    """An image id as ``sha256:<hex>`` (daemons give it with or without the prefix)."""
    if not value:
        return None
    return value if value.startswith("sha256:") else f"sha256:{value}"


def create_arguments(spec: WorkloadSpec, labels: Mapping[str, str]) -> dict[str, Any]:
    """The create arguments both SDKs spell alike (``containers.create(image, command, **these)``).

    Name, environment, ``labels`` (the spec's plus the engine's management labels),
    entrypoint, host networking or published ports, extra hosts, restart policy,
    user, CPU set, memory limit (swap included) and capabilities. The engine adds the
    rest in its own API's spelling.
    """
    arguments: dict[str, Any] = {"name": spec.name, "environment": dict(spec.env), "labels": dict(labels)}
    if spec.entrypoint is not None:
        arguments["entrypoint"] = list(spec.entrypoint)
    if spec.host_network:
        arguments["network_mode"] = "host"
    elif spec.ports:
        ports: dict[str, list[Any]] = {}
        for port in spec.ports:
            binding = (port.host_ip, port.host_port) if port.host_ip else port.host_port
            ports.setdefault(f"{port.container_port}/{port.protocol}", []).append(binding)
        arguments["ports"] = ports
    if spec.extra_hosts:
        arguments["extra_hosts"] = dict(spec.extra_hosts)
    if spec.restart.name != "no":
        arguments["restart_policy"] = {"Name": spec.restart.name, "MaximumRetryCount": spec.restart.max_retries}
    if spec.user is not None:
        arguments["user"] = spec.user
    if spec.cpuset_cpus is not None:
        arguments["cpuset_cpus"] = spec.cpuset_cpus
    if spec.memory_limit_mib is not None:
        arguments["mem_limit"] = spec.memory_limit_mib * 1024 * 1024
        arguments["memswap_limit"] = arguments["mem_limit"]
    if spec.cap_add:
        arguments["cap_add"] = list(spec.cap_add)
    if spec.cap_drop:
        arguments["cap_drop"] = list(spec.cap_drop)
    return arguments
