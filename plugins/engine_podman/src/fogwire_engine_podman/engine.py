"""The Podman engine: :class:`fogwire.engine.Engine` on the podman SDK and the libpod REST API.

Long on purpose: every engine operation plus podman's own health checks, OOM watch
and event cache (the workarounds below); what it shares with the docker engine is in
fogwire.dockerapi.

Workarounds for podman 4.3 and podman-py 5 (``shared/reference/python-clients.md`` §2):

* every create sends both ``nofile`` and ``nproc`` ulimits (option ``ulimits``):
  the service does not apply ``containers.conf``'s ``default_ulimits`` and, given
  an empty list, applies 1048576, which a restricted host refuses;
* CPU limits go as ``cpu_quota``/``cpu_period`` (podman-py drops ``nano_cpus``);
* pulls read the whole progress stream and fail on its ``error`` (podman-py
  returns an empty image instead of raising);
* events are filtered by label on the client side (a ``label`` filter returns
  nothing on 4.3);
* credentials and ``tlsVerify`` are sent with every pull (the service's login
  stores nothing);
* a workload naming an OCI runtime is created through a podman of the engine's
  own started with ``--runtime`` (the API ignores a container's runtime; see
  :mod:`fogwire_engine_podman.runtimes`).

Two things the service does not do on a host without systemd, the engine does
itself (options ``healthchecks`` and ``oomWatch``): it runs the health checks
of running workloads at their interval (podman schedules them with systemd
timers), and it reads OOM kills from the kernel log (conmon did not report
them on this cgroup-v1 host).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import logging
import math
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import attrs
import cattrs
import podman
import podman.errors
import requests.exceptions

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
    Health,
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
    ConfigError,
    EngineError,
    ImageNotFoundError,
    Problem,
    WorkloadNotFoundError,
)
from fogwire.firewall import ensure_loopback_guard
from fogwire.streams import (
    Opener,
    iter_log_frames,
    parse_time,
    stream_in_thread,
    time_from_nanos,
)
from fogwire_engine_podman import runtimes
from fogwire_engine_podman.service import PodmanService, default_sockets, socket_answers
from fogwire_engine_podman.streaming import DedicatedStream
from fogwire_engine_podman.transport import close_failed_connects, unreachable

log = logging.getLogger(__name__)

T = TypeVar("T")

_STATES = {
    "created": WorkloadState.CREATED,
    "configured": WorkloadState.CREATED,
    "initialized": WorkloadState.CREATED,
    "running": WorkloadState.RUNNING,
    "stopping": WorkloadState.RUNNING,
    "stopped": WorkloadState.EXITED,
    "exited": WorkloadState.EXITED,
    "removing": WorkloadState.EXITED,
    "paused": WorkloadState.PAUSED,
}

_OOM_LINE = re.compile(r"oom-kill:.*oom_memcg=[^,]*?libpod-(?:conmon-)?([0-9a-f]{64})")

_STATE_ACTIONS = frozenset(
    {"create", "start", "died", "restart", "health_status", "pause", "unpause", "rename", "stop", "kill", "oom"}
)
"""Event actions after which the cached view of a workload is refreshed."""

DEFAULT_ULIMITS = {"nofile": "1024:1024", "nproc": "4096:4096"}

_EXIT_RACE = re.compile(r"(?:read|open) /proc/\d+/cgroup: no such (?:process|file or directory)")
_EXIT_RACE_TRIES = 5


def is_exit_race(message: str) -> bool:
    """Whether a podman 500 is its inspect racing a container process's exit.

    podman before 4.4 reads ``/proc/PID/cgroup`` of a container it still has
    as running; when the process exits in between, the read fails with ESRCH
    (or ENOENT) and the whole request answers 500 (containers/podman#16383,
    fixed by #16504 in 4.4; Debian 12 ships 4.3). Asked again, podman syncs
    the state from the runtime and answers with the container exited.
    """
    return _EXIT_RACE.search(message) is not None


@attrs.frozen
class PodmanOptions:
    """The ``podman`` engine's options (``EngineContext.options``).

    ``ulimits`` maps ``nofile``/``nproc`` (and any other rlimit) to
    ``"soft:hard"``; both ``nofile`` and ``nproc`` are always sent.
    ``serviceArgs`` are global podman flags for the service the plugin starts
    itself (``--root``, ``--runroot``, ``--runtime``…). ``insecureRegistries``
    are ``host:port`` talked to over plain HTTP even without credentials.
    ``healthchecks``: ``auto`` runs health checks in the plugin when the host
    has no systemd, ``plugin``/``engine`` force one side. ``oomWatch``: ``auto``
    reads OOM kills from ``/dev/kmsg`` when the service is local and it is readable.
    ``registryCertsDir`` is where the service reads a registry's CA
    (``<dir>/<host:port>/``; a rootless service reads ``~/.config/containers/certs.d``):
    the CA of a Registry with ``requiresCert`` is written there for each pull and
    removed after (see :mod:`fogwire.certdirs`), when the service is local; ``null``
    never writes there (CAs the operator places).
    """

    ulimits: dict[str, str] = attrs.field(factory=lambda: dict(DEFAULT_ULIMITS))
    service_args: list[str] = attrs.field(factory=list)
    insecure_registries: list[str] = attrs.field(factory=list)
    registry_certs_dir: str | None = "/etc/containers/certs.d"
    healthchecks: Literal["auto", "plugin", "engine"] = "auto"
    oom_watch: Literal["auto", "on", "off"] = "auto"
    workers: PositiveInt = PositiveInt(8)
    timeout_s: PositiveInt = PositiveInt(120)


def parse_options(options: Mapping[str, Any], converter: cattrs.Converter | None = None) -> PodmanOptions:
    """Structure and check the options (camelCase keys); a ConfigError names every bad key."""
    opts = structure_options(converter or make_converter(), options, PodmanOptions, plugin="podman")
    problems = []
    for name, value in opts.ulimits.items():
        if not re.fullmatch(r"\d+:\d+", value):
            problems.append(
                Problem("engineOptions (podman)", 1, f"engineOptions.ulimits.{name}", "expected 'soft:hard'")
            )
    if problems:
        raise ConfigError(problems)
    return opts


def _whole_seconds(moment: datetime | None) -> datetime | None:
    """``moment`` to the second: podman's container list has no finer times, so every path agrees on these."""
    return None if moment is None else moment.replace(microsecond=0)


def _ulimits(opts: PodmanOptions) -> list[dict[str, Any]]:
    limits = {**DEFAULT_ULIMITS, **opts.ulimits}
    result = []
    for name, value in sorted(limits.items()):
        soft, hard = (int(v) for v in value.split(":"))
        result.append({"Name": name, "Soft": soft, "Hard": hard})
    return result


def pull_error(message: str, reference: str, auth: RegistryAuth | None) -> EngineError:
    """The fogwire error for a failed pull, from the service's message (see :func:`fogwire.dockerapi.pull_error`).

    Podman words a refused login with "not found" too, so a refusal is looked for first.
    """
    return dockerapi.pull_error(
        message,
        reference,
        auth,
        daemon="podman",
        plain_http_fix="mark its registry insecure, or list {server} in the engine option insecureRegistries",
        auth_first=True,
    )


def _explain(error: Exception) -> str:
    if isinstance(error, podman.errors.APIError):
        return str(error.explanation or error)
    return str(error)


class PodmanEngine(Engine):
    """Podman through its REST service; see the module docstring and the plugin README."""

    features = frozenset({"pid_mode", "ipc_mode", "devices", "annotations", "runtime"})
    """``runtime``: a name the host's containers.conf defines, created through podman itself (see :mod:`.runtimes`)."""

    name = "podman"

    def __init__(self, context: EngineContext) -> None:
        super().__init__(context)
        self.options = parse_options(context.options, context.converter)
        self._executor = ThreadPoolExecutor(self.options.workers, thread_name_prefix="fogwire-podman")
        self._client: podman.PodmanClient | None = None
        self.url: str | None = context.url
        self.service: PodmanService | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._subscribers: set[asyncio.Queue[EngineEvent | BaseException]] = set()
        self._streams: set[DedicatedStream] = set()
        self._oom_watch: dockerapi.KernelOomWatch | None = None
        self._health: dict[str, tuple[float, float, Health]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._drive_health = False
        self._cache: dict[str, WorkloadInfo] | None = None
        self._certs: RegistryCertDirs | None = None

    # ------------------------------------------------------------------ plumbing

    @property
    def client(self) -> podman.PodmanClient:
        """The SDK client; :meth:`start` makes it."""
        if self._client is None:
            raise EngineError("the podman engine is not started: call start() first")
        return self._client

    @property
    def api(self) -> Any:
        """podman-py's low-level API client (paths relative to ``/vX/libpod/``)."""
        return self.client.api

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        except (requests.exceptions.ConnectionError, podman.errors.APIError) as error:
            if not unreachable(error):
                raise
            raise EngineError(f"cannot reach the podman service at {self.url}: {error}; is it running?") from error

    def _stream(
        self,
        path: str,
        params: Mapping[str, Any],
        what: str,
        read: Callable[[Any], Iterable[T]],
        missing: Callable[[], EngineError] | None = None,
        headers_within: bool = True,
    ) -> Opener[T]:
        """An opener for :func:`~fogwire.streams.stream_in_thread`: ``path`` streamed on a client of its own.

        Never the shared client: see :mod:`fogwire_engine_podman.streaming` for the
        race that turned into ``ResponseNotReady`` on other calls. ``headers_within``:
        see :meth:`DedicatedStream.open`.
        """
        url = self.url
        if url is None or self._client is None:
            raise EngineError("the podman engine is not started: call start() first")
        timeout_s = float(self.options.timeout_s)

        def opener() -> tuple[Iterator[T], Callable[[], None]]:
            stream = DedicatedStream(url, timeout_s, self._streams.discard)
            self._streams.add(stream)
            response = stream.open(path, params, headers_within)
            try:
                if response.status_code == 404 and missing is not None:
                    raise missing()
                if response.status_code >= 400:
                    raise EngineError(f"cannot read {what} from podman at {url}: {_body_message(response)}")
            except BaseException:
                stream.release()
                raise
            return stream.items(read(response), what), stream.close

        return opener

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def start(self) -> None:
        """Connect to the service, or start and supervise one; start the helpers the host needs."""
        if self._client is not None:
            return
        if self.url is None:
            for candidate in default_sockets():
                if await asyncio.to_thread(socket_answers, candidate):
                    self.url = f"unix://{candidate}"
                    break
            else:
                self.service = PodmanService(
                    self.context.run_dir / "podman.sock",
                    self.context.log_dir / "podman-service.log",
                    self.options.service_args,
                )
                await self.service.start()
                self.url = self.service.url
        client = None
        try:
            client = podman.PodmanClient(
                base_url=self.url, timeout=self.options.timeout_s, max_pool_size=self.options.workers + 2
            )
            close_failed_connects(client.api)
            answered = await asyncio.get_running_loop().run_in_executor(self._executor, client.ping)
            if not answered:
                raise EngineError(f"the service at {self.url} does not answer podman's ping; is it podman's socket?")
        except BaseException as error:
            if client is not None:
                client.close()  # type: ignore[no-untyped-call]  # no request is under way: only drops the pool
            if isinstance(error, podman.errors.PodmanError | podman.errors.APIError | ValueError):
                raise EngineError(f"cannot connect to the podman service at {self.url}: {error}") from error
            raise
        self._client = client
        self._tasks.append(asyncio.create_task(self._watch(), name="fogwire-podman-watch"))
        local = bool(self.url and self.url.startswith("unix:"))
        if local and self.options.registry_certs_dir:
            self._certs = RegistryCertDirs(Path(self.options.registry_certs_dir), daemon="podman")
            await self._call(self._certs.sweep)
        if local and os.geteuid() == 0:
            try:  # netavark turns route_localnet on for its bridge and adds no guard of its own
                await asyncio.to_thread(ensure_loopback_guard)
            except EngineError as error:
                log.warning("podman: host loopback services may be reachable from the bridge: %s", error)
        mode = self.options.healthchecks
        self._drive_health = mode == "plugin" or (mode == "auto" and not Path("/run/systemd/system").is_dir())
        if self._drive_health:
            self._tasks.append(asyncio.create_task(self._health_loop(), name="fogwire-podman-health"))
            for info in await self.list_managed():
                if info.state is WorkloadState.RUNNING:
                    await self._call(self._track_health, info.id)
        self._oom_watch = dockerapi.KernelOomWatch.start_if(
            self.options.oom_watch, local=local, pattern=_OOM_LINE, engine="podman", on_kill=self._publish_oom
        )

    async def close(self) -> None:
        """Stop the helpers, close the client, stop a service the engine started."""
        if self._oom_watch is not None:
            self._oom_watch.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for stream in list(self._streams):  # streams callers left open; their readers end
            stream.close()
        if self._client is not None:
            client, self._client = self._client, None
            await asyncio.get_running_loop().run_in_executor(self._executor, client.close)
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self.service is not None:
            await self.service.stop()
            self.service = None

    def _publish(self, event: EngineEvent) -> None:
        for queue in list(self._subscribers):
            queue.put_nowait(event)

    def _inspect_raw(self, ref: str) -> dict[str, Any] | None:
        for attempt in range(1, _EXIT_RACE_TRIES + 1):
            response = self.api.get(f"/containers/{ref}/json")
            if response.status_code == 404:
                return None
            if response.status_code == 500 and attempt < _EXIT_RACE_TRIES and is_exit_race(response.text):
                log.debug("podman inspect of %s raced the process's exit; asking again", ref)
                time.sleep(0.02 * attempt)
                continue
            response.raise_for_status()
            break
        data: dict[str, Any] = response.json()
        return data

    def _managed(self, name: str) -> dict[str, Any] | None:
        """The inspect document of our workload ``name``, or ``None`` (absent or not ours)."""
        found = self._inspect_raw(name)
        if found is None:
            return None
        labels = (found.get("Config") or {}).get("Labels") or {}
        if found.get("Name") != name or labels.get(MANAGED_LABEL) != self.context.agent_id:
            return None
        return found

    def _require(self, name: str) -> dict[str, Any]:
        found = self._managed(name)
        if found is None:
            raise WorkloadNotFoundError(
                f"no workload named {name!r} managed by agent {self.context.agent_id!r} on podman at {self.url}"
            )
        return found

    # ------------------------------------------------------------------ images

    def _pull(self, reference: str, auth: RegistryAuth | None) -> str | None:
        if auth is not None and auth.ca_pem and self._certs is not None:
            with self._certs.trusting(registry_host(reference), auth.ca_pem):
                return self._pull_trusted(reference, auth)
        return self._pull_trusted(reference, auth)

    def _pull_trusted(self, reference: str, auth: RegistryAuth | None) -> str | None:
        server = reference.split("/")[0]
        insecure = (auth is not None and auth.insecure) or server in self.options.insecure_registries
        headers = {}
        if auth is not None and auth.has_credentials:
            config = {"username": auth.username, "password": auth.password, "serveraddress": auth.server}
            if auth.email:
                config["email"] = auth.email
            headers["X-Registry-Auth"] = base64.urlsafe_b64encode(json.dumps(config).encode()).decode()
        params = {"reference": reference, "tlsVerify": not insecure, "policy": "always", "quiet": False}
        image_id = None
        try:
            response = self.api.post("/images/pull", params=params, headers=headers, stream=True)
            try:
                if response.status_code >= 400:
                    raise pull_error(_body_message(response), reference, auth)
                for line in response.iter_lines():
                    if not line:
                        continue
                    message = json.loads(line)
                    if message.get("error"):
                        raise pull_error(str(message["error"]), reference, auth)
                    image_id = message.get("id") or image_id
            finally:
                response.close()
        except podman.errors.APIError as error:
            raise pull_error(_explain(error), reference, auth) from None
        if not image_id:
            raise EngineError(f"pulling {reference!r} reported no image (podman's pull stream ended without one)")
        return self._image_id(reference)

    async def pull(self, reference: str, auth: RegistryAuth | None = None) -> str | None:
        """Pull ``reference``, sending ``auth`` and ``tlsVerify`` with this pull only (its CA in certs.d for the pull)."""
        log.debug("pulling %s on podman at %s", reference, self.url)
        return await self._call(self._pull, reference, auth)

    def _image_id(self, reference: str) -> str | None:
        response = self.api.get(f"/images/{reference}/json")
        if response.status_code in (400, 404):
            return None
        response.raise_for_status()
        return dockerapi.image_id(response.json().get("Id"))

    async def image_digest(self, reference: str) -> str | None:
        """The image id (``sha256:`` of its config) of the local image ``reference``."""
        return await self._call(self._image_id, reference)

    def _load(self, path: Path) -> LoadResult:
        if not path.is_file():
            raise EngineError(f"image archive {path} does not exist")
        with path.open("rb") as data:
            response = self.api.post("/images/load", data=data, headers={"Content-Type": "application/x-tar"})
        if response.status_code >= 400:
            raise EngineError(f"loading image archive {path} failed: {_body_message(response)}")
        names = [str(n) for n in (response.json().get("Names") or [])]
        if not names:
            raise EngineError(f"image archive {path} held no image podman could load")
        return LoadResult(tuple(names))

    async def load_image_archive(self, path: Path) -> LoadResult:
        """Load a docker-archive or an OCI-layout tarball (podman reads both)."""
        return await self._call(self._load, Path(path))

    def _prune(self, keep: Collection[str]) -> PruneResult:
        containers = self.api.get("/containers/json", params={"all": True}).json() or []
        used = {dockerapi.image_id(c.get("ImageID")) for c in containers}
        kept = {i for i in (self._image_id(k) for k in keep) if i}
        removed: list[str] = []
        reclaimed = 0
        for image in self.api.get("/images/json").json() or []:
            image_id = dockerapi.image_id(image.get("Id"))
            if image_id in used or image_id in kept:
                continue
            tags = [t for t in image.get("Names") or image.get("RepoTags") or [] if "<none>" not in t]
            # by name, one tag at a time: podman refuses to delete an image with several tags by id
            # unless forced, and forcing also removes containers (created since the list above)
            gone = [ref for ref in tags or [image["Id"]] if self._remove_image(ref, image_id)]
            removed.extend(gone if tags else [str(image_id)] * len(gone))
            if len(gone) == len(tags or [image["Id"]]):
                reclaimed += int(image.get("Size") or 0)
        return PruneResult(tuple(removed), reclaimed)

    def _remove_image(self, ref: str, image_id: str | None) -> bool:
        response = self.api.delete(f"/images/{ref}", params={"force": False})
        if response.status_code >= 400 and response.status_code != 404:
            log.warning("prune: could not remove image %s (%s): %s", ref, image_id, _body_message(response))
            return False
        return True

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
        """Running workloads' addresses (libpod lists no addresses: each running one is inspected)."""

        def addresses() -> dict[str, str]:
            found: dict[str, str] = {}
            for info in self._list():
                if info.state is not WorkloadState.RUNNING:
                    continue
                raw = self._inspect_raw(info.id) or {}
                networks = (raw.get("NetworkSettings") or {}).get("Networks") or {}
                address = next((str(n["IPAddress"]) for n in networks.values() if n.get("IPAddress")), None)
                if address:
                    found[info.name] = address
            return found

        return await self._call(addresses)

    async def storage_root(self) -> Path | None:
        """podman's image store (``store.graphRoot`` of its info)."""

        def graph_root() -> str | None:
            response = self.api.get("/info")
            response.raise_for_status()
            return (response.json().get("store") or {}).get("graphRoot")

        root = await self._call(graph_root)
        return Path(root) if root else None

    async def host_address(self) -> str | None:
        """The gateway of podman's default network (``podman``, the bridge rootful workloads join)."""

        def gateway() -> str | None:
            response = self.api.get("/networks/podman/json")
            if response.status_code == 404:
                return None
            response.raise_for_status()
            subnets = response.json().get("subnets") or []
            return next((str(s["gateway"]) for s in subnets if s.get("gateway")), None)

        return await self._call(gateway)

    async def usage(self, names: Collection[str]) -> dict[str, ResourceUsage]:
        """CPU and memory of the running workloads among ``names``, from their cgroups (a local daemon only)."""
        if not (self.url and self.url.startswith("unix:")):
            return {}
        return await self._call(self._usage, list(names))

    async def prune_images(self, keep: Collection[str] = ()) -> PruneResult:
        """Remove every image no container (managed or not) uses, except ``keep``."""
        return await self._call(self._prune, tuple(keep))

    def _ensure_volume(self, name: str) -> None:
        """Make named volume ``name`` with the managed label, unless it exists (an operator's stays unlabelled)."""
        if self.api.get(f"/volumes/{name}/exists").status_code == 204:
            return
        body = json.dumps({"Name": name, "Label": self.managed_labels})
        response = self.api.post("/volumes/create", data=body, headers={"Content-Type": "application/json"})
        if response.status_code >= 400 and response.status_code != 409:
            raise EngineError(f"creating volume {name!r} failed: {_body_message(response)}")

    async def prune_volumes(self, keep: Collection[str] = ()) -> list[str]:
        """Remove the volumes made for this agent's workloads (managed label) that no container uses, except ``keep``."""

        def prune() -> list[str]:
            filters = {"label": [f"{k}={v}" for k, v in self.managed_labels.items()], "dangling": ["true"]}
            response = self.api.get("/volumes/json", params={"filters": json.dumps(filters)})
            response.raise_for_status()
            removed = []
            for volume in response.json() or []:
                name = volume["Name"]
                if name in keep:
                    continue
                gone = self.api.delete(f"/volumes/{name}")
                if gone.status_code >= 400 and gone.status_code != 404:
                    log.warning("prune: could not remove volume %s: %s", name, _body_message(gone))
                    continue
                removed.append(name)
            return removed

        return await self._call(prune)

    # ------------------------------------------------------------------ workloads

    def _create_kwargs(self, spec: WorkloadSpec) -> dict[str, Any]:
        kwargs = dockerapi.create_arguments(spec, {**spec.labels, **self.managed_labels, NAME_LABEL: spec.name})
        kwargs["ulimits"] = _ulimits(self.options)
        if spec.annotations:
            kwargs["annotations"] = dict(spec.annotations)
        if spec.privileged:
            kwargs["privileged"] = True
        binds = [m for m in spec.mounts if m.kind == "bind"]
        if binds:
            kwargs["mounts"] = [
                {"type": "bind", "source": m.source, "target": m.target, "read_only": m.read_only} for m in binds
            ]
        volumes = [m for m in spec.mounts if m.kind == "volume"]
        if volumes:
            kwargs["volumes"] = {m.source: {"bind": m.target, "mode": "ro" if m.read_only else "rw"} for m in volumes}
        if spec.log_max_mib is not None:
            # k8s-file with a size: conmon truncates the log when it passes the size
            kwargs["log_config"] = {"Type": "k8s-file", "Config": {"size": spec.log_max_mib * 1024 * 1024}}
        if spec.cpu_limit is not None:
            kwargs["cpu_period"] = 100_000
            kwargs["cpu_quota"] = int(spec.cpu_limit * 100_000)
        if spec.health_check is not None:
            hc = spec.health_check
            kwargs["healthcheck"] = {
                "Test": list(hc.test),
                "Interval": int(hc.interval_s * 1e9),
                "Timeout": int(hc.timeout_s * 1e9),
                "StartPeriod": int(hc.start_period_s * 1e9),
                "Retries": hc.retries,
            }
        return kwargs

    def _create(self, spec: WorkloadSpec) -> WorkloadInfo:
        for mount in spec.mounts:
            if mount.kind == "volume":
                self._ensure_volume(mount.source)
        try:
            created = self._create_container(spec)
        except podman.errors.ImageNotFound:
            raise ImageNotFoundError(
                f"cannot create workload {spec.name!r}: image {spec.image!r} is not present; pull or load it first"
            ) from None
        except podman.errors.APIError as error:
            text = _explain(error)
            if "image not known" in text or "no such image" in text:
                raise ImageNotFoundError(
                    f"cannot create workload {spec.name!r}: image {spec.image!r} is not present on podman at "
                    f"{self.url}; pull or load it first"
                ) from None
            if "already in use" in text:
                raise EngineError(
                    f"cannot create workload {spec.name!r}: a container of that name already exists ({text})"
                ) from None
            raise EngineError(f"cannot create workload {spec.name!r}: {text}") from None
        return self._info(created)

    def _create_container(self, spec: WorkloadSpec) -> dict[str, Any]:
        """Create ``spec``'s container, through a podman of its own if it names another OCI runtime; its inspect."""
        arguments = (spec.image, list(spec.command) or None)
        runtime, runtime_args = spec.runtime, self._runtime_args(spec)
        if runtime is None or runtime_args is None:
            made: dict[str, Any] = self.client.containers.create(*arguments, **self._create_kwargs(spec)).attrs
            return made
        with (
            runtimes.creating_service(spec.name, runtime, runtime_args) as url,
            podman.PodmanClient(base_url=url, timeout=self.options.timeout_s) as client,
        ):
            close_failed_connects(client.api)
            container = client.containers.create(*arguments, **self._create_kwargs(spec))
            found = self._inspect_raw(str(container.id))
            if found is None:
                container.remove(force=True)
                raise EngineError(
                    f"cannot create workload {spec.name!r} under OCI runtime {spec.runtime!r} (field runtime): the "
                    f"podman service at {self.url} does not see the storage it reports ({' '.join(runtime_args)})"
                )
        return found

    def _runtime_args(self, spec: WorkloadSpec) -> list[str] | None:
        """The global flags of a podman that creates ``spec`` under its OCI runtime; ``None``: the service's default.

        Refused before anything is created when the service's host can't be the one that creates it.
        """
        if not spec.runtime:
            return None
        response = self.api.get("/info")
        response.raise_for_status()
        info: dict[str, Any] = response.json()
        if spec.runtime == runtimes.default_runtime(info):
            return None
        if "/" in spec.runtime:
            raise EngineError(
                f"workload {spec.name!r}: OCI runtime {spec.runtime!r} (field runtime) is a path; podman takes "
                "a runtime by the name containers.conf gives it in [engine.runtimes]"
            )
        if not (self.url or "").startswith("unix:"):
            raise EngineError(
                f"workload {spec.name!r}: OCI runtime {spec.runtime!r} (field runtime) needs a podman service on "
                f"this host, and {self.url} is not one: podman's API ignores a container's runtime, so the engine "
                "creates such a container with podman itself, on the service's storage"
            )
        return runtimes.storage_args(info)

    async def create(self, spec: WorkloadSpec) -> WorkloadInfo:
        """Create ``spec`` (not started) with this agent's labels and the configured ulimits."""
        async with self._lock(spec.name):
            info = await self._call(self._create, spec)
            if self._cache is not None:
                self._cache[info.id] = info
            return info

    def _start(self, name: str) -> str:
        found = self._require(name)
        response = self.api.post(f"/containers/{found['Id']}/start")
        if response.status_code < 400:
            self._track_health(found["Id"], found)
            return str(found["Id"])
        text = _body_message(response)
        conflict = dockerapi.port_conflict(name, found, text)
        if conflict is not None:
            raise conflict
        if response.status_code == 404:
            raise WorkloadNotFoundError(f"workload {name!r} disappeared while starting")
        if "is missing" in text and found.get("OCIRuntime"):
            raise EngineError(
                f"cannot start workload {name!r}: the podman service at {self.url} doesn't know its OCI runtime "
                f"{found['OCIRuntime']!r} (field runtime; {text}); podman reads containers.conf's "
                "[engine.runtimes] when it starts: restart the service"
            )
        raise EngineError(f"cannot start workload {name!r}: {text}")

    async def start_workload(self, name: str) -> None:
        """Start our workload ``name`` (a no-op if it runs)."""
        async with self._lock(name):
            container_id = await self._call(self._start, name)
            cached = self._cache.get(container_id) if self._cache is not None else None
            if cached is not None and self._cache is not None:
                # the start event refreshes it from podman in a moment
                self._cache[container_id] = attrs.evolve(
                    cached,
                    state=WorkloadState.RUNNING,
                    started_at=_whole_seconds(datetime.now(UTC)),
                    exit_code=None,
                    finished_at=None,
                )
            else:
                await self._refresh(container_id)

    def _stop(self, name: str, timeout_s: float) -> str:
        found = self._require(name)
        response = self.api.post(
            f"/containers/{found['Id']}/stop", params={"timeout": max(0, math.ceil(timeout_s))}, timeout=timeout_s + 60
        )
        if response.status_code == 404:
            raise WorkloadNotFoundError(f"workload {name!r} disappeared while stopping")
        if response.status_code >= 400 and response.status_code != 304:
            raise EngineError(f"cannot stop workload {name!r}: {_body_message(response)}")
        return str(found["Id"])

    async def stop(self, name: str, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s`` (whole seconds, rounded up)."""
        async with self._lock(name):
            await self._refresh(await self._call(self._stop, name, timeout_s))

    def _remove(self, name: str) -> str | None:
        found = self._managed(name)
        if found is None:
            return None
        self._health.pop(found["Id"], None)
        if (found.get("State") or {}).get("Running"):
            # force-remove would wait the container's stop timeout first (10 s by default)
            self.api.post(f"/containers/{found['Id']}/kill", params={"signal": "SIGKILL"}).close()
        response = self.api.delete(f"/containers/{found['Id']}", params={"force": True, "v": False})
        if response.status_code >= 400 and response.status_code != 404:
            raise EngineError(f"cannot remove workload {name!r}: {_body_message(response)}")
        return str(found["Id"])

    async def remove(self, name: str) -> None:
        """Kill and remove our workload ``name``; absent (or not ours) is fine."""
        async with self._lock(name):
            container_id = await self._call(self._remove, name)
            if container_id is not None and self._cache is not None:
                self._cache.pop(container_id, None)

    def _info(self, found: dict[str, Any]) -> WorkloadInfo:
        state = found.get("State") or {}
        config = found.get("Config") or {}
        labels = dict(config.get("Labels") or {})
        status = _STATES.get(str(state.get("Status")), WorkloadState.UNKNOWN)
        if state.get("Restarting"):
            status = WorkloadState.RESTARTING
        started = _whole_seconds(parse_time(state.get("StartedAt")))
        finished = _whole_seconds(parse_time(state.get("FinishedAt")))
        exited = status in (WorkloadState.EXITED, WorkloadState.DEAD)
        oom = bool(state.get("OOMKilled")) or (
            exited
            and started is not None
            and self._oom_watch is not None
            and self._oom_watch.killed_since(found["Id"], started.timestamp())
        )
        health = (state.get("Health") or state.get("Healthcheck") or {}).get("Status")
        return WorkloadInfo(
            name=labels.get(NAME_LABEL) or str(found.get("Name", "")),
            id=found["Id"],
            image=found.get("ImageName") or config.get("Image", ""),
            state=status,
            labels=labels,
            image_digest=dockerapi.image_id(found.get("Image")),
            exit_code=state.get("ExitCode") if exited else None,
            started_at=started,
            finished_at=finished if exited else None,
            health=dockerapi.health_of(health) if config.get("Healthcheck") else Health.NONE,
            restart_count=int(found.get("RestartCount") or 0),
            oom_killed=oom,
        )

    def _inspect(self, name: str) -> WorkloadInfo | None:
        found = self._managed(name)
        return None if found is None else self._info(found)

    async def inspect(self, name: str) -> WorkloadInfo | None:
        """Our workload ``name``, or ``None``."""
        return await self._call(self._inspect, name)

    def _inspect_id(self, container_id: str) -> WorkloadInfo | None:
        found = self._inspect_raw(container_id)
        return None if found is None else self._info(found)

    def _list(self) -> list[WorkloadInfo]:
        filters = json.dumps({"label": [f"{MANAGED_LABEL}={self.context.agent_id}"]})
        summaries = self.api.get("/containers/json", params={"all": True, "filters": filters}).json() or []
        infos = [self._summary_info(s) for s in summaries]
        return sorted((i for i in infos if i is not None), key=lambda i: i.name)

    def _summary_info(self, summary: dict[str, Any]) -> WorkloadInfo | None:
        labels = dict(summary.get("Labels") or {})
        if labels.get(MANAGED_LABEL) != self.context.agent_id:
            return None
        state = _STATES.get(str(summary.get("State")), WorkloadState.UNKNOWN)
        exited = state in (WorkloadState.EXITED, WorkloadState.DEAD)
        started = summary.get("StartedAt") or 0
        ended = summary.get("ExitedAt") or 0
        names = summary.get("Names") or [""]
        status = str(summary.get("Status") or "")
        return WorkloadInfo(
            name=labels.get(NAME_LABEL) or str(names[0]),
            id=summary["Id"],
            image=str(summary.get("Image") or ""),
            state=state,
            labels=labels,
            image_digest=dockerapi.image_id(summary.get("ImageID")),
            exit_code=summary.get("ExitCode") if exited else None,
            started_at=datetime.fromtimestamp(started, UTC) if started > 0 else None,
            finished_at=datetime.fromtimestamp(ended, UTC) if exited and ended > 0 else None,
            health=dockerapi.health_of(status) if status in ("healthy", "unhealthy", "starting") else Health.NONE,
            restart_count=int(summary.get("Restarts") or 0),
            oom_killed=exited and self._oom_watch is not None and summary["Id"] in self._oom_watch.killed,
        )

    async def list_managed(self) -> list[WorkloadInfo]:
        """Every container carrying this agent's label.

        Podman's list call costs about 3 ms per running container (it syncs each
        one's state), so the engine keeps a cache, loaded once and kept current by
        podman's event stream and by its own operations, and answers from it. While
        the stream is down it asks the service directly.
        """
        if self._cache is not None:
            return sorted(self._cache.values(), key=lambda i: i.name)
        return await self._call(self._list)

    async def _refresh(self, container_id: str) -> None:
        if self._cache is None:
            return
        info = await self._call(self._inspect_id, container_id)
        if self._cache is None:  # dropped by close() while we waited (mypy can't see that)
            return  # type: ignore[unreachable]
        if info is None or info.labels.get(MANAGED_LABEL) != self.context.agent_id:
            self._cache.pop(container_id, None)
        else:
            self._cache[container_id] = info

    async def _watch(self) -> None:
        """Keep :attr:`_cache` current from podman's events; drop it while they can't be read."""
        while True:
            since = datetime.fromtimestamp(time.time() - 0.05, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            params = {"stream": True, "since": since, "filters": json.dumps({"type": ["container"]})}
            opener = self._stream("/events", params, "the event stream", _lines)
            try:
                self._cache = {info.id: info for info in await self._call(self._list)}
                async for line in stream_in_thread(opener, "fogwire-podman-watch"):
                    if not line:
                        continue
                    raw = json.loads(line)
                    attributes = (raw.get("Actor") or {}).get("Attributes") or {}
                    if attributes.get(MANAGED_LABEL) != self.context.agent_id:
                        continue
                    container_id = (raw.get("Actor") or {}).get("ID") or raw.get("id")
                    if not container_id:
                        continue
                    action = raw.get("Action") or raw.get("status")
                    if action == "remove" and self._cache is not None:
                        self._cache.pop(container_id, None)
                    elif action in _STATE_ACTIONS:
                        await self._refresh(container_id)
            except asyncio.CancelledError:
                self._cache = None
                raise
            except Exception as error:
                log.debug("podman event watch interrupted: %s", error)
            self._cache = None
            await asyncio.sleep(1.0)

    # ------------------------------------------------------------------ health checks and OOM (no systemd)

    def _track_health(self, container_id: str, found: dict[str, Any] | None = None) -> None:
        if not self._drive_health:
            return
        found = found or self._inspect_raw(container_id)
        check = ((found or {}).get("Config") or {}).get("Healthcheck") or {}
        test = check.get("Test") or []
        if not test or test[0] == "NONE":
            return
        interval = max(float(check.get("Interval") or 30e9) / 1e9, 0.5)
        self._health[container_id] = (interval, time.monotonic() + interval, Health.STARTING)

    def _run_health(self, container_id: str) -> Health | None:
        response = self.api.get(f"/containers/{container_id}/healthcheck")
        if response.status_code == 404:
            self._health.pop(container_id, None)
            return None
        if response.status_code >= 400:
            return None
        return dockerapi.health_of(response.json().get("Status"))

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            due = [(cid, entry) for cid, entry in self._health.items() if entry[1] <= now]
            results = await asyncio.gather(
                *(self._call(self._run_health, cid) for cid, _ in due), return_exceptions=True
            )
            for (cid, (interval, _, last)), result in zip(due, results, strict=True):
                if cid not in self._health:
                    continue
                if not isinstance(result, Health):
                    self._health[cid] = (interval, now + interval, last)
                    continue
                self._health[cid] = (interval, now + interval, result)
                if result is not last:
                    name = await self._name_of(cid)
                    if name is not None:
                        self._publish(EngineEvent(EventKind.HEALTH, name, datetime.now(UTC), health=result))

    async def _name_of(self, container_id: str) -> str | None:
        found = await self._call(self._inspect_raw, container_id)
        labels = ((found or {}).get("Config") or {}).get("Labels") or {}
        if labels.get(MANAGED_LABEL) != self.context.agent_id:
            return None
        return str(labels.get(NAME_LABEL) or (found or {}).get("Name"))

    async def _publish_oom(self, container_id: str) -> None:
        name = await self._name_of(container_id)
        if name is not None:
            self._publish(EngineEvent(EventKind.OOM, name, datetime.now(UTC)))

    # ------------------------------------------------------------------ streams

    async def logs(self, name: str, *, tail: int | None = None, follow: bool = False) -> AsyncIterator[LogLine]:
        """The workload's stdout/stderr lines (last ``tail``), then new ones with ``follow``."""
        found = await self._call(self._require, name)
        if tail == 0 and not follow:
            return
        params: dict[str, Any] = {"stdout": True, "stderr": True, "follow": follow}
        if tail is not None:
            params["tail"] = str(max(0, tail))
        opener = self._stream(
            f"/containers/{found['Id']}/logs",
            params,
            f"the logs of workload {name!r}",
            lambda response: iter_log_frames(response.raw),
            lambda: WorkloadNotFoundError(f"workload {name!r} disappeared"),
            headers_within=not follow,  # podman sends them with the first line
        )
        async for stream, text in stream_in_thread(opener, f"fogwire-podman-logs-{name}"):
            yield LogLine(stream, text)  # type: ignore[arg-type]

    async def events(self) -> AsyncIterator[EngineEvent]:
        """start/die/oom/health events of this agent's workloads, from the first ``__anext__`` on."""
        since = datetime.fromtimestamp(time.time() - 0.05, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        params = {"stream": True, "since": since, "filters": json.dumps({"type": ["container"]})}
        opener = self._stream("/events", params, "the event stream", _lines)
        queue: asyncio.Queue[EngineEvent | BaseException] = asyncio.Queue()
        self._subscribers.add(queue)

        async def pump() -> None:
            try:
                async for line in stream_in_thread(opener, "fogwire-podman-events"):
                    if line:
                        event = self._event(json.loads(line))
                        if event is not None:
                            queue.put_nowait(event)
                queue.put_nowait(EngineError("podman's event stream ended"))
            except Exception as error:
                queue.put_nowait(error)

        task = asyncio.create_task(pump(), name="fogwire-podman-event-pump")
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._subscribers.discard(queue)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _event(self, raw: dict[str, Any]) -> EngineEvent | None:
        attributes = (raw.get("Actor") or {}).get("Attributes") or {}
        if attributes.get(MANAGED_LABEL) != self.context.agent_id:
            return None
        action = str(raw.get("Action") or raw.get("status") or "")
        name = attributes.get(NAME_LABEL) or attributes.get("name", "")
        when = time_from_nanos(raw.get("timeNano"), raw.get("time"))
        if action == "start":
            return EngineEvent(EventKind.START, name, when)
        if action in ("died", "die"):
            code = attributes.get("containerExitCode")
            return EngineEvent(EventKind.DIE, name, when, exit_code=int(code) if code is not None else None)
        if action == "oom":
            return EngineEvent(EventKind.OOM, name, when)
        if action == "health_status" and not self._drive_health:
            return EngineEvent(
                EventKind.HEALTH, name, when, health=dockerapi.health_of(attributes.get("health_status"))
            )
        return None


def _lines(response: Any) -> Iterator[bytes]:
    """The lines of a JSON-lines stream (podman's events)."""
    lines: Iterator[bytes] = response.iter_lines()
    return lines


def _body_message(response: Any) -> str:
    """The ``message``/``cause`` of an error response (podman answers JSON)."""
    try:
        body = response.json()
    except ValueError:
        return str(response.text).strip()
    if isinstance(body, Mapping):
        return str(body.get("message") or body.get("cause") or body)
    return str(body)
