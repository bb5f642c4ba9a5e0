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

import asyncio
import base64
import contextlib
import logging
import os
import re
import select
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from fogwire.engine import Health, RegistryAuth, WorkloadSpec
from fogwire.errors import (
    EngineError,
    ImageNotFoundError,
    PortInUseError,
    RegistryAuthError,
    RegistryCertificateError,
)

log = logging.getLogger(__name__)

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
CERTIFICATE_MARKERS = ("x509:", "tls: failed to verify certificate", "certificate signed by unknown authority")
"""Words of a daemon's pull error that mean the registry's TLS certificate could not be verified."""
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
    if any(marker in lower for marker in CERTIFICATE_MARKERS):
        return RegistryCertificateError(
            f"{daemon} does not trust the TLS certificate of registry {server} pulling {reference!r}: {message}; "
            "give its Registry the CA that signed it (requiresCert: true, certificate: the CA's PEM text)"
        )
    refused = any(marker in lower for marker in AUTH_MARKERS) or bool(AUTH_STATUS.search(lower))
    missing = any(marker in lower for marker in NOT_FOUND_MARKERS)
    if missing and not (auth_first and refused):
        return ImageNotFoundError(f"image {reference!r} was not found in registry {server}: {message}")
    if refused:
        user = f"user {auth.username!r}" if auth and auth.has_credentials else "no credentials"
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
    user, CPU set, memory limit (swap included), capabilities, PID and IPC modes and devices. The engine adds the
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
    if spec.pid_mode:
        arguments["pid_mode"] = spec.pid_mode
    if spec.ipc_mode:
        arguments["ipc_mode"] = spec.ipc_mode
    if spec.devices:
        arguments["devices"] = [f"{d.host_path}:{d.container_path}:{d.permissions}" for d in spec.devices]
    return arguments


def log_file_kib(spec: WorkloadSpec, files: int = 2) -> int | None:
    """The size of each of ``files`` rotated log files (KiB) that together keep ``spec.log_max_mib``."""
    if spec.log_max_mib is None:
        return None
    return max(1, spec.log_max_mib * 1024 // files)


class KernelOomWatch:
    """OOM kills of containers, read from the kernel log (``/dev/kmsg``) in a thread of its own.

    A daemon's own OOM report is not reliable: on cgroup v1 dockerd misses it when
    the container's cgroup is gone before the shim read its eventfd (a loaded host),
    and podman's conmon does not report it at all without systemd. The kernel's
    ``oom-kill:`` record names the memory cgroup, and so the container id, every time.
    ``pattern``'s first group is the container id in that record; ``on_kill(id)`` is
    called in the watch thread, and :meth:`killed_since` answers for inspect.
    """

    def __init__(self, pattern: re.Pattern[str], on_kill: Callable[[str], None], engine: str) -> None:
        self.pattern = pattern
        self.on_kill = on_kill
        self.engine = engine
        self.killed: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def available() -> bool:
        """Whether this process may read the kernel log."""
        return os.access("/dev/kmsg", os.R_OK)

    @classmethod
    def start_if(
        cls,
        mode: str,
        *,
        local: bool,
        pattern: re.Pattern[str],
        engine: str,
        on_kill: Callable[[str], Coroutine[Any, Any, None]],
    ) -> KernelOomWatch | None:
        """Start a watch as an engine's ``oomWatch`` option says (``on``, ``off``, ``auto``), or ``None``.

        ``auto`` watches when the daemon is ``local`` and the log readable. ``on_kill``
        runs on the calling event loop for each kill.
        """
        if not (mode == "on" or (mode == "auto" and local and cls.available())):
            return None
        loop = asyncio.get_running_loop()

        def deliver(container_id: str) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed
                asyncio.run_coroutine_threadsafe(on_kill(container_id), loop)

        watch = cls(pattern, deliver, engine)
        watch.start()
        return watch

    def start(self) -> None:
        """Start reading from the log's end (records before this call are not looked at)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"fogwire-{self.engine}-oom", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread within half a second."""
        self._stop.set()

    def killed_since(self, container_id: str, started: float | None) -> bool:
        """Whether the kernel killed ``container_id`` for memory after it started (``started`` epoch s)."""
        at = self.killed.get(container_id)
        return at is not None and (started is None or at >= started - 1)

    def _run(self) -> None:
        try:
            fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        except OSError as error:
            log.warning("cannot read /dev/kmsg (%s): OOM kills of %s workloads may go unreported", error, self.engine)
            return
        try:
            os.lseek(fd, 0, os.SEEK_END)
            while not self._stop.is_set():
                ready, _, _ = select.select([fd], [], [], 0.5)
                if not ready:
                    continue
                try:
                    record = os.read(fd, 8192).decode("utf-8", "replace")
                except BlockingIOError:
                    continue
                except OSError:  # EPIPE: records were overwritten; go on from the next one
                    continue
                match = self.pattern.search(record)
                if match:
                    self.killed[match.group(1)] = time.time()
                    self.on_kill(match.group(1))
        finally:
            os.close(fd)
