"""The ``containerd`` engine's options (``engineOptions`` in the agent config), as a model.

Light on purpose (attrs and fogwire only): the entry-point module registers the
class with the core converter, and the engine reads its options through it, so a
misspelt key or a bad value is a validation error with its path, not ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs
import cattrs

from fogwire.convert import PositiveInt, ValueProblem, structure_options
from fogwire_engine_containerd._logs import DEFAULT_MAX_BYTES, DEFAULT_MAX_FILES

DEFAULT_SOCKET = "/run/containerd/containerd.sock"
"""containerd's own socket: used when it answers and no ``containerEngineUrl`` is set."""
DEFAULT_SHIM_GROUPS = 4
"""How many runc shims the agent's workloads are spread over (one shim serialises starts)."""

Embedded = bool | Literal["auto"]
"""``"auto"``: use containerd's socket if it answers, else start our own; ``true``: always our own; ``false``: never."""
ShimGroup = bool | str
"""``true``: spread over ``shimGroups`` shims; ``false``: a shim per workload; a string: one shim of that name."""


@attrs.frozen
class ContainerdOptions:
    """Every key of the engine's ``engineOptions``, with its default (see docs/engines.md)."""

    namespace: str = "fogwire"
    snapshotter: str = "overlayfs"
    embedded: Embedded = "auto"
    containerd_binary: str = "containerd"
    socket: str = DEFAULT_SOCKET
    cni_bin_dir: str = "/usr/lib/cni"
    cni_bridge: str = "fogwire0"
    cni_subnet: str = "10.71.0.0/16"
    cgroup_parent: str = "/fogwire"
    shim_group: ShimGroup = True
    shim_groups: PositiveInt = PositiveInt(DEFAULT_SHIM_GROUPS)
    start_timeout_s: float = 30.0
    log_max_bytes: PositiveInt = PositiveInt(DEFAULT_MAX_BYTES)
    log_max_files: PositiveInt = PositiveInt(DEFAULT_MAX_FILES)
    runtimes: Mapping[str, str] = attrs.field(factory=dict)
    """OCI runtimes a microservice's ``runtime`` may name, each a runc-compatible binary (``runc`` is built in)."""
    grpc_max_receive_bytes: PositiveInt = PositiveInt(4 * 1024 * 1024)
    """The largest message accepted from containerd (gRPC's default; a larger one fails its call)."""
    storage_root: str = "/var/lib/containerd"
    """An external containerd's root (the embedded one's is under the agent's data dir), for disk-pressure pruning."""


def _embedded(value: Any, _: Any) -> Embedded:
    if isinstance(value, bool) or value == "auto":
        return value  # type: ignore[no-any-return]
    raise ValueProblem(f"expected true, false or 'auto', got {value!r}")


def _shim_group(value: Any, _: Any) -> ShimGroup:
    if isinstance(value, bool) or (isinstance(value, str) and value):
        return value
    raise ValueProblem(f"expected true, false or a shim name, got {value!r}")


def configure(converter: cattrs.Converter) -> None:
    """Teach ``converter`` the union-typed options (the rest is core's strict scalars)."""
    converter.register_structure_hook(Embedded, _embedded)
    converter.register_structure_hook(ShimGroup, _shim_group)


def read_options(converter: cattrs.Converter, options: Any) -> ContainerdOptions:
    """``engineOptions`` as :class:`ContainerdOptions`, or a ConfigError naming every bad key."""
    configure(converter)  # idempotent; a converter made without the plugin's hook gets it here
    return structure_options(converter, options, ContainerdOptions, plugin="containerd")
