"""Container Device Interface (CDI): device names resolved into what a workload gets.

A microservice's ``cdiDevices`` (``vendor.com/class=name``, as edgelet and the
controller send them) name devices that CDI spec files describe: JSON or YAML files
in the spec directories (``/etc/cdi``, then ``/var/run/cdi``; for the same device a
later directory wins, as the CDI spec says). Each device, and its spec's top level,
carries container edits: environment variables, device nodes, mounts and OCI hooks.
:func:`resolve_devices` reads the directories (at resolve time: nothing is kept in
the idle daemon) and merges the edits of the named devices; the agent puts them into
the workload spec, and an engine that can't run OCI hooks refuses a device with one.

A spec's top-level edits are applied once however many of its devices are asked
for, before the first one's own (as the CDI reference implementation does); a device
node or mount replaces an earlier one at the same container path. Unknown fields are
ignored (the CDI spec grows); a field of the wrong shape is an error naming the file
and the field's path, and an unknown device names the devices that are known. Edits
the CDI spec defines but fogwire can't make (``additionalGids``, ``intelRdt``,
``netDevices``, a mount that is not a bind mount) are never dropped: a device needing
one is refused, naming the file and the field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import yaml

from fogwire.engine import DeviceMapping, OciHook, VolumeMount, WorkloadSpec
from fogwire.errors import FogwireError

DEFAULT_SPEC_DIRS = ("/etc/cdi", "/var/run/cdi")
"""Where CDI spec files live, lowest priority first."""

_PART = r"[A-Za-z](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?"  # a vendor or a class, as CDI's parser takes them
_KIND_RE = re.compile(rf"{_PART}/{_PART}")
_NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.:-]*[A-Za-z0-9])?")
HOOK_NAMES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a fully qualified CDI device name (``vendor.com/class=name``), or ``None``."""
    kind, equals, device = name.partition("=")
    if equals and _KIND_RE.fullmatch(kind) and _NAME_RE.fullmatch(device):
        return None
    return f"expected a qualified CDI device name (vendor.com/class=name), got {name!r}"


class CdiError(FogwireError):
    """A CDI spec file that can't be read, or a device name that resolves to nothing."""


@attrs.frozen
class CdiDeviceNode:
    """A device node the workload gets at ``path`` (from ``host_path``, the same path when empty)."""

    path: str
    host_path: str = ""
    permissions: str = "rwm"


@attrs.frozen
class CdiMount:
    """A bind mount of ``host_path`` at ``container_path`` (``read_only`` from the ``ro`` option)."""

    host_path: str
    container_path: str
    read_only: bool = False


@attrs.frozen
class ContainerEdits:
    """What a set of CDI devices adds to a workload."""

    env: tuple[str, ...] = ()
    device_nodes: tuple[CdiDeviceNode, ...] = ()
    mounts: tuple[CdiMount, ...] = ()
    hooks: tuple[OciHook, ...] = ()
    unapplied: tuple[str, ...] = ()
    """Edits the spec asks for that fogwire can't make, each as ``file: field path`` (their device is refused)."""

    def __add__(self, other: ContainerEdits) -> ContainerEdits:
        return ContainerEdits(
            self.env + other.env,
            self.device_nodes + other.device_nodes,
            self.mounts + other.mounts,
            self.hooks + other.hooks,
            self.unapplied + other.unapplied,
        )


