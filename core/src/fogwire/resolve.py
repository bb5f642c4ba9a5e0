"""Desired microservices turned into engine workload specs.

:func:`resolve` picks the image (by catalog item or by the device's architecture),
the registry and its credentials, and maps every container field of the ioFog
document onto a :class:`~fogwire.engine.WorkloadSpec`. A container field fogwire
can't honour (:data:`UNSUPPORTED_CONTAINER_FIELDS`) is never dropped silently: a
microservice that sets one is rejected with the field's path. :func:`config_hash` and
:func:`spec_hash` give the identity the reconciler compares: a running workload
whose labels carry the same hashes is left alone.
"""

from __future__ import annotations

import enum
import hashlib
import json
import platform
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs

from fogwire.cdi import DEFAULT_SPEC_DIRS, CdiError, name_problem, resolve_devices, with_edits
from fogwire.convert import to_camel
from fogwire.engine import (
    SPEC_HASH_LABEL,
    DeviceMapping,
    HealthCheck,
    PortMapping,
    PullPolicy,
    RegistryAuth,
    RestartPolicy,
    VolumeMount,
    WorkloadSpec,
)
from fogwire.errors import FogwireError, Problem
from fogwire.model.desired import LOCAL_REGISTRY_ID, REMOTE_REGISTRY_ID, DesiredMicroservice, DesiredState, registry_id
from fogwire.model.iofog import AccessMode, VolumeType

CONFIG_HASH_LABEL = "io.fogwire.config-hash"
"""Label holding the hash of the workload's configuration, without the image digest."""
DIGEST_LABEL = "io.fogwire.image-digest"
"""Label holding the digest of the image the workload was created from (when known)."""

ARCH_FIELDS: dict[str, Literal["x86", "arm"]] = {
    "amd64": "x86",
    "x86_64": "x86",
    "arm64": "arm",
    "aarch64": "arm",
    "arm": "arm",
    "arm/v7": "arm",
    "armv7l": "arm",
    "armv6l": "arm",
}
"""Device architecture → the image field of a microservice or catalog item it runs."""


UNSUPPORTED_CONTAINER_FIELDS: dict[str, str] = {
    "platform": "the image is chosen by the device's architecture (images.x86 / images.arm)",
}
"""Container fields of the ioFog document fogwire does not support, and what it does instead.

A microservice that sets one of them to a non-empty value is rejected (its
workload is not created or changed) rather than run without it.
"""

_CPUSET_RE = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*")


class ResolveError(FogwireError):
    """A desired microservice can't be turned into a workload on this device."""


def unsupported_fields(ms: DesiredMicroservice) -> list[Problem]:
    """One :class:`~fogwire.errors.Problem` per container field of ``ms`` that fogwire can't honour.

    Empty and null values are fine; the problem's path is the field's path in its
    document (``spec.microservices[1].container.pidMode``).
    """
    container = ms.spec.container
    problems = []
    for field, instead in UNSUPPORTED_CONTAINER_FIELDS.items():
        if getattr(container, field):
            key = to_camel(field)
            problems.append(
                Problem(
                    ms.origin,
                    ms.index,
                    f"{ms.path}.container.{key}",
                    f"fogwire doesn't support {key} ({instead}); remove it or leave it empty "
                    f"(microservice {ms.name!r} is not run)",
                )
            )
    for key in ("pid_mode", "ipc_mode"):
        mode = getattr(container, key)
        if mode and mode not in ("host", "private"):
            field = to_camel(key)
            problems.append(
                Problem(
                    ms.origin,
                    ms.index,
                    f"{ms.path}.container.{field}",
                    f"expected 'host' (or 'private', the default), got {mode!r} (microservice {ms.name!r} is not run)",
                )
            )
    for position, device in enumerate(container.devices):
        where = f"{ms.path}.container.devices[{position}]"
        if not device.host_path.startswith("/dev/"):
            problems.append(
                Problem(
                    ms.origin, ms.index, f"{where}.hostPath", f"expected a path under /dev, got {device.host_path!r}"
                )
            )
        if not device.permissions or set(device.permissions) - set("rwm"):
            problems.append(
                Problem(
                    ms.origin,
                    ms.index,
                    f"{where}.permissions",
                    f"expected letters of 'rwm', got {device.permissions!r}",
                )
            )
    for position, name in enumerate(container.cdi_devices):
        problem = name_problem(name)
        if problem:
            where = f"{ms.path}.container.cdiDevices[{position}]"
            problems.append(Problem(ms.origin, ms.index, where, f"{problem} (microservice {ms.name!r} is not run)"))
    cpuset = container.cpu_set_cpus
    if cpuset and not _CPUSET_RE.fullmatch(cpuset):
        problems.append(
            Problem(
                ms.origin,
                ms.index,
                f"{ms.path}.container.cpuSetCpus",
                f"expected a CPU list such as '0', '0-2' or '0,3', got {cpuset!r} (microservice {ms.name!r} is not run)",
            )
        )
    return problems


