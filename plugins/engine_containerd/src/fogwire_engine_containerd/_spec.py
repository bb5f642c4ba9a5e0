"""The OCI runtime spec the plugin generates for a workload (runc on Linux)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fogwire.engine import WorkloadSpec
from fogwire.errors import EngineError
from fogwire_engine_containerd._labels import SHIM_GROUP_ANNOTATION

SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
PROCESS_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: The capabilities a non-privileged container gets (Docker's and containerd's default set).
DEFAULT_CAPS = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

#: Every capability by number, for privileged containers (trimmed to the kernel's last cap).
ALL_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
    "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip

MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
)  # fmt: skip
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


def kernel_caps() -> tuple[str, ...]:
    """The capabilities a privileged workload can get: those in the agent's own bounding set.

    A sandboxed host (a container itself) may lack some; asking runc for them fails.
    """
    try:
        last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        last = len(ALL_CAPS) - 1
    bounding = (1 << (last + 1)) - 1
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapBnd:"):
                bounding = int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return tuple(cap for i, cap in enumerate(ALL_CAPS[: last + 1]) if bounding >> i & 1)


def swap_accounting() -> bool:
    """True if the kernel accounts swap per cgroup (runc fails to set a swap limit otherwise)."""
    return (
        Path("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
        or Path("/sys/fs/cgroup/cgroup.controllers").exists()
    )


def _cap_name(cap: str) -> str:
    cap = cap.strip().upper()
    return cap if cap.startswith("CAP_") or cap == "ALL" else f"CAP_{cap}"


def capabilities(spec: WorkloadSpec) -> list[str]:
    """The workload's capability set: default or all, plus ``cap_add``, minus ``cap_drop``."""
    known = kernel_caps()
    caps = list(known if spec.privileged else DEFAULT_CAPS)
    for cap in map(_cap_name, spec.cap_add):
        if cap == "ALL":
            caps = list(known)
        elif cap not in caps:
            if cap not in ALL_CAPS:
                raise EngineError(f"workload {spec.name!r}: unknown capability {cap!r} in cap_add")
            caps.append(cap)
    for cap in map(_cap_name, spec.cap_drop):
        caps = [] if cap == "ALL" else [c for c in caps if c != cap]
    return caps


def process_args(spec: WorkloadSpec, image_config: dict[str, Any]) -> list[str]:
    """Docker's rule: an entrypoint override drops the image's command too."""
    cfg = image_config.get("config") or {}
    if spec.entrypoint is not None:
        args = [*spec.entrypoint, *spec.command]
    else:
        args = [*(cfg.get("Entrypoint") or []), *(spec.command or cfg.get("Cmd") or [])]
    if not args:
        raise EngineError(f"workload {spec.name!r}: no command: the image has none and the spec gives none")
    return args


def process_env(spec: WorkloadSpec, image_config: dict[str, Any]) -> list[str]:
    """Image env, then the spec's (which wins), with a default PATH."""
    env: dict[str, str] = {}
    for item in (image_config.get("config") or {}).get("Env") or [DEFAULT_PATH]:
        key, _, value = item.partition("=")
        env[key] = value
    env.setdefault("PATH", DEFAULT_PATH.partition("=")[2])
    env.update(spec.env)
    return [f"{k}={v}" for k, v in env.items()]


def workload_user(spec: WorkloadSpec, image_config: dict[str, Any]) -> str:
    """The user the workload runs as: the spec's ``user`` when set, else the image's ``User`` (may be empty)."""
    if spec.user:
        return spec.user
    return str((image_config.get("config") or {}).get("User") or "")


def user_ids(spec: WorkloadSpec, image_config: dict[str, Any]) -> tuple[int, int]:
    """The numeric ``uid:gid`` of :func:`workload_user`; ``0:0`` while a name in it awaits resolution.

    Names (and a bare uid, whose gid comes from ``/etc/passwd``) are resolved
    from the image's own files once its snapshot exists (:mod:`._users`), and
    the container's spec is updated then.
    """
    user = workload_user(spec, image_config)
    uid_s, _, gid_s = user.partition(":")
    try:
        uid = int(uid_s) if uid_s else 0
        gid = int(gid_s) if gid_s else 0
    except ValueError:
        return 0, 0
    return uid, gid