class _Reader:
    """Reads one spec file's fields, raising :class:`CdiError` with the file and the path of a bad one."""

    def __init__(self, file: Path) -> None:
        self.file = file

    def fail(self, path: str, expected: str, got: Any) -> CdiError:
        return CdiError(f"CDI spec {self.file}: {path}: expected {expected}, got {got!r}")

    def mapping(self, value: Any, path: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, "a mapping", value)
        return value

    def items(self, value: Any, path: str) -> Sequence[Any]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(path, "a list", value)
        return value

    def text(self, value: Any, path: str, *, required: bool = True) -> str:
        if value is None and not required:
            return ""
        if not isinstance(value, str) or (required and not value):
            raise self.fail(path, "a non-empty string" if required else "a string", value)
        return value

    def strings(self, value: Any, path: str) -> tuple[str, ...]:
        return tuple(self.text(v, f"{path}[{i}]") for i, v in enumerate(self.items(value, path)))

    def edits(self, value: Any, path: str) -> ContainerEdits:
        if value is None:
            return ContainerEdits()
        edits = self.mapping(value, path)
        env = self.strings(edits.get("env"), f"{path}.env")
        for i, entry in enumerate(env):
            if "=" not in entry:
                raise self.fail(f"{path}.env[{i}]", "KEY=VALUE", entry)
        nodes = []
        for i, raw in enumerate(self.items(edits.get("deviceNodes"), f"{path}.deviceNodes")):
            where = f"{path}.deviceNodes[{i}]"
            node = self.mapping(raw, where)
            container_path = self.text(node.get("path"), f"{where}.path")
            host_path = self.text(node.get("hostPath"), f"{where}.hostPath", required=False)
            permissions = self.text(node.get("permissions"), f"{where}.permissions", required=False) or "rwm"
            if not set(permissions) <= set("rwm"):
                raise self.fail(f"{where}.permissions", "letters of 'rwm'", permissions)
            nodes.append(CdiDeviceNode(container_path, host_path, permissions))
        unapplied = [f"{self.file}: {path}.{key}" for key in ("intelRdt", "netDevices") if edits.get(key)]
        for key in ("additionalGids", "additionalGIDs"):  # Go's decoder takes either spelling
            if any(self.items(edits.get(key), f"{path}.{key}")):  # a gid of 0 is ignored, as CDI says
                unapplied.append(f"{self.file}: {path}.{key}")
        mounts = []
        for i, raw in enumerate(self.items(edits.get("mounts"), f"{path}.mounts")):
            where = f"{path}.mounts[{i}]"
            mount = self.mapping(raw, where)
            options = self.strings(mount.get("options"), f"{where}.options")
            kind = self.text(mount.get("type"), f"{where}.type", required=False)
            if kind not in ("", "bind", "none") and not {"bind", "rbind"} & set(options):
                unapplied.append(f"{self.file}: {where}.type ({kind!r}: fogwire makes bind mounts only)")
            mounts.append(
                CdiMount(
                    self.text(mount.get("hostPath"), f"{where}.hostPath"),
                    self.text(mount.get("containerPath"), f"{where}.containerPath"),
                    "ro" in options,
                )
            )
        hooks = []
        for i, raw in enumerate(self.items(edits.get("hooks"), f"{path}.hooks")):
            where = f"{path}.hooks[{i}]"
            hook = self.mapping(raw, where)
            name = self.text(hook.get("hookName"), f"{where}.hookName")
            if name not in HOOK_NAMES:
                raise self.fail(f"{where}.hookName", f"one of {', '.join(HOOK_NAMES)}", name)
            if not self.text(hook.get("path"), f"{where}.path").startswith("/"):
                raise self.fail(f"{where}.path", "an absolute path", hook.get("path"))
            timeout = hook.get("timeout")
            if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0):
                raise self.fail(f"{where}.timeout", "a positive number of seconds", timeout)
            hooks.append(
                OciHook(
                    name,
                    self.text(hook.get("path"), f"{where}.path"),
                    self.strings(hook.get("args"), f"{where}.args"),
                    self.strings(hook.get("env"), f"{where}.env"),
                    timeout,
                )
            )
        return ContainerEdits(env, tuple(nodes), tuple(mounts), tuple(hooks), tuple(unapplied))