def device_arch(configured: str = "auto") -> str:
    """The device architecture: ``configured`` unless ``auto``, else this machine's (OCI names)."""
    if configured != "auto":
        return configured
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm/v7", "armv6l": "arm"}.get(machine, machine)


def image_field(arch: str) -> Literal["x86", "arm"]:
    """Which image field (``x86`` or ``arm``) a device of ``arch`` runs; a clear error otherwise."""
    field = ARCH_FIELDS.get(arch)
    if field is None:
        raise ResolveError(
            f"device architecture {arch!r} has no ioFog image field (x86 is amd64; arm is arm64 and arm/v7); "
            "set 'arch' in the agent config if the detection is wrong"
        )
    return field


@attrs.frozen
class ResolvedMicroservice:
    """A desired microservice ready for the engine: the spec, where its image comes from, and its hash."""

    name: str
    spec: WorkloadSpec
    """The spec without the hash labels (see :meth:`labelled`)."""
    auth: RegistryAuth | None
    policy: PullPolicy
    config_hash: str

    def labelled(self, digest: str | None) -> WorkloadSpec:
        """The spec with the hash labels set, for an image of ``digest``."""
        labels = dict(self.spec.labels)
        labels[CONFIG_HASH_LABEL] = self.config_hash
        labels[SPEC_HASH_LABEL] = spec_hash(self.config_hash, digest)
        if digest:
            labels[DIGEST_LABEL] = digest
        return attrs.evolve(self.spec, labels=labels)


def _canonical(value: Any) -> Any:
    if attrs.has(type(value)):
        return {f.name: _canonical(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


_LATER_FIELDS = (
    "user",
    "cpuset_cpus",
    "log_max_mib",
    "pid_mode",
    "ipc_mode",
    "devices",
    "annotations",
    "runtime",
    "hooks",
)
# WorkloadSpec fields hashed only when set: hashes from before they existed stay valid.


def config_hash(spec: WorkloadSpec, auth: RegistryAuth | None = None) -> str:
    """A hash over everything in ``spec`` that matters (labels aside) and the registry it pulls from.

    A microservice's ``rebuild`` flag is not part of the workload spec, so it is not
    in this hash: toggling it is never a spec change (see :func:`rebuild_request`).
    Spec fields added after workloads were already labelled (:data:`_LATER_FIELDS`)
    count only when set, so an agent upgrade leaves those workloads alone.
    """
    data = _canonical(spec)
    for name in _LATER_FIELDS:
        if data.get(name) in (None, [], {}):
            data.pop(name, None)
    data["labels"] = {k: v for k, v in data["labels"].items() if not k.startswith("io.fogwire.")}
    # How the image is reached (CA, insecure without credentials) changes no workload: not hashed.
    data["registry"] = [auth.server, auth.username, auth.insecure] if auth and auth.has_credentials else None
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:32]


def rebuild_request(ms: DesiredMicroservice) -> str | None:
    """The identity of the rebuild request ``ms`` carries, or ``None`` if it says ``rebuild: false``.

    ``rebuild: true`` asks for the image to be pulled again and the workload
    recreated once, even though nothing else changed. A request is this
    microservice *as delivered*: a hash of its name, application and whole
    document spec (``rebuild`` included). The same document delivered again (a
    periodic resync, a restart, ``rebuild: true`` left in a file) is the same
    request, done once; a changed document that still says ``rebuild: true`` is a
    new one. The reconciler records which request it last carried out.
    """
    if not ms.spec.rebuild:
        return None
    data = {"name": ms.name, "application": ms.application, "spec": _canonical(ms.spec)}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=_json_scalar)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:32]


