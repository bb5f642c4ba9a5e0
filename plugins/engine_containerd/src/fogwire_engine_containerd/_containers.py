"""Creating a containerd workload: its OCI spec, host files, mounts, labels, snapshot and user.

:class:`ContainerBuilder` turns a :class:`~fogwire.engine.WorkloadSpec` into a containerd
container with its snapshot prepared, or leaves nothing behind. Everything it needs
is handed to it: the client and image store (they exist once the engine started),
the engine's options, and where the workloads' files and volumes live.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
from google.protobuf import any_pb2, field_mask_pb2

from fogwire.dockerapi import log_file_kib
from fogwire.engine import MANAGED_LABEL, NAME_LABEL, WorkloadSpec
from fogwire.errors import EngineError, ImageNotFoundError
from fogwire_engine_containerd._client import Client, RpcError, StatusCode, containers_pb2, snapshots_pb2
from fogwire_engine_containerd._images import ImageStore
from fogwire_engine_containerd._labels import (
    ID_RE,
    L_HEALTH,
    L_IMAGE_ID,
    L_IMAGE_REF,
    L_LOG_KIB,
    L_NETWORK,
    L_PORTS,
    L_RESTART,
    L_RUNTIME,
    RUNTIME,
)
from fogwire_engine_containerd._options import ContainerdOptions
from fogwire_engine_containerd._spec import SPEC_TYPE_URL, build_spec, workload_user
from fogwire_engine_containerd._users import layer_dirs, needs_lookup, resolve_user


class ContainerBuilder:
    """Builds the agent's containers (see the module docstring).

    :param client: the engine's started client.
    :param images: the engine's image store.
    :param options: the engine's options (namespace, snapshotter, cgroup parent, shim groups).
    :param agent_id: the agent's id, the value of the managed label.
    :param managed_labels: the labels every managed workload carries.
    :param shim_group: the shim group name (empty: a shim per workload).
    :param files_dir: where each workload's ``/etc/hosts``, ``resolv.conf`` and ``hostname`` live.
    :param volumes_dir: where named volumes live.
    """

    def __init__(
        self,
        *,
        client: Callable[[], Client],
        images: Callable[[], ImageStore],
        options: ContainerdOptions,
        agent_id: str,
        managed_labels: Mapping[str, str],
        shim_group: str,
        files_dir: Path,
        volumes_dir: Path,
    ) -> None:
        self._client = client
        self._images = images
        self.namespace = options.namespace
        self.snapshotter = options.snapshotter
        self.cgroup_parent = options.cgroup_parent
        self.shim_group = shim_group
        self.shim_groups = options.shim_groups if options.shim_group is True else 1
        self._next_shim = itertools.count()
        self.agent_id = agent_id
        self.managed_labels = dict(managed_labels)
        self.files_dir = files_dir
        self.volumes_dir = volumes_dir
        self.runtimes = dict(options.runtimes)

    def resolve_mounts(self, spec: WorkloadSpec) -> list[dict[str, Any]]:
        out = []
        for m in spec.mounts:
            if m.kind == "volume":
                if not ID_RE.match(m.source):
                    raise EngineError(f"workload {spec.name!r}: invalid volume name {m.source!r}")
                source = self.volumes_dir / m.source / "_data"
                source.mkdir(parents=True, exist_ok=True)
            else:
                source = Path(m.source)
                if not source.is_absolute() or not source.exists():
                    raise EngineError(
                        f"workload {spec.name!r}: bind mount source {m.source!r} does not exist "
                        "(it must be an absolute host path)"
                    )
            opts = ["rbind", "ro" if m.read_only else "rw"]
            out.append({"destination": m.target, "type": "bind", "source": str(source), "options": opts})
        return out

    def host_files(self, spec: WorkloadSpec) -> dict[str, Path]:
        d = self.files_dir / spec.name
        d.mkdir(parents=True, exist_ok=True)
        hosts = d / "hosts"
        resolv = d / "resolv.conf"
        try:
            resolv_text = Path("/etc/resolv.conf").read_text()
        except OSError:
            resolv_text = ""
        resolv.write_text(resolv_text)
        if spec.host_network:
            try:
                base = Path("/etc/hosts").read_text()
            except OSError:
                base = "127.0.0.1\tlocalhost\n"
        else:
            base = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        extra = "".join(f"{ip}\t{host}\n" for host, ip in spec.extra_hosts.items())
        hosts.write_text(base + extra)
        files = {"/etc/hosts": hosts, "/etc/resolv.conf": resolv}
        if not spec.host_network:
            hostname = d / "hostname"
            hostname.write_text(spec.name + "\n")
            files["/etc/hostname"] = hostname
        return files

    def runtime_binary(self, spec: WorkloadSpec) -> str | None:
        """The binary of the OCI runtime ``spec`` names (``None``: runc, the default); refused when unknown."""
        if spec.runtime in (None, "", "runc"):
            return None
        binary = self.runtimes.get(spec.runtime)
        if binary is None:
            known = ", ".join(["runc", *sorted(self.runtimes)])
            raise EngineError(
                f"workload {spec.name!r}: the containerd engine has no OCI runtime {spec.runtime!r} (field runtime; "
                f"known: {known}); add it to engineOptions.runtimes as name: binary"
            )
        resolved = shutil.which(binary)
        if resolved is None:
            raise EngineError(
                f"workload {spec.name!r}: OCI runtime {spec.runtime!r} is {binary!r}, which is not an executable here"
            )
        return resolved

    def build(self, spec: WorkloadSpec, image_name: str) -> tuple[Any, list[Any]]:
        """Create the container and its snapshot (blocking); return it with the snapshot's mounts.

        The container first, then its snapshot: the container's reference keeps
        containerd's GC off the snapshot from the moment it exists (no lease needed).
        Anything created is removed again when a later step fails.
        """
        c = self._client()
        runtime_binary = self.runtime_binary(spec)
        files_existed = (self.files_dir / spec.name).exists()
        if files_existed:  # an earlier create of this name: don't rewrite the files of a container that may run
            with contextlib.suppress(RpcError):
                got = c.containers.Get(containers_pb2.GetContainerRequest(id=spec.name), metadata=c.md(), timeout=30)
                raise self.name_taken(spec.name, got.container)
        image = self._images().get(image_name)
        if image is None:
            raise ImageNotFoundError(
                f"workload {spec.name!r}: image {spec.image!r} is not present; pull or load it first"
            )
        config = self._images().config(image)
        image_id = self._images().config_digest(image)
        chain = self._images().top_chain(image)
        runtime_spec = build_spec(
            spec,
            config,
            namespace=self.namespace,
            mounts=self.resolve_mounts(spec),
            host_files=self.host_files(spec),
            cgroup_parent=self.cgroup_parent,
            shim_group=self.next_shim_group(),
        )
        labels = {
            **spec.labels,
            **self.managed_labels,
            NAME_LABEL: spec.name,
            L_IMAGE_REF: spec.image,
            L_IMAGE_ID: image_id,
            L_RESTART: f"{spec.restart.name}:{spec.restart.max_retries}",
            L_NETWORK: "host" if spec.host_network else "bridge",
        }
        if spec.ports:
            labels[L_PORTS] = json.dumps([attrs.asdict(p) for p in spec.ports], separators=(",", ":"))
        file_kib = log_file_kib(spec)
        if file_kib is not None:
            labels[L_LOG_KIB] = str(file_kib)
        if runtime_binary is not None:
            labels[L_RUNTIME] = runtime_binary
        if spec.health_check is not None:
            labels[L_HEALTH] = json.dumps(attrs.asdict(spec.health_check), separators=(",", ":"))
        container = containers_pb2.Container(
            id=spec.name,
            labels=labels,
            image=image_name,
            runtime=containers_pb2.Container.Runtime(name=RUNTIME),
            spec=any_pb2.Any(type_url=SPEC_TYPE_URL, value=json.dumps(runtime_spec).encode()),
            snapshotter=self.snapshotter,
            snapshot_key=spec.name,
        )
        try:
            created = c.containers.Create(
                containers_pb2.CreateContainerRequest(container=container), metadata=c.md(), timeout=30
            ).container
        except RpcError as error:
            if error.code() is StatusCode.ALREADY_EXISTS:
                if not files_existed:
                    import shutil  # only here: it pulls in bz2/lzma

                    shutil.rmtree(self.files_dir / spec.name, ignore_errors=True)
                raise self.name_taken(spec.name) from error
            raise
        prepare = snapshots_pb2.PrepareSnapshotRequest(snapshotter=self.snapshotter, key=spec.name, parent=chain)
        try:
            try:
                prepared = c.snapshots.Prepare(prepare, metadata=c.md(), timeout=60)
            except RpcError as error:
                if error.code() is not StatusCode.ALREADY_EXISTS:
                    raise
                self.remove_snapshot(spec.name)  # left over from a crashed create
                prepared = c.snapshots.Prepare(prepare, metadata=c.md(), timeout=60)
        except RpcError:
            with contextlib.suppress(RpcError):
                c.containers.Delete(containers_pb2.DeleteContainerRequest(id=spec.name), metadata=c.md(), timeout=30)
            raise
        user = workload_user(spec, config)
        if needs_lookup(user):
            try:
                created = self._set_named_user(created, runtime_spec, user, prepared.mounts)
            except (EngineError, RpcError) as error:
                with contextlib.suppress(RpcError):
                    c.containers.Delete(
                        containers_pb2.DeleteContainerRequest(id=spec.name), metadata=c.md(), timeout=30
                    )
                self.remove_snapshot(spec.name)
                import shutil  # only here: it pulls in bz2/lzma

                shutil.rmtree(self.files_dir / spec.name, ignore_errors=True)
                if isinstance(error, EngineError):
                    whose = f"user {spec.user!r} of the spec" if spec.user else "the image's User"
                    raise EngineError(f"workload {spec.name!r} (image {spec.image!r}, {whose}): {error}") from error
                raise
        return created, list(prepared.mounts)

    def _set_named_user(self, container: Any, runtime_spec: dict[str, Any], user: str, mounts: Any) -> Any:
        """Resolve ``user`` (the spec's or the image's) in the snapshot's files; store the numeric ids in the spec."""
        resolved = resolve_user(user, layer_dirs(mounts))
        process_user: dict[str, Any] = {"uid": resolved.uid, "gid": resolved.gid}
        if resolved.additional_gids:
            process_user["additionalGids"] = list(resolved.additional_gids)
        runtime_spec["process"]["user"] = process_user
        container.spec.value = json.dumps(runtime_spec).encode()
        c = self._client()
        return c.containers.Update(
            containers_pb2.UpdateContainerRequest(
                container=container, update_mask=field_mask_pb2.FieldMask(paths=["spec"])
            ),
            metadata=c.md(),
            timeout=30,
        ).container

    def name_taken(self, name: str, existing: Any | None = None) -> EngineError:
        """The error for creating ``name`` when a container of that name exists, saying whose it is."""
        if existing is None:
            try:
                existing = (
                    self._client()
                    .containers.Get(
                        containers_pb2.GetContainerRequest(id=name), metadata=self._client().md(), timeout=30
                    )
                    .container
                )
            except RpcError:
                return EngineError(f"a container named {name!r} already exists; remove it or choose another name")
        whose = "this agent" if existing.labels.get(MANAGED_LABEL) == self.agent_id else "another owner"
        return EngineError(
            f"a container named {name!r} already exists (managed by {whose}); remove it or choose another name"
        )

    def next_shim_group(self) -> str:
        """The shim group of a workload being created: round robin over ``shim_groups`` shims.

        One runc shim creates its tasks one at a time (it holds its lock across
        ``runc create``), so a single shim for every workload serialises
        concurrent starts; a few shims keep most of the saving in processes.
        """
        if not self.shim_group or self.shim_groups == 1:
            return self.shim_group
        return f"{self.shim_group}-{next(self._next_shim) % self.shim_groups}"

    def remove_snapshot(self, key: str) -> None:
        """Remove snapshot ``key`` if it exists (blocking)."""
        with contextlib.suppress(RpcError):
            self._client().snapshots.Remove(
                snapshots_pb2.RemoveSnapshotRequest(snapshotter=self.snapshotter, key=key),
                metadata=self._client().md(),
                timeout=60,
            )