def _load_file(file: Path) -> tuple[str, ContainerEdits, dict[str, ContainerEdits]]:
    """``(kind, the spec-wide edits, each device's edits)`` of one spec file."""
    reader = _Reader(file)
    try:
        data = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise CdiError(f"CDI spec {file}: cannot be read: {error}") from None
    spec = reader.mapping(data, "(top)")
    reader.text(spec.get("cdiVersion"), "cdiVersion")
    kind = reader.text(spec.get("kind"), "kind")
    if not _KIND_RE.fullmatch(kind):
        raise reader.fail("kind", "vendor.com/class", kind)
    devices: dict[str, ContainerEdits] = {}
    raw_devices = reader.items(spec.get("devices"), "devices")
    if not raw_devices:
        raise reader.fail("devices", "at least one device", spec.get("devices"))
    for i, raw in enumerate(raw_devices):
        device = reader.mapping(raw, f"devices[{i}]")
        name = reader.text(device.get("name"), f"devices[{i}].name")
        if not _NAME_RE.fullmatch(name):
            raise reader.fail(f"devices[{i}].name", "a device name (letters, digits, _ . : -)", name)
        if "containerEdits" not in device:
            raise reader.fail(f"devices[{i}].containerEdits", "the device's edits", None)
        devices[name] = reader.edits(device.get("containerEdits"), f"devices[{i}].containerEdits")
    return kind, reader.edits(spec.get("containerEdits"), "containerEdits"), devices


@attrs.frozen
class _Device:
    """One device as its spec file defines it: the file, its spec's top-level edits and its own."""

    file: Path
    common: ContainerEdits
    own: ContainerEdits


def _load_devices(spec_dirs: Iterable[str | Path]) -> dict[str, _Device]:
    devices: dict[str, _Device] = {}
    for directory in spec_dirs:
        folder = Path(directory)
        if not folder.is_dir():
            continue
        for file in sorted(p for p in folder.iterdir() if p.suffix in (".json", ".yaml") and p.is_file()):
            kind, common, own = _load_file(file)
            for name, edits in own.items():
                devices[f"{kind}={name}"] = _Device(file, common, edits)
    return devices


def load_registry(spec_dirs: Iterable[str | Path]) -> dict[str, ContainerEdits]:
    """Every device the spec files (``*.json``, ``*.yaml``) in ``spec_dirs`` define, by qualified name (``kind=name``).

    A device's edits include its spec's top-level edits. A missing directory is
    skipped; a later directory (and a later file in one) replaces a device defined
    earlier.
    """
    return {name: device.common + device.own for name, device in _load_devices(spec_dirs).items()}


def resolve_devices(names: Sequence[str], spec_dirs: Iterable[str | Path]) -> ContainerEdits:
    """The merged edits of the qualified device ``names``, in order, each spec's top-level edits once.

    :class:`CdiError` names an unknown device (and the known ones), or a device
    whose edits fogwire can't make (:attr:`ContainerEdits.unapplied`).
    """
    if not names:
        return ContainerEdits()
    known = _load_devices(spec_dirs)
    edits = ContainerEdits()
    files: set[Path] = set()
    for name in dict.fromkeys(names):
        device = known.get(name)
        if device is None:
            kind = name.partition("=")[0]
            where = "" if any(k.startswith(f"{kind}=") for k in known) else f"; no spec file defines kind {kind!r}"
            listed = ", ".join(sorted(known)) or "none"
            raise CdiError(f"no CDI device {name!r} in the spec directories{where} (known: {listed})")
        if device.file not in files:
            files.add(device.file)
            edits = edits + device.common
        edits = edits + device.own
    if edits.unapplied:
        raise CdiError(f"fogwire can't make these CDI edits (the device is not used): {'; '.join(edits.unapplied)}")
    return edits


def with_edits(spec: WorkloadSpec, edits: ContainerEdits) -> WorkloadSpec:
    """``spec`` with CDI ``edits`` added: device nodes, bind mounts, env and hooks.

    As CDI applies edits, a device node or mount replaces one already at the same
    container path; the spec's own env wins over a device's (a microservice may
    override what a vendor sets).
    """
    nodes = {n.path: DeviceMapping(n.host_path or n.path, n.path, n.permissions) for n in edits.device_nodes}
    mounts = {m.container_path: VolumeMount(m.host_path, m.container_path, read_only=m.read_only) for m in edits.mounts}
    env = dict(entry.split("=", 1) for entry in edits.env)
    return attrs.evolve(
        spec,
        env={**env, **spec.env},
        devices=tuple(d for d in spec.devices if d.container_path not in nodes) + tuple(nodes.values()),
        mounts=tuple(m for m in spec.mounts if m.target not in mounts) + tuple(mounts.values()),
        hooks=spec.hooks + edits.hooks,
    )
