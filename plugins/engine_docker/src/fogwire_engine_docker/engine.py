"""The Docker engine: :class:`fogwire.engine.Engine` on the docker SDK.

Long on purpose: every engine operation on one SDK, each a blocking call and its
async wrapper; what it shares with the podman engine is in fogwire.dockerapi.

The SDK blocks, so every call runs in this engine's own thread pool (its size
is the concurrency the engine offers; option ``workers``). Operations on one
workload name are serialised by a per-name lock, so two concurrent calls on
one workload never interleave inside the engine.

The API version is negotiated with the daemon, never pinned: a pinned
version newer than the daemon's fails every call (dockerd 20.10 speaks 1.41).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
import logging
import math
import re
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import attrs
import cattrs
import docker
import docker.errors
import docker.types
import requests.exceptions
from docker.utils import parse_repository_tag

from fogwire import dockerapi
from fogwire.certdirs import RegistryCertDirs, registry_host
from fogwire.cgroups import usage_of_pid
from fogwire.convert import PositiveInt, make_converter, structure_options
from fogwire.engine import (
    MANAGED_LABEL,
    NAME_LABEL,
    Engine,
    EngineContext,
    EngineEvent,
    EventKind,
    LoadResult,
    LogLine,
    PruneResult,
    RegistryAuth,
    ResourceUsage,
    WorkloadInfo,
    WorkloadSpec,
    WorkloadState,
)
from fogwire.errors import (
    EngineError,
    ImageNotFoundError,
    RegistryCertificateError,
    WorkloadNotFoundError,
)
from fogwire.streams import (
    iter_log_frames,
    parse_time,
    shutdown_response,
    stream_in_thread,
    time_from_nanos,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

_STATES = {
    "created": WorkloadState.CREATED,
    "running": WorkloadState.RUNNING,
    "restarting": WorkloadState.RESTARTING,
    "exited": WorkloadState.EXITED,
    "dead": WorkloadState.DEAD,
    "paused": WorkloadState.PAUSED,
    "removing": WorkloadState.EXITED,
}

_STATUS_CODE = re.compile(r"^(?:Exited|Restarting) \((-?\d+)\)")
_STATUS_HEALTH = re.compile(r"\((?:health: )?(healthy|unhealthy|starting)\)")
_OOM_LINE = re.compile(r"oom-kill:.*oom_memcg=[^,]*?docker[-/]([0-9a-f]{64})")
"""The kernel's record of an OOM kill in a docker container's memory cgroup (cgroupfs or systemd driver)."""
_OOM_REPEAT_S = 5.0
"""An OOM of one workload reported by both dockerd and the kernel log within this is one event."""


@attrs.frozen
class DockerOptions:
    """The ``docker`` engine's options (``EngineContext.options``).

    ``tlsCa``/``tlsCert``/``tlsKey`` are file paths for a remote daemon
    (``tcp://host:2376``); with ``tlsCa`` the daemon's certificate is verified.
    ``workers`` bounds how many API calls run at once. ``oomWatch``: ``auto``
    also reads OOM kills from ``/dev/kmsg`` when the daemon is local and the log
    readable (dockerd misses some on a loaded cgroup-v1 host), ``on``/``off`` force it.
    ``registryCertsDir`` is where dockerd reads a registry's CA (``<dir>/<host:port>/``):
    the CA of a Registry with ``requiresCert`` is written there for each pull and
    removed after (see :mod:`fogwire.certdirs`), when the daemon is local (a unix
    socket); ``null`` never writes there (CAs the operator places).
    """

    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    oom_watch: Literal["auto", "on", "off"] = "auto"
    registry_certs_dir: str | None = "/etc/docker/certs.d"
    workers: PositiveInt = PositiveInt(8)
    timeout_s: PositiveInt = PositiveInt(120)


def parse_options(options: Any, converter: cattrs.Converter | None = None) -> DockerOptions:
    """Structure and check the engine options (camelCase keys); a ConfigError names every bad key."""
    from fogwire.errors import ConfigError, Problem

    opts = structure_options(converter or make_converter(), options, DockerOptions, plugin="docker")
    if (opts.tls_cert is None) != (opts.tls_key is None):
        raise ConfigError(
            [Problem("engineOptions (docker)", 1, "engineOptions", "tlsCert and tlsKey must be given together")]
        )
    return opts


def pull_error(message: str, reference: str, auth: RegistryAuth | None) -> EngineError:
    """The fogwire error for a failed pull, classified from dockerd's message (see :func:`fogwire.dockerapi.pull_error`).

    dockerd takes ``insecure`` only from its daemon.json, so a certificate error of a
    registry marked insecure says so.
    """
    error = dockerapi.pull_error(
        message,
        reference,
        auth,
        daemon="dockerd",
        plain_http_fix="add {server} to insecure-registries in the daemon's daemon.json (loopback is insecure by default)",
    )
    if isinstance(error, RegistryCertificateError) and auth is not None and auth.insecure:
        server = registry_host(reference)
        return RegistryCertificateError(
            f"{error}; the registry is marked insecure, but dockerd skips verification only for the registries "
            f"of its daemon.json's insecure-registries: add {server!r} there"
        )
    return error


def _explain(error: Exception) -> str:
    if isinstance(error, docker.errors.APIError):
        return str(error.explanation or error)
    return str(error)


class DockerEngine(Engine):
    """Docker Engine through the docker SDK; see the module docstring and the plugin README."""

    features = frozenset({"pid_mode", "ipc_mode", "devices", "runtime"})
    """No annotations: Debian's dockerd (API 1.41) has none. ``runtime``: a name dockerd's daemon.json defines."""

    name = "docker"

    def __init__(self, context: EngineContext) -> None:
        super().__init__(context)
        self.options = parse_options(context.options, context.converter)
        self._executor = ThreadPoolExecutor(self.options.workers, thread_name_prefix="fogwire-docker")
        self._client: docker.DockerClient | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._runtimes_seen: frozenset[str] = frozenset()
        """The OCI runtimes dockerd reported when last asked (``docker info``)."""
        self._subscribers: set[asyncio.Queue[EngineEvent | BaseException | None]] = set()
        self._oom_watch: dockerapi.KernelOomWatch | None = None
        certs = self.options.registry_certs_dir
        local = context.url is None or context.url.startswith("unix:")
        self._certs = RegistryCertDirs(Path(certs), daemon="dockerd") if certs and local else None

    # ------------------------------------------------------------------ plumbing

    @property
    def client(self) -> docker.DockerClient:
        """The SDK client; :meth:`start` makes it."""
        if self._client is None:
            raise EngineError("the docker engine is not started: call start() first")
        return self._client

    @property
    def where(self) -> str:
        """The daemon address, for messages."""
        return self.context.url or "the default docker socket (DOCKER_HOST)"

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        except requests.exceptions.ConnectionError as error:
            raise EngineError(f"cannot reach dockerd at {self.where}: {error}; is it running?") from error

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def _connect(self) -> docker.DockerClient:
        url = self.context.url or ""
        if url.startswith("unix://"):
            # the SDK leaks its socket when the daemon is absent: check the socket first
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(url.removeprefix("unix://"))
            except OSError as error:
                raise EngineError(f"cannot connect to dockerd at {url}: {error}; is it running?") from None
            finally:
                probe.close()
        pool = self.options.workers + 2
        opts = self.options
        if self.context.url is None:
            client = docker.from_env(version="auto", max_pool_size=pool, timeout=opts.timeout_s)
        else:
            tls: docker.tls.TLSConfig | bool = False
            if opts.tls_ca or opts.tls_cert:
                tls = docker.tls.TLSConfig(
                    client_cert=(opts.tls_cert, opts.tls_key) if opts.tls_cert and opts.tls_key else None,
                    ca_cert=opts.tls_ca,
                    verify=opts.tls_ca if opts.tls_ca else False,
                )
            client = docker.DockerClient(
                base_url=self.context.url, version="auto", tls=tls, max_pool_size=pool, timeout=opts.timeout_s
            )
        client.ping()
        return client

    async def start(self) -> None:
        """Connect to the daemon and negotiate the API version."""
        if self._client is None:
            try:
                self._client = await self._call(self._connect)
            except docker.errors.DockerException as error:
                raise EngineError(f"cannot connect to dockerd at {self.where}: {error}") from error
            self._oom_watch = dockerapi.KernelOomWatch.start_if(
                self.options.oom_watch,
                local=self.context.url is None or self.context.url.startswith("unix:"),
                pattern=_OOM_LINE,
                engine="docker",
                on_kill=self._publish_oom,
            )
            if self._certs is not None:
                await self._call(self._certs.sweep)

    async def _publish_oom(self, container_id: str) -> None:
        try:
            found = await self._call(self.client.api.inspect_container, container_id)
        except (docker.errors.DockerException, EngineError):
            return
        labels = (found.get("Config") or {}).get("Labels") or {}
        if labels.get(MANAGED_LABEL) != self.context.agent_id:
            return
        name = labels.get(NAME_LABEL) or str(found.get("Name", "")).lstrip("/")
        event = EngineEvent(EventKind.OOM, name, datetime.now(UTC))
        for queue in list(self._subscribers):
            queue.put_nowait(event)

    async def close(self) -> None:
        """Close the client's connections and the thread pool."""
        if self._oom_watch is not None:
            self._oom_watch.stop()
        if self._client is not None:
            client, self._client = self._client, None
            await asyncio.get_running_loop().run_in_executor(self._executor, client.close)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _managed(self, name: str) -> dict[str, Any] | None:
        """The inspect document of our workload ``name``, or ``None`` (absent or not ours)."""
        try:
            attrs_: dict[str, Any] = self.client.api.inspect_container(name)
        except docker.errors.NotFound:
            return None
        labels = attrs_.get("Config", {}).get("Labels") or {}
        if attrs_.get("Name") != f"/{name}" or labels.get(MANAGED_LABEL) != self.context.agent_id:
            return None
        return attrs_

    def _require(self, name: str) -> dict[str, Any]:
        found = self._managed(name)
        if found is None:
            raise WorkloadNotFoundError(
                f"no workload named {name!r} managed by agent {self.context.agent_id!r} on {self.where}"
            )
        return found

    # ------------------------------------------------------------------ images

    def _pull(self, reference: str, auth: RegistryAuth | None) -> str | None:
        if auth is not None and auth.ca_pem and self._certs is not None:
            with self._certs.trusting(registry_host(reference), auth.ca_pem):
                return self._pull_trusted(reference, auth)
        return self._pull_trusted(reference, auth)

    def _pull_trusted(self, reference: str, auth: RegistryAuth | None) -> str | None:
        repository, tag = parse_repository_tag(reference)
        auth_config = None
        if auth is not None and auth.has_credentials:
            auth_config = {"username": auth.username, "password": auth.password, "serveraddress": auth.server}
            if auth.email:
                auth_config["email"] = auth.email
        try:
            for message in self.client.api.pull(
                repository, tag or "latest", stream=True, decode=True, auth_config=auth_config
            ):
                if isinstance(message, dict) and message.get("error"):
                    raise pull_error(str(message["error"]), reference, auth)
        except docker.errors.APIError as error:
            raise pull_error(_explain(error), reference, auth) from None
        return self._image_id(reference)

    async def pull(self, reference: str, auth: RegistryAuth | None = None) -> str | None:
        """Pull ``reference`` with ``auth`` sent for this pull only (its CA, if any, is in certs.d for the pull only)."""
        log.debug("pulling %s on %s", reference, self.where)
        return await self._call(self._pull, reference, auth)

    def _image_id(self, reference: str) -> str | None:
        try:
            image_id: str = self.client.api.inspect_image(reference)["Id"]
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as error:
            if error.status_code in (400, 404):
                return None
            raise
        return image_id

    async def image_digest(self, reference: str) -> str | None:
        """The image id (``sha256:`` of its config) of the local image ``reference``."""
        return await self._call(self._image_id, reference)

    def _load(self, path: Path) -> LoadResult:
        if not path.is_file():
            raise EngineError(f"image archive {path} does not exist")
        layout = _archive_layout(path)
        if layout == "oci":
            return self._load_oci(path)
        return self._load_docker_archive(path)

    def _load_docker_archive(self, path: Path) -> LoadResult:
        references: list[str] = []
        try:
            with path.open("rb") as data:
                for message in self.client.api.load_image(data, quiet=True):
                    if message.get("error") or message.get("errorDetail"):
                        raise EngineError(f"loading image archive {path} failed: {message.get('error')}")
                    text = str(message.get("stream", "")).strip()
                    for prefix in ("Loaded image: ", "Loaded image ID: "):
                        if text.startswith(prefix):
                            references.append(text[len(prefix) :])
        except docker.errors.APIError as error:
            raise EngineError(f"loading image archive {path} failed: {_explain(error)}") from None
        if not references:
            raise EngineError(f"image archive {path} held no image dockerd could load")
        return LoadResult(tuple(references))

    def _load_oci(self, path: Path) -> LoadResult:
        """dockerd before 25 can't load an OCI layout: convert it to a docker-archive with skopeo."""
        skopeo = shutil.which("skopeo")
        if skopeo is None:
            raise EngineError(
                f"{path} is an OCI-layout tarball, which dockerd {self.client.api.api_version} cannot load; "
                "install skopeo (the plugin converts with `skopeo copy oci-archive:… docker-archive:…`)"
            )
        names = _oci_ref_names(path)
        references: list[str] = []
        with tempfile.TemporaryDirectory(prefix="fogwire-oci-") as tmp:
            for index, ref_name in enumerate(names):
                target = Path(tmp) / f"image-{index}.tar"
                source = f"oci-archive:{path}" + (f":{ref_name}" if ref_name and len(names) > 1 else "")
                dest = f"docker-archive:{target}" + (f":{ref_name}" if ref_name and _is_reference(ref_name) else "")
                done = subprocess.run(
                    [skopeo, "copy", "--quiet", source, dest], capture_output=True, text=True, timeout=600, check=False
                )
                if done.returncode != 0:
                    raise EngineError(f"converting OCI archive {path} with skopeo failed: {done.stderr.strip()}")
                references.extend(self._load_docker_archive(target).references)
        return LoadResult(tuple(references))

    async def load_image_archive(self, path: Path) -> LoadResult:
        """Load a docker-archive, or an OCI-layout tarball (converted with skopeo)."""
        return await self._call(self._load, Path(path))

    def _prune(self, keep: Collection[str]) -> PruneResult:
        api = self.client.api
        used = {c.get("ImageID") for c in api.containers(all=True)}
        kept = {i for i in (self._image_id(k) for k in keep) if i}
        removed: list[str] = []
        reclaimed = 0
        for image in api.images():
            image_id = image["Id"]
            if image_id in used or image_id in kept:
                continue
            try:
                api.remove_image(image_id, force=True)
            except docker.errors.APIError as error:
                log.warning("prune: could not remove image %s: %s", image_id, _explain(error))
                continue
            tags = [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"]
            removed.extend(tags or [image_id])
            reclaimed += int(image.get("Size") or 0)
        return PruneResult(tuple(removed), reclaimed)

    def _usage(self, names: Collection[str]) -> dict[str, ResourceUsage]:
        out = {}
        for name in names:
            found = self._managed(name)
            pid = int(((found or {}).get("State") or {}).get("Pid") or 0)
            usage = usage_of_pid(pid) if pid > 0 else None
            if usage is not None:
                out[name] = usage
        return out

    async def workload_addresses(self) -> dict[str, str]:
        """Running workloads' addresses from one container listing (``NetworkSettings.Networks``)."""

        def addresses() -> dict[str, str]:
            filters = {"label": f"{MANAGED_LABEL}={self.context.agent_id}", "status": "running"}
            found: dict[str, str] = {}
            for summary in self.client.api.containers(filters=filters):
                info = self._summary_info(summary)
                networks = (summary.get("NetworkSettings") or {}).get("Networks") or {}
                address = next((str(n["IPAddress"]) for n in networks.values() if n.get("IPAddress")), None)
                if info is not None and address:
                    found[info.name] = address
            return found

        return await self._call(addresses)

    async def host_address(self) -> str | None:
        """The gateway of dockerd's default ``bridge`` network (docker0), as ``host-gateway`` means it."""

        def gateway() -> str | None:
            configs = self.client.networks.get("bridge").attrs.get("IPAM", {}).get("Config") or []
            return next((str(c["Gateway"]) for c in configs if c.get("Gateway")), None)

        return await self._call(gateway)

    async def storage_root(self) -> Path | None:
        """dockerd's ``DockerRootDir`` (a local daemon only: a remote one's disk is not this host's)."""
        if self.context.url is not None and not self.context.url.startswith("unix:"):
            return None
        root = (await self._call(self.client.info)).get("DockerRootDir")
        return Path(root) if root else None

    async def usage(self, names: Collection[str]) -> dict[str, ResourceUsage]:
        """CPU and memory of the running workloads among ``names``, from their cgroups (a local daemon only)."""
        if self.context.url is not None and not self.context.url.startswith("unix:"):
            return {}
        return await self._call(self._usage, list(names))

    async def prune_images(self, keep: Collection[str] = ()) -> PruneResult:
        """Remove every image no container (managed or not) uses, except ``keep``."""
        return await self._call(self._prune, tuple(keep))

    async def prune_volumes(self, keep: Collection[str] = ()) -> list[str]:
        """Remove the dangling volumes labelled as this agent's (made by its workloads' mounts), except ``keep``."""

        def prune() -> list[str]:
            label = [f"{k}={v}" for k, v in self.managed_labels.items()]
            removed = []
            for volume in self.client.volumes.list(filters={"label": label, "dangling": True}):
                if volume.name in keep:
                    continue
                try:
                    volume.remove()
                except docker.errors.APIError as error:  # taken into use since the list
                    log.warning("prune: could not remove volume %s: %s", volume.name, error)
                    continue
                removed.append(volume.name)
            return removed

        return await self._call(prune)

    # ------------------------------------------------------------------ workloads

    def _create_kwargs(self, spec: WorkloadSpec) -> dict[str, Any]:
        kwargs = dockerapi.create_arguments(spec, {**spec.labels, **self.managed_labels, NAME_LABEL: spec.name})
        kwargs["privileged"] = spec.privileged
        kwargs["detach"] = True
        if spec.mounts:
            kwargs["mounts"] = [  # a volume this mount creates carries the managed label (prune_volumes)
                docker.types.Mount(
                    m.target,
                    m.source,
                    type=m.kind,
                    read_only=m.read_only,
                    labels=self.managed_labels if m.kind == "volume" else None,
                )
                for m in spec.mounts
            ]
        if spec.cpu_limit is not None:
            kwargs["nano_cpus"] = int(spec.cpu_limit * 1e9)
        if spec.runtime:
            kwargs["runtime"] = spec.runtime
        file_kib = dockerapi.log_file_kib(spec)
        if file_kib is not None:
            kwargs["log_config"] = docker.types.LogConfig(
                type="json-file", config={"max-size": f"{file_kib}k", "max-file": "2"}
            )
        if spec.health_check is not None:
            hc = spec.health_check
            kwargs["healthcheck"] = {
                "test": list(hc.test),
                "interval": int(hc.interval_s * 1e9),
                "timeout": int(hc.timeout_s * 1e9),
                "start_period": int(hc.start_period_s * 1e9),
                "retries": hc.retries,
            }
        return kwargs

    def _check_runtime(self, spec: WorkloadSpec) -> None:
        """Refuse an OCI runtime dockerd doesn't know (its ``daemon.json`` ``runtimes``), naming the field."""
        if not spec.runtime or spec.runtime in self._runtimes_seen:
            return
        # asked again only for a runtime not seen yet: daemon.json may gain one (and a SIGHUP) at any time
        known = sorted((self.client.info().get("Runtimes") or {}).keys())
        self._runtimes_seen = frozenset(known)
        if spec.runtime not in known:
            raise EngineError(
                f"workload {spec.name!r}: dockerd at {self.where} has no OCI runtime {spec.runtime!r} (field runtime; "
                f'known: {", ".join(known)}); add it to dockerd\'s daemon.json "runtimes"'
            )

    def _create(self, spec: WorkloadSpec) -> WorkloadInfo:
        self._check_runtime(spec)
        try:
            container = self.client.containers.create(
                spec.image, list(spec.command) or None, **self._create_kwargs(spec)
            )
        except docker.errors.ImageNotFound:
            raise ImageNotFoundError(
                f"cannot create workload {spec.name!r}: image {spec.image!r} is not present on {self.where}; "
                "pull or load it first"
            ) from None
        except docker.errors.APIError as error:
            if error.status_code == 409:
                raise EngineError(
                    f"cannot create workload {spec.name!r}: a container of that name already exists on "
                    f"{self.where} (managed or not); remove it or choose another name"
                ) from None
            raise EngineError(f"cannot create workload {spec.name!r}: {_explain(error)}") from None
        return self._info(container.attrs)

    async def create(self, spec: WorkloadSpec) -> WorkloadInfo:
        """Create ``spec`` (not started) with this agent's labels."""
        async with self._lock(spec.name):
            return await self._call(self._create, spec)

    def _start(self, name: str) -> None:
        found = self._require(name)
        try:
            self.client.api.start(found["Id"])
        except docker.errors.APIError as error:
            text = _explain(error)
            conflict = dockerapi.port_conflict(name, found, text)
            if conflict is not None:
                raise conflict from None
            if "apply caps" in text and (found.get("HostConfig") or {}).get("Privileged"):
                raise EngineError(
                    f"cannot start privileged workload {name!r}: dockerd asks for every capability the kernel knows "
                    "and its host's capability bounding set lacks some (a restricted host or sandbox); run it "
                    f"unprivileged with cap_add, or on a host with a full bounding set: {text}"
                ) from None
            raise EngineError(f"cannot start workload {name!r}: {text}") from None

    async def start_workload(self, name: str) -> None:
        """Start our workload ``name`` (a no-op if it runs)."""
        async with self._lock(name):
            await self._call(self._start, name)

    def _stop(self, name: str, timeout_s: float) -> None:
        found = self._require(name)
        try:
            self.client.api.stop(found["Id"], timeout=max(0, math.ceil(timeout_s)))
        except docker.errors.NotFound:
            raise WorkloadNotFoundError(f"workload {name!r} disappeared while stopping") from None
        except docker.errors.APIError as error:
            raise EngineError(f"cannot stop workload {name!r}: {_explain(error)}") from None

    async def stop(self, name: str, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s`` (whole seconds, rounded up)."""
        async with self._lock(name):
            await self._call(self._stop, name, timeout_s)

    def _remove(self, name: str) -> None:
        found = self._managed(name)
        if found is None:
            return
        try:
            self.client.api.remove_container(found["Id"], force=True)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as error:
            if error.status_code == 409 and "already in progress" in _explain(error):
                return
            raise EngineError(f"cannot remove workload {name!r}: {_explain(error)}") from None

    async def remove(self, name: str) -> None:
        """Kill and remove our workload ``name``; absent (or not ours) is fine."""
        async with self._lock(name):
            await self._call(self._remove, name)

    def _info(self, attrs_: dict[str, Any]) -> WorkloadInfo:
        state = attrs_.get("State") or {}
        config = attrs_.get("Config") or {}
        labels = dict(config.get("Labels") or {})
        status = _STATES.get(str(state.get("Status")), WorkloadState.UNKNOWN)
        started = parse_time(state.get("StartedAt"))
        finished = parse_time(state.get("FinishedAt"))
        exit_code = state.get("ExitCode") if status in (WorkloadState.EXITED, WorkloadState.DEAD) else None
        oom = bool(state.get("OOMKilled")) or (
            exit_code is not None
            and self._oom_watch is not None
            and self._oom_watch.killed_since(attrs_["Id"], started.timestamp() if started else None)
        )
        health = (state.get("Health") or {}).get("Status") or "none"
        return WorkloadInfo(
            name=labels.get(NAME_LABEL) or str(attrs_.get("Name", "")).lstrip("/"),
            id=attrs_["Id"],
            image=config.get("Image", ""),
            state=status,
            labels=labels,
            image_digest=attrs_.get("Image"),
            exit_code=exit_code,
            started_at=started,
            finished_at=finished if exit_code is not None else None,
            health=dockerapi.health_of(health),
            restart_count=int(attrs_.get("RestartCount") or 0),
            oom_killed=oom,
        )

    def _inspect(self, name: str) -> WorkloadInfo | None:
        found = self._managed(name)
        return None if found is None else self._info(found)

    async def inspect(self, name: str) -> WorkloadInfo | None:
        """Our workload ``name``, or ``None``."""
        return await self._call(self._inspect, name)

    def _list(self) -> list[WorkloadInfo]:
        summaries = self.client.api.containers(all=True, filters={"label": f"{MANAGED_LABEL}={self.context.agent_id}"})
        infos = [self._summary_info(s) for s in summaries]
        return sorted((i for i in infos if i is not None), key=lambda i: i.name)

    def _summary_info(self, summary: dict[str, Any]) -> WorkloadInfo | None:
        labels = dict(summary.get("Labels") or {})
        if labels.get(MANAGED_LABEL) != self.context.agent_id:
            return None
        state = _STATES.get(str(summary.get("State")), WorkloadState.UNKNOWN)
        status = str(summary.get("Status") or "")
        code = _STATUS_CODE.search(status)
        health = _STATUS_HEALTH.search(status)
        names = summary.get("Names") or [""]
        return WorkloadInfo(
            name=labels.get(NAME_LABEL) or str(names[0]).lstrip("/"),
            id=summary["Id"],
            image=str(summary.get("Image") or ""),
            state=state,
            labels=labels,
            image_digest=summary.get("ImageID"),
            exit_code=int(code.group(1)) if code and state in (WorkloadState.EXITED, WorkloadState.DEAD) else None,
            health=dockerapi.health_of(health.group(1) if health else "none"),
        )

    async def list_managed(self) -> list[WorkloadInfo]:
        """Every container carrying this agent's label, from one list call.

        The list reports state, labels, image, image id, exit code and health;
        times, restart count and OOM are left at their defaults (use :meth:`inspect`).
        """
        return await self._call(self._list)

    # ------------------------------------------------------------------ streams

    async def logs(self, name: str, *, tail: int | None = None, follow: bool = False) -> AsyncIterator[LogLine]:
        """The workload's stdout/stderr lines (last ``tail``), then new ones with ``follow``."""
        found = await self._call(self._require, name)
        api = self.client.api
        params = {
            "stdout": 1,
            "stderr": 1,
            "follow": int(follow),
            "tail": "all" if tail is None else str(max(0, tail)),
        }

        def opener() -> tuple[Iterator[tuple[str, str]], Callable[[], None], Callable[[], None]]:
            response = api._get(api._url("/containers/{0}/logs", found["Id"]), params=params, stream=True)
            try:
                api._raise_for_status(response)
            except docker.errors.NotFound:
                response.close()
                raise WorkloadNotFoundError(f"workload {name!r} disappeared") from None
            return iter_log_frames(response.raw), response.close, functools.partial(shutdown_response, response)

        async for stream, text in stream_in_thread(opener, f"fogwire-docker-logs-{name}"):
            yield LogLine(stream, text)  # type: ignore[arg-type]

    async def events(self) -> AsyncIterator[EngineEvent]:
        """start/die/oom/health events of this agent's workloads, from the first ``__anext__`` on.

        dockerd's stream, merged with the kernel log's OOM kills when the OOM watch runs;
        an OOM both report is yielded once.
        """
        since = time.time() - 0.05
        client = self.client
        filters = {"type": "container", "label": [f"{MANAGED_LABEL}={self.context.agent_id}"]}

        def opener() -> tuple[Iterator[dict[str, Any]], Callable[[], None], Callable[[], None]]:
            stream = client.events(since=f"{since:.6f}", filters=filters, decode=True)
            # the reader releases the response; the loop's side only wakes it (see fogwire.streams)
            return stream, stream.close, functools.partial(shutdown_response, stream._response)

        queue: asyncio.Queue[EngineEvent | BaseException | None] = asyncio.Queue()
        self._subscribers.add(queue)

        async def pump() -> None:
            try:
                async for raw in stream_in_thread(opener, "fogwire-docker-events"):
                    event = self._event(raw)
                    if event is not None:
                        queue.put_nowait(event)
                queue.put_nowait(None)
            except Exception as error:
                queue.put_nowait(error)

        task = asyncio.create_task(pump(), name="fogwire-docker-event-pump")
        last_oom: dict[str, float] = {}
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                if item.kind is EventKind.OOM:
                    now = time.monotonic()
                    if now - last_oom.get(item.workload, -_OOM_REPEAT_S) < _OOM_REPEAT_S:
                        continue
                    last_oom[item.workload] = now
                yield item
        finally:
            self._subscribers.discard(queue)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _event(self, raw: dict[str, Any]) -> EngineEvent | None:
        actor = raw.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        if attributes.get(MANAGED_LABEL) != self.context.agent_id:
            return None
        action = str(raw.get("Action") or raw.get("status") or "")
        name = attributes.get(NAME_LABEL) or attributes.get("name", "")
        when = time_from_nanos(raw.get("timeNano"), raw.get("time"))
        if action == "start":
            return EngineEvent(EventKind.START, name, when)
        if action == "die":
            code = attributes.get("exitCode")
            return EngineEvent(EventKind.DIE, name, when, exit_code=int(code) if code is not None else None)
        if action == "oom":
            return EngineEvent(EventKind.OOM, name, when)
        if action.startswith("health_status"):
            return EngineEvent(
                EventKind.HEALTH, name, when, health=dockerapi.health_of(action.split(":", 1)[-1].strip())
            )
        return None


def _archive_layout(path: Path) -> str:
    """``"oci"`` for an OCI image layout tarball, ``"docker"`` otherwise (also for a broken file)."""
    try:
        with tarfile.open(path) as tar:
            names = {n.lstrip("./") for n in tar.getnames()}
    except (tarfile.TarError, OSError):
        return "docker"
    if "manifest.json" not in names and "oci-layout" in names and "index.json" in names:
        return "oci"
    return "docker"


def _oci_ref_names(path: Path) -> list[str]:
    """The ``org.opencontainers.image.ref.name`` of each manifest in an OCI tarball ("" when unnamed)."""
    with tarfile.open(path) as tar:
        member = next(m for m in tar.getmembers() if m.name.lstrip("./") == "index.json")
        handle = tar.extractfile(member)
        index = json.load(io.TextIOWrapper(handle, "utf-8")) if handle else {}
    manifests = index.get("manifests") or [{}]
    return [str((m.get("annotations") or {}).get("org.opencontainers.image.ref.name", "")) for m in manifests]


def _is_reference(name: str) -> bool:
    """True if an OCI ref.name is a whole image reference (``repo:tag``), not just a tag."""
    return "/" in name or (":" in name and not name.split(":")[0].isdigit())
