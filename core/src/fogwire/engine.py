"""The container engine contract.

An engine plugin registers a factory for a subclass of :class:`Engine` through the
``fogwire_register_engines`` hook. Everything the agent does to containers goes
through these methods, so the reconciler works unchanged on every engine.

Rules every engine follows:

* A workload the engine creates carries :data:`MANAGED_LABEL` (value: the agent id)
  and :data:`NAME_LABEL`. :meth:`Engine.list_managed`, :meth:`Engine.inspect`,
  :meth:`Engine.remove` and friends only ever see workloads carrying the agent's
  managed label: an unmanaged container is never touched, changed or removed.
* Methods are coroutines; an engine whose SDK blocks runs it in a thread
  (``asyncio.to_thread``), never on the event loop.
* Failures raise :class:`fogwire.errors.EngineError` subclasses with a message
  that names the workload or image; registry passwords never appear in them.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import AsyncIterator, Collection, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import attrs

from fogwire._defaults import core_converter
from fogwire.errors import EngineError, ImageNotFoundError

if TYPE_CHECKING:
    import cattrs


MANAGED_LABEL = "io.fogwire.managed"
"""Label whose value is the id of the agent managing the workload."""

NAME_LABEL = "io.fogwire.workload"
"""Label holding the workload name the agent gave the workload."""

SPEC_HASH_LABEL = "io.fogwire.spec-hash"
"""Label the reconciler sets to the hash of the spec a workload was created from."""


class WorkloadState(enum.Enum):
    """The engine-neutral state of a workload."""

    CREATED = "created"
    RUNNING = "running"
    RESTARTING = "restarting"
    EXITED = "exited"
    DEAD = "dead"
    PAUSED = "paused"
    UNKNOWN = "unknown"


class Health(enum.Enum):
    """Health of a workload as its health check reports it."""

    NONE = "none"
    STARTING = "starting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


class EventKind(enum.Enum):
    """Kinds of workload events every engine reports."""

    START = "start"
    DIE = "die"
    OOM = "oom"
    HEALTH = "health"


@attrs.frozen
class RegistryAuth:
    """How to reach one registry server: its credentials and its TLS trust.

    Empty ``username`` and ``password`` pull anonymously (a registry may need only its
    CA, or ``insecure``). The password is never shown in a repr.
    """

    server: str
    username: str = ""
    password: str = attrs.field(default="", repr=False)
    email: str = ""
    insecure: bool = False
    """Skip TLS verification, falling back to plain HTTP (a registry without a usable certificate)."""
    ca_pem: str | None = attrs.field(default=None, repr=False)
    """PEM text of the CA(s) the registry's certificate is verified with, besides the system's.

    Set from a Registry's ``certificate`` when it says ``requiresCert``. Engines whose
    daemon pulls (docker, podman) put it where the daemon reads a registry's CA, for
    the pull only; fogwire's own registry client (containerd) adds it to its TLS context.
    """

    @property
    def has_credentials(self) -> bool:
        """True when there is a user name or password to log in with."""
        return bool(self.username or self.password)


@attrs.frozen
class PortMapping:
    """Publish ``container_port`` on ``host_ip:host_port`` of the host."""

    container_port: int
    host_port: int
    protocol: Literal["tcp", "udp"] = "tcp"
    host_ip: str = ""


@attrs.frozen
class VolumeMount:
    """A bind mount (``source`` is a host path) or a named volume (``source`` is its name)."""

    source: str
    target: str
    kind: Literal["bind", "volume"] = "bind"
    read_only: bool = False


@attrs.frozen
class HealthCheck:
    """A health check in Docker's form: ``test`` is ``["CMD", ...]`` or ``["CMD-SHELL", "..."]``."""

    test: tuple[str, ...]
    interval_s: float = 30.0
    timeout_s: float = 30.0
    start_period_s: float = 0.0
    retries: int = 3


@attrs.frozen
class RestartPolicy:
    """What the engine does when the workload's process exits."""

    name: Literal["no", "always", "on-failure", "unless-stopped"] = "no"
    max_retries: int = 0