def _json_scalar(value: Any) -> Any:
    # Enums by value; anything else YAML may hold in a free-form ``config`` (dates) as text.
    return value.value if isinstance(value, enum.Enum) else str(value)


def spec_hash(config: str, digest: str | None) -> str:
    """The hash of a configuration and the digest of its image (when known)."""
    return "sha256:" + hashlib.sha256(f"{config}@{digest or ''}".encode()).hexdigest()[:32]


def diff_fields(old: WorkloadSpec, new: WorkloadSpec) -> list[str]:
    """Names of the spec fields that differ (labels compared without fogwire's own)."""
    changed = []
    for field in attrs.fields(WorkloadSpec):
        a, b = _canonical(getattr(old, field.name)), _canonical(getattr(new, field.name))
        if field.name == "labels":
            a = {k: v for k, v in a.items() if not k.startswith("io.fogwire.")}
            b = {k: v for k, v in b.items() if not k.startswith("io.fogwire.")}
        if a != b:
            changed.append(field.name)
    return changed


def _registry(
    desired: DesiredState, ms: DesiredMicroservice, ref: int | str | None
) -> tuple[PullPolicy, RegistryAuth | None]:
    rid = registry_id(ref)
    if rid is None or rid not in desired.registries:
        raise ResolveError(f"microservice {ms.name!r}: unknown registry {ref!r}")
    if rid == LOCAL_REGISTRY_ID:
        return PullPolicy.NEVER, None
    if rid == REMOTE_REGISTRY_ID:
        return PullPolicy.PULL, None
    registry = desired.registries[rid]
    if registry.url == "from_cache":
        return PullPolicy.NEVER, None
    auth = None
    insecure = registry.insecure or registry.url.startswith("http://")
    ca_pem = registry.certificate if registry.requires_cert else None
    if registry.username or registry.password or insecure or ca_pem:
        server = registry.url.removeprefix("https://").removeprefix("http://").rstrip("/")
        auth = RegistryAuth(
            server=server,
            username=registry.username,
            password=registry.password,
            email=registry.email,
            insecure=insecure,
            ca_pem=ca_pem,
        )
    return PullPolicy.PULL, auth