def build_spec(
    spec: WorkloadSpec,
    image_config: dict[str, Any],
    *,
    namespace: str,
    mounts: list[dict[str, Any]],
    host_files: dict[str, Path],
    cgroup_parent: str,
    shim_group: str = "",
) -> dict[str, Any]:
    """The runtime spec for ``spec``; ``mounts`` are the workload's resolved binds/volumes.

    ``host_files`` maps ``/etc/hosts`` and ``/etc/resolv.conf`` (and ``/etc/hostname``)
    to files the plugin writes for the workload.
    """
    cfg = image_config.get("config") or {}
    caps = capabilities(spec)
    uid, gid = user_ids(spec, image_config)
    privileged = spec.privileged
    ro = [] if privileged else ["ro"]
    oci_mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", *ro]},
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", *ro],
        },
    ]
    for target, source in host_files.items():
        oci_mounts.append({"destination": target, "type": "bind", "source": str(source), "options": ["rbind", "rw"]})
    oci_mounts.extend(mounts)
    namespaces = [{"type": "mount"}]
    if spec.pid_mode != "host":
        namespaces.append({"type": "pid"})
    if spec.ipc_mode != "host":
        namespaces.append({"type": "ipc"})
    if not spec.host_network:
        namespaces += [{"type": "uts"}, {"type": "network"}]
    resources: dict[str, Any] = {
        "devices": [{"allow": True, "access": "rwm"}] if privileged else [{"allow": False, "access": "rwm"}]
    }
    oci_devices = []
    for device in spec.devices:
        node = host_device(device.host_path)
        oci_devices.append({"path": device.container_path, **node})
        if not privileged:
            resources["devices"].append(
                {
                    "allow": True,
                    "type": node["type"],
                    "major": node["major"],
                    "minor": node["minor"],
                    "access": device.permissions,
                }
            )
    if spec.memory_limit_mib:
        limit = int(spec.memory_limit_mib) * 1024 * 1024
        # memory+swap = the limit (no swap), as the other engines do, where the kernel accounts swap
        resources["memory"] = {"limit": limit, "swap": limit} if swap_accounting() else {"limit": limit}
    cpu: dict[str, Any] = {}
    if spec.cpu_limit:
        period = 100_000
        cpu.update(quota=max(1000, int(spec.cpu_limit * period)), period=period)
    if spec.cpuset_cpus:
        cpu["cpus"] = spec.cpuset_cpus
    if cpu:
        resources["cpu"] = cpu
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "resources": resources,
        "cgroupsPath": f"{cgroup_parent}/{namespace}/{spec.name}",
    }
    if oci_devices:
        linux["devices"] = oci_devices
    if not privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
    out: dict[str, Any] = {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": gid},
            "args": process_args(spec, image_config),
            "env": process_env(spec, image_config),
            "cwd": cfg.get("WorkingDir") or "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": False,
        },
        "root": {"path": "rootfs", "readonly": False},
        "mounts": oci_mounts,
        "linux": linux,
        # one runc shim serves every workload of a group (fewer processes, faster starts)
        "annotations": {**spec.annotations, **({SHIM_GROUP_ANNOTATION: shim_group} if shim_group else {})},
    }
    if not spec.host_network:
        out["hostname"] = spec.name
    if spec.hooks:
        hooks: dict[str, list[dict[str, Any]]] = {}
        for hook in spec.hooks:
            entry: dict[str, Any] = {"path": hook.path, "args": list(hook.args) or [hook.path]}
            if hook.env:
                entry["env"] = list(hook.env)
            if hook.timeout is not None:
                entry["timeout"] = hook.timeout
            hooks.setdefault(hook.hook_name, []).append(entry)
        out["hooks"] = hooks
    return out


def host_device(path: str) -> dict[str, Any]:
    """The OCI device entry fields (type, major, minor, mode, owner) of the host's device node ``path``."""
    import stat

    try:
        info = os.stat(path)
    except OSError as error:
        raise EngineError(f"device {path}: {error.strerror or error}") from error
    if stat.S_ISCHR(info.st_mode):
        kind = "c"
    elif stat.S_ISBLK(info.st_mode):
        kind = "b"
    else:
        raise EngineError(f"device {path} is not a character or block device")
    return {
        "type": kind,
        "major": os.major(info.st_rdev),
        "minor": os.minor(info.st_rdev),
        "fileMode": stat.S_IMODE(info.st_mode),
        "uid": info.st_uid,
        "gid": info.st_gid,
    }


def exec_process(args: list[str], base: dict[str, Any]) -> bytes:
    """A runtime-spec ``Process`` for ``Tasks.Exec``, inheriting env/user/cwd/caps of ``base``."""
    proc = dict(base["process"])
    proc["args"] = args
    proc["terminal"] = False
    return json.dumps(proc).encode()