@attrs.frozen
class DeviceMapping:
    """A host device node given to the workload: ``host_path`` (under ``/dev``) at ``container_path``."""

    host_path: str
    container_path: str
    permissions: str = "rwm"


@attrs.frozen
class OciHook:
    """An OCI hook (from a CDI device): ``path`` run with ``args`` (``args[0]`` is its name) at ``hook_name``."""

    hook_name: str
    path: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    timeout: int | None = None


@attrs.frozen
class WorkloadSpec:
    """Everything needed to create one workload (one container).

    ``entrypoint`` replaces the image's entrypoint when given; ``command`` replaces
    its command (the arguments). ``memory_limit_mib`` is in MiB, as the controller
    sends it; ``cpu_limit`` is in cores (0.5 = half a core).

    ``user`` replaces the image's ``User`` exactly as ``docker run --user`` does:
    ``name``, ``uid``, ``name:group`` or ``uid:gid``; names are looked up in the
    image's ``/etc/passwd`` and ``/etc/group``. ``None`` keeps the image's user.
    ``cpuset_cpus`` pins the workload to CPUs, in the kernel's list form
    (``"0"``, ``"0-2"``, ``"0,3"``); ``None`` leaves every CPU allowed.
    ``log_max_mib`` bounds the output the engine keeps for the workload (MiB, all
    rotated files together); ``None`` leaves the engine's own default.
    ``pid_mode`` / ``ipc_mode`` ``"host"`` share the host's PID / IPC namespace;
    ``devices`` are host device nodes; ``annotations`` go to the OCI spec;
    ``runtime`` names the OCI runtime; ``hooks`` are OCI hooks (a CDI device's). An
    engine honours these only when they are in
    its :attr:`Engine.features` (a microservice needing one it lacks is refused).
    """

    name: str
    image: str
    env: Mapping[str, str] = attrs.field(factory=dict)
    entrypoint: tuple[str, ...] | None = None
    command: tuple[str, ...] = ()
    ports: tuple[PortMapping, ...] = ()
    mounts: tuple[VolumeMount, ...] = ()
    host_network: bool = False
    privileged: bool = False
    extra_hosts: Mapping[str, str] = attrs.field(factory=dict)
    labels: Mapping[str, str] = attrs.field(factory=dict)
    restart: RestartPolicy = RestartPolicy()
    cpu_limit: float | None = None
    memory_limit_mib: int | None = None
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    health_check: HealthCheck | None = None
    user: str | None = None
    cpuset_cpus: str | None = None
    log_max_mib: int | None = None
    pid_mode: Literal["host"] | None = None
    ipc_mode: Literal["host"] | None = None
    devices: tuple[DeviceMapping, ...] = ()
    annotations: Mapping[str, str] = attrs.field(factory=dict)
    runtime: str | None = None
    hooks: tuple[OciHook, ...] = ()


OPTIONAL_FEATURES: Mapping[str, str] = {
    "pid_mode": "pidMode",
    "ipc_mode": "ipcMode",
    "devices": "devices",
    "annotations": "annotations",
    "runtime": "runtime",
    "hooks": "cdiDevices",
}
"""Spec fields an engine honours only when it says so (:attr:`Engine.features`), and their document keys."""


@attrs.frozen
class WorkloadInfo:
    """What the engine reports about one managed workload."""

    name: str
    id: str
    image: str
    state: WorkloadState
    labels: Mapping[str, str] = attrs.field(factory=dict)
    image_digest: str | None = None
    """Digest (``sha256:…``) of the image actually running: the image id/config digest."""
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    health: Health = Health.NONE
    restart_count: int = 0
    oom_killed: bool = False


@attrs.frozen
class EngineEvent:
    """A lifecycle event of a managed workload."""

    kind: EventKind
    workload: str
    time: datetime
    exit_code: int | None = None
    health: Health | None = None


@attrs.frozen
class PullResult:
    """The outcome of obtaining an image.

    ``source`` says where the image came from: ``"registry"`` (pulled now) or
    ``"local"`` (already present). ``fallback_reason`` is set when a pull failed and
    the local copy is used instead.
    """

    reference: str
    digest: str | None
    source: Literal["registry", "local"]
    fallback_reason: str | None = None