def resolve(
    ms: DesiredMicroservice,
    desired: DesiredState,
    arch: str,
    *,
    default_log_mib: int | None = None,
    cdi_spec_dirs: Sequence[str] = DEFAULT_SPEC_DIRS,
) -> ResolvedMicroservice:
    """Turn one desired microservice into a :class:`ResolvedMicroservice`.

    ``default_log_mib`` bounds the log of a microservice that sets no ``logSize``
    (the agent's ``workloadLogSize``), so no workload's log grows without bound.
    ``cdiDevices`` are looked up in the CDI spec files of ``cdi_spec_dirs``
    (:mod:`fogwire.cdi`): their device nodes, mounts, env and hooks join the spec.

    Raises :class:`ResolveError` when it sets a container field fogwire doesn't
    support (:func:`unsupported_fields`), when no image fits ``arch`` or when its
    registry is unknown.
    """
    unsupported = unsupported_fields(ms)
    if unsupported:
        raise ResolveError("; ".join(str(p) for p in unsupported))
    images = ms.spec.images
    field = image_field(arch)
    registry_ref: int | str | None = images.registry
    if images.catalog_id is not None:
        item = desired.catalog.get(int(images.catalog_id))
        if item is None:
            raise ResolveError(f"microservice {ms.name!r}: no catalog item {images.catalog_id}")
        image = getattr(item, field)
        registry_ref = item.registry if images.registry is None else images.registry
        where = f"catalog item {images.catalog_id}"
    else:
        image = getattr(images, field)
        where = f"{ms.path}.images"
    if not image:
        raise ResolveError(f"microservice {ms.name!r}: {where} has no {field!r} image for this {arch} device; add one")
    policy, auth = _registry(desired, ms, registry_ref)
    c = ms.spec.container
    mounts = tuple(
        VolumeMount(
            source=v.host_destination,
            target=v.container_destination,
            kind="volume" if v.type is VolumeType.VOLUME else "bind",
            read_only=v.access_mode is AccessMode.RO,
        )
        for v in c.volumes
    )
    ports = tuple(PortMapping(p.internal, p.external, p.protocol.value) for p in c.ports)
    health = None
    if c.health_check is not None:
        h = c.health_check
        test = tuple(h.test)
        if test and test[0] not in ("CMD", "CMD-SHELL", "NONE"):
            test = ("CMD-SHELL", " ".join(test)) if len(test) == 1 else ("CMD", *test)
        health = HealthCheck(
            test=test,
            interval_s=float(h.interval if h.interval is not None else 30),
            timeout_s=float(h.timeout if h.timeout is not None else 30),
            start_period_s=float(h.start_period or 0),
            retries=h.retries if h.retries is not None else 3,
        )
    labels = {}
    if ms.application:
        labels["io.fogwire.application"] = ms.application
    spec = WorkloadSpec(
        name=ms.name,
        image=image,
        env={e.key: str(e.value) for e in c.env},
        command=tuple(c.commands),
        ports=ports,
        mounts=mounts,
        host_network=c.host_network_mode or c.root_host_access,
        privileged=c.is_privileged or c.root_host_access,
        extra_hosts={h.name: h.address for h in c.extra_hosts},
        labels=labels,
        restart=RestartPolicy("no"),
        memory_limit_mib=c.memory_limit,
        cap_add=tuple(c.cap_add),
        cap_drop=tuple(c.cap_drop),
        health_check=health,
        user=c.run_as_user or None,
        cpuset_cpus=c.cpu_set_cpus or None,
        log_max_mib=c.log_size if c.log_size is not None else default_log_mib,
        pid_mode="host" if c.pid_mode == "host" else None,
        ipc_mode="host" if c.ipc_mode == "host" else None,
        devices=tuple(DeviceMapping(d.host_path, d.container_path or d.host_path, d.permissions) for d in c.devices),
        annotations=dict(c.annotations or {}),
        runtime=c.runtime or None,
    )
    if c.cdi_devices:
        spec = _with_cdi_devices(ms, spec, cdi_spec_dirs)
    return ResolvedMicroservice(ms.name, spec, auth, policy, config_hash(spec, auth))


def _with_cdi_devices(ms: DesiredMicroservice, spec: WorkloadSpec, spec_dirs: Sequence[str]) -> WorkloadSpec:
    """``spec`` with the edits of ``ms``'s CDI devices (names already checked by :func:`unsupported_fields`)."""
    try:
        edits = resolve_devices(ms.spec.container.cdi_devices, spec_dirs)
    except CdiError as error:
        field = f"{ms.origin}:DOC#{ms.index}: {ms.path}.container.cdiDevices"
        raise ResolveError(f"{field}: {error} (microservice {ms.name!r} is not run)") from None
    return with_edits(spec, edits)