@attrs.frozen
class LoadResult:
    """Images an archive brought into the engine."""

    references: tuple[str, ...]


@attrs.frozen
class PruneResult:
    """Images removed by :meth:`Engine.prune_images`."""

    removed: tuple[str, ...]
    reclaimed_bytes: int = 0


@attrs.frozen
class LogLine:
    """One line of a workload's output, without its trailing newline."""

    stream: Literal["stdout", "stderr"]
    text: str


@attrs.frozen
class EngineContext:
    """What the agent hands an engine at construction.

    ``url`` is ``containerEngineUrl`` (``None``: the engine's default or embedded
    mode). The directories are the agent's own; an engine keeps its files there.
    ``options`` are the engine-specific keys of the agent config (``engineOptions``),
    still plain data: structure them with
    :func:`fogwire.convert.structure_options` on ``converter``, the consumer's one
    converter, on which every loaded plugin's ``fogwire_configure_converter`` ran.
    """

    agent_id: str
    data_dir: Path
    run_dir: Path
    log_dir: Path
    url: str | None = None
    options: Mapping[str, Any] = attrs.field(factory=dict)
    converter: cattrs.Converter = attrs.field(factory=core_converter, repr=False, eq=False)


class PullPolicy(enum.Enum):
    """How :meth:`Engine.obtain_image` gets an image."""

    PULL = "pull"
    """Pull from the registry; on failure fall back to a local copy if one exists."""
    NEVER = "never"
    """Use only a local copy (registry ``local`` / ``from_cache``); never pull."""


@attrs.frozen
class ResourceUsage:
    """What a workload has used: CPU seconds since it started, and the memory it holds now."""

    cpu_seconds: float
    memory_bytes: int


class Engine(abc.ABC):
    """Base class of every container engine plugin.

    Subclasses implement the abstract coroutines; :meth:`obtain_image` (the registry
    and fallback policy) is shared. The agent calls :meth:`start` once before
    anything else and :meth:`close` on shutdown.
    """

    name: ClassVar[str] = ""

    features: ClassVar[frozenset[str]] = frozenset()
    """The :data:`OPTIONAL_FEATURES` the engine honours; a spec using another one is refused before it is created."""

    def __init__(self, context: EngineContext) -> None:
        self.context = context

    @property
    def managed_labels(self) -> dict[str, str]:
        """The labels marking a workload as managed by this agent."""
        return {MANAGED_LABEL: self.context.agent_id}

    async def start(self) -> None:  # noqa: B027 - optional hook with a default
        """Connect to the engine (or start an embedded one). Default: nothing."""

    async def close(self) -> None:  # noqa: B027 - optional hook with a default
        """Release connections and stop anything :meth:`start` started. Default: nothing."""

    @abc.abstractmethod
    async def pull(self, reference: str, auth: RegistryAuth | None = None) -> str | None:
        """Pull ``reference`` from its registry and return the image digest.

        Raises :class:`~fogwire.errors.ImageNotFoundError` when the registry has no
        such image, :class:`~fogwire.errors.RegistryAuthError` when it refuses the
        credentials, :class:`~fogwire.errors.EngineError` otherwise.
        """

    @abc.abstractmethod
    async def image_digest(self, reference: str) -> str | None:
        """Return the digest of the local image ``reference``, or ``None`` if absent."""

    async def obtain_image(
        self,
        reference: str,
        auth: RegistryAuth | None = None,
        policy: PullPolicy = PullPolicy.PULL,
    ) -> PullResult:
        """Make ``reference`` available locally following ``policy``.

        With :attr:`PullPolicy.NEVER` the image must already be present. With
        :attr:`PullPolicy.PULL` a failed pull falls back to a local copy when one
        exists, and the result says so; without one the pull error is raised.
        """
        if policy is PullPolicy.NEVER:
            digest = await self.image_digest(reference)
            if digest is None:
                raise ImageNotFoundError(
                    f"image {reference!r} is not present locally and its registry is "
                    "'local'/'from_cache', which never pulls: load it first "
                    "(an offline bundle import, or the engine's own load)"
                )
            return PullResult(reference, digest, "local")
        try:
            digest = await self.pull(reference, auth)
        except EngineError as error:
            local = await self.image_digest(reference)
            if local is None:
                raise
            return PullResult(reference, local, "local", fallback_reason=str(error))
        return PullResult(reference, digest, "registry")

    @abc.abstractmethod
    async def load_image_archive(self, path: Path) -> LoadResult:
        """Load a docker-archive or OCI-layout tarball into the engine."""

    @abc.abstractmethod
    async def create(self, spec: WorkloadSpec) -> WorkloadInfo:
        """Create (not start) a workload from ``spec``, adding the managed labels.

        Raises :class:`~fogwire.errors.EngineError` if a container of that name
        already exists, managed or not.
        """

    @abc.abstractmethod
    async def start_workload(self, name: str) -> None:
        """Start a created or stopped managed workload."""

    @abc.abstractmethod
    async def stop(self, name: str, timeout_s: float = 10.0) -> None:
        """Stop a managed workload: SIGTERM, then SIGKILL after ``timeout_s``."""

    @abc.abstractmethod
    async def remove(self, name: str) -> None:
        """Remove a managed workload, stopping it first. Idempotent: absent is fine."""

    @abc.abstractmethod
    async def inspect(self, name: str) -> WorkloadInfo | None:
        """Report on a managed workload, or ``None`` if no managed workload has that name."""

    @abc.abstractmethod
    async def list_managed(self) -> list[WorkloadInfo]:
        """Every workload carrying this agent's managed label, and nothing else."""

    @abc.abstractmethod
    def logs(self, name: str, *, tail: int | None = None, follow: bool = False) -> AsyncIterator[LogLine]:
        """The workload's output: the last ``tail`` lines (all if ``None``), then new ones if ``follow``."""

    @abc.abstractmethod
    def events(self) -> AsyncIterator[EngineEvent]:
        """A stream of start/die/oom/health events of managed workloads, until cancelled."""

    async def usage(self, names: Collection[str]) -> dict[str, ResourceUsage]:
        """CPU and memory of the running workloads among ``names`` (for status reports).

        Default: nothing (an engine that can't measure reports no figures, never
        made-up ones). Engines that know a workload's main PID read its cgroup with
        :func:`fogwire.cgroups.usage_of_pid`.
        """
        return {}

    async def host_address(self) -> str | None:
        """The host's address as the workloads on the engine's default network reach it (the bridge's gateway).

        The device API listens there, and workloads get it as the extra hosts
        ``iofog`` and ``edgelet.default.svc.bridge.local``. Default: ``None`` (unknown;
        workloads then reach the host only with host networking).
        """
        return None

    async def storage_root(self) -> Path | None:
        """The directory the engine keeps images and containers under (its free space is what pulls need).

        The agent prunes when free space there falls below ``availableDiskThreshold``
        percent. Default: ``None`` (unknown; no pruning for disk pressure).
        """
        return None

    async def workload_addresses(self) -> dict[str, str]:
        """Each running workload's IPv4 address on the engine's network (name → address).

        The device API answers the Java agent's tokenless v2 routes only to the
        workload a request comes from, known by this address. Workloads on the host's
        network have none of their own and are left out. Default: nothing known.
        """
        return {}

    async def prune_volumes(self, keep: Collection[str] = ()) -> list[str]:
        """Remove the named volumes this agent's workloads made that no container uses, except ``keep``.

        Returns the names removed. Only volumes the engine itself made for this
        agent go (an operator's volume is never touched), so a removed
        microservice's data goes with the next pruning, as ``deleteWithCleanup``
        does on the controller's agents. Default: nothing (an engine that can't
        tell its volumes from others' removes none).
        """
        return []

    @abc.abstractmethod
    async def prune_images(self, keep: Collection[str] = ()) -> PruneResult:
        """Remove images no container uses, except those named in ``keep``."""
