"""Bringing images into containerd's stores: content, snapshots and the image store.

Long on purpose: pull and archive import share one content/snapshot pipeline
(leases, unpack, users); split, each half would reimplement its ordering.

Used for registry pulls and archive imports alike: blobs are written with
``Content.Write`` under a lease (digest checked on both sides), layers unpacked
with ``Snapshots.Prepare`` + ``Diff.Apply`` + ``Snapshots.Commit``, and only when
everything is in place is the image record created. A failure at any point leaves
no image behind; the lease's deletion lets containerd collect the partial content.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from fogwire.errors import EngineError, ImageNotFoundError
from fogwire_engine_containerd import _ref
from fogwire_engine_containerd._client import (
    Client,
    RpcError,
    StatusCode,
    content_pb2,
    details,
    diff_pb2,
    images_pb2,
    is_not_found,
    leases_pb2,
    snapshots_pb2,
    types_pb2,
)
from fogwire_engine_containerd._platform import INDEX_TYPES, MANIFEST_TYPES, MT_DOCKER_MANIFEST, pick_platform

if TYPE_CHECKING:
    import tarfile

CHUNK = 1024 * 1024
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
IMAGE_NAME_ANNOTATION = "io.containerd.image.name"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"


def sha256(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def chain_ids(diff_ids: Iterable[str]) -> list[str]:
    """The snapshot chain IDs of a layer stack (OCI image spec's ChainID)."""
    out: list[str] = []
    for diff_id in diff_ids:
        out.append(diff_id if not out else sha256(f"{out[-1]} {diff_id}".encode()))
    return out


class Lease:
    """A containerd lease that expires by itself if we crash, deleted on exit."""

    def __init__(self, client: Client, ttl_s: float = 3600) -> None:
        self.client = client
        self.id = f"fogwire-{os.urandom(16).hex()}"
        expire = (datetime.now(UTC) + timedelta(seconds=ttl_s)).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.labels = {"containerd.io/gc.expire": expire}

    def __enter__(self) -> str:
        self.client.leases.Create(
            leases_pb2.CreateRequest(id=self.id, labels=self.labels), metadata=self.client.md(), timeout=30
        )
        return self.id

    def __exit__(self, *exc: object) -> None:
        try:
            self.client.leases.Delete(leases_pb2.DeleteRequest(id=self.id), metadata=self.client.md(), timeout=30)
        except RpcError:
            pass  # the gc.expire label lets containerd drop it later


class ImageStore:
    """Image operations on one containerd namespace (blocking; call from a thread)."""

    def __init__(self, client: Client, snapshotter: str = "overlayfs") -> None:
        self.client = client
        self.snapshotter = snapshotter
        self._config_of: dict[str, str] = {}
        self._configs: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ content

    def has_blob(self, digest: str) -> bool:
        """True if the content store holds ``digest``."""
        try:
            self.client.content.Info(content_pb2.InfoRequest(digest=digest), metadata=self.client.md(), timeout=30)
        except RpcError as error:
            if is_not_found(error):
                return False
            raise
        return True

    def write_blob(
        self,
        digest: str,
        size: int,
        chunks: Iterator[bytes],
        lease: str,
        labels: dict[str, str] | None = None,
        what: str = "",
    ) -> None:
        """Stream ``chunks`` into the content store as ``digest``; check size and digest.

        The commit carries ``offset=total`` (offset 0 would make containerd truncate
        the ingest). Any failure aborts the ingest and raises :class:`EngineError`.
        """
        ref = f"fogwire-{digest.removeprefix('sha256:')[:32]}-{os.urandom(4).hex()}"
        failure: list[BaseException] = []

        def requests() -> Iterator[Any]:
            hasher = hashlib.sha256()
            offset = 0
            try:
                for chunk in chunks:
                    hasher.update(chunk)
                    yield content_pb2.WriteContentRequest(
                        action=content_pb2.WRITE, ref=ref, total=size, expected=digest, offset=offset, data=chunk
                    )
                    offset += len(chunk)
            except Exception as error:  # a cut connection: stop before COMMIT
                failure.append(error)
                return
            got = "sha256:" + hasher.hexdigest()
            if offset != size or got != digest:
                failure.append(
                    EngineError(
                        f"{what or digest}: got {offset} bytes with digest {got}, expected {size} bytes {digest}"
                    )
                )
                return
            if offset == 0:
                yield content_pb2.WriteContentRequest(action=content_pb2.WRITE, ref=ref, total=size, expected=digest)
            yield content_pb2.WriteContentRequest(
                action=content_pb2.COMMIT, ref=ref, total=size, expected=digest, offset=size, labels=labels or {}
            )

        try:
            for _resp in self.client.content.Write(requests(), metadata=self.client.md(lease), timeout=600):
                pass
        except RpcError as error:
            if error.code() is StatusCode.ALREADY_EXISTS:
                return
            self._abort(ref)
            raise EngineError(f"writing {what or digest} into containerd failed: {details(error)}") from error
        if failure:
            self._abort(ref)
            cause = failure[0]
            if isinstance(cause, EngineError):
                raise cause
            raise EngineError(f"fetching {what or digest} failed: {cause}") from cause

    def _abort(self, ref: str) -> None:
        try:
            self.client.content.Abort(content_pb2.AbortRequest(ref=ref), metadata=self.client.md(), timeout=30)
        except RpcError:
            pass

    def write_bytes(self, data: bytes, lease: str, labels: dict[str, str] | None = None, what: str = "") -> str:
        """Write a small blob (manifest, config) held in memory; return its digest."""
        digest = sha256(data)
        self.write_blob(digest, len(data), iter([data]), lease, labels, what)
        return digest

    # ------------------------------------------------------------------ unpack

    def unpack(self, layers: list[dict[str, Any]], diff_ids: list[str], lease: str, what: str) -> str:
        """Make sure every layer is a committed snapshot; return the top chain ID."""
        if len(layers) != len(diff_ids):
            raise EngineError(f"image {what!r}: {len(layers)} layers but {len(diff_ids)} diff_ids in its config")
        md = self.client.md(lease)
        parent = ""
        for layer, diff_id, chain in zip(layers, diff_ids, chain_ids(diff_ids), strict=True):
            try:
                self.client.snapshots.Stat(
                    snapshots_pb2.StatSnapshotRequest(snapshotter=self.snapshotter, key=chain), metadata=md, timeout=30
                )
                parent = chain
                continue
            except RpcError as error:
                if not is_not_found(error):
                    raise EngineError(f"image {what!r}: snapshot lookup failed: {details(error)}") from error
            key = f"extract-{os.urandom(16).hex()} {chain}"
            try:
                prepared = self.client.snapshots.Prepare(
                    snapshots_pb2.PrepareSnapshotRequest(snapshotter=self.snapshotter, key=key, parent=parent),
                    metadata=md,
                    timeout=60,
                )
                applied = self.client.diff.Apply(
                    diff_pb2.ApplyRequest(
                        diff=types_pb2.Descriptor(
                            media_type=layer["mediaType"], digest=layer["digest"], size=int(layer["size"])
                        ),
                        mounts=prepared.mounts,
                    ),
                    metadata=md,
                    timeout=600,
                )
                if applied.applied.digest and applied.applied.digest != diff_id:
                    raise EngineError(
                        f"image {what!r}: layer {layer['digest']} unpacked to {applied.applied.digest}, "
                        f"but its config says {diff_id}"
                    )
                self.client.snapshots.Commit(
                    snapshots_pb2.CommitSnapshotRequest(snapshotter=self.snapshotter, name=chain, key=key),
                    metadata=md,
                    timeout=60,
                )
            except EngineError:
                self._remove_snapshot(key)
                raise
            except RpcError as error:
                self._remove_snapshot(key)
                if error.code() is StatusCode.ALREADY_EXISTS:
                    parent = chain
                    continue
                raise EngineError(
                    f"image {what!r}: unpacking layer {layer['digest']} failed: {details(error)}"
                ) from error
            parent = chain
        return parent

    def _remove_snapshot(self, key: str) -> None:
        try:
            self.client.snapshots.Remove(
                snapshots_pb2.RemoveSnapshotRequest(snapshotter=self.snapshotter, key=key),
                metadata=self.client.md(),
                timeout=30,
            )
        except RpcError:
            pass

    # ------------------------------------------------------------------ store an image

    def store(
        self,
        names: list[str],
        manifest: dict[str, Any],
        manifest_bytes: bytes,
        manifest_type: str,
        fetch: Callable[[dict[str, Any]], tuple[int, Iterator[bytes]]],
        lease: str,
        what: str,
    ) -> str:
        """Write config, layers and manifest, unpack, then create/update the image records.

        ``fetch(descriptor)`` returns the blob's size and its bytes as chunks.
        Returns the image ID (the config digest).
        """
        config_desc = manifest["config"]
        layers = list(manifest.get("layers", []))
        config_bytes = self._small_blob(config_desc, fetch)
        config = json.loads(config_bytes)
        diff_ids = list(config.get("rootfs", {}).get("diff_ids", []))
        chains = chain_ids(diff_ids)
        for i, layer in enumerate(layers):
            if self.has_blob(layer["digest"]):
                continue
            size, chunks = fetch(layer)
            labels = {"containerd.io/uncompressed": diff_ids[i]} if i < len(diff_ids) else {}
            self.write_blob(layer["digest"], size, chunks, lease, labels, f"layer {layer['digest']} of {what}")
        config_labels = {f"containerd.io/gc.ref.snapshot.{self.snapshotter}": chains[-1]} if chains else {}
        self.write_blob(
            config_desc["digest"], len(config_bytes), iter([config_bytes]), lease, config_labels, f"config of {what}"
        )
        manifest_labels = {"containerd.io/gc.ref.content.config": config_desc["digest"]}
        for i, layer in enumerate(layers):
            manifest_labels[f"containerd.io/gc.ref.content.l.{i}"] = layer["digest"]
        manifest_digest = self.write_bytes(manifest_bytes, lease, manifest_labels, f"manifest of {what}")
        self.unpack(layers, diff_ids, lease, what)
        target = types_pb2.Descriptor(media_type=manifest_type, digest=manifest_digest, size=len(manifest_bytes))
        for name in names:
            self.put_image(name, target, lease)
        self._config_of[manifest_digest] = config_desc["digest"]
        return str(config_desc["digest"])

    def _small_blob(
        self, desc: dict[str, Any], fetch: Callable[[dict[str, Any]], tuple[int, Iterator[bytes]]]
    ) -> bytes:
        if self.has_blob(desc["digest"]):
            return self.client.read_blob(desc["digest"])
        _size, chunks = fetch(desc)
        data = b"".join(chunks)
        if sha256(data) != desc["digest"]:
            raise EngineError(f"blob {desc['digest']} failed its digest check")
        return data

    def put_image(self, name: str, target: Any, lease: str | None = None) -> None:
        """Create the image record ``name`` → ``target``, or repoint an existing one."""
        image = images_pb2.Image(name=name, target=target)
        md = self.client.md(lease)
        try:
            self.client.images.Create(images_pb2.CreateImageRequest(image=image), metadata=md, timeout=30)
        except RpcError as error:
            if error.code() is not StatusCode.ALREADY_EXISTS:
                raise EngineError(f"recording image {name!r} failed: {details(error)}") from error
            self.client.images.Update(images_pb2.UpdateImageRequest(image=image), metadata=md, timeout=30)

    # ------------------------------------------------------------------ pull

    def pull(self, reference: str, auth: Any) -> str:
        """Pull ``reference`` for this platform; return the image ID (config digest)."""
        # http.client, ssl: only when pulling
        from fogwire.registry_client import iter_chunks
        from fogwire_engine_containerd._registry import client_for, manifest

        ref = _ref.parse(reference)
        registry = client_for(ref, auth)
        try:
            data, media_type = manifest(registry, ref, ref.object)
            if media_type in INDEX_TYPES:
                desc = pick_platform(json.loads(data), ref.name)
                data, media_type = manifest(registry, ref, desc["digest"])
                if sha256(data) != desc["digest"]:
                    raise EngineError(f"manifest of {ref.name!r} failed its digest check")
            elif ref.digest and sha256(data) != ref.digest:
                raise EngineError(f"manifest of {ref.name!r} does not match digest {ref.digest}")
            if media_type not in MANIFEST_TYPES:
                raise EngineError(f"{ref.name!r}: unsupported manifest type {media_type!r}")
            manifest_doc = json.loads(data)

            def fetch(desc: dict[str, Any]) -> tuple[int, Iterator[bytes]]:
                stream, _ = registry.open_blob(ref.repository, desc["digest"])
                size = int(desc["size"])
                return size, iter_chunks(stream, size, f"registry {ref.api_host} ({desc['digest']})")

            with Lease(self.client) as lease:
                return self.store([ref.name], manifest_doc, data, media_type, fetch, lease, ref.name)
        finally:
            registry.close()

    # ------------------------------------------------------------------ archives

    def load_archive(self, path: Path) -> list[str]:
        """Import a docker-archive or OCI-layout tarball; return the image names created."""
        import tarfile

        try:
            tar = tarfile.open(path, "r:*")
        except (OSError, tarfile.TarError) as error:
            raise EngineError(f"cannot read image archive {path}: {error}") from error
        with tar, Lease(self.client) as lease:
            members = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}
            if "index.json" in members:
                return self._load_oci(tar, members, lease, path)
            if "manifest.json" in members:
                return self._load_docker(tar, members, lease, path)
        raise EngineError(
            f"{path} is neither a docker-archive nor an OCI-layout tarball (no manifest.json / index.json)"
        )

    @staticmethod
    def _read(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str, path: Path) -> IO[bytes]:
        member = members.get(name)
        fileobj = tar.extractfile(member) if member is not None else None
        if fileobj is None:
            raise EngineError(f"image archive {path} lacks {name}")
        return fileobj

    def _chunks(self, fileobj: IO[bytes]) -> Iterator[bytes]:
        while chunk := fileobj.read(CHUNK):
            yield chunk

    def _load_oci(self, tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], lease: str, path: Path) -> list[str]:
        def blob_name(digest: str) -> str:
            algo, _, hexd = digest.partition(":")
            return f"blobs/{algo}/{hexd}"

        def fetch(desc: dict[str, Any]) -> tuple[int, Iterator[bytes]]:
            name = blob_name(desc["digest"])
            return members[name].size if name in members else 0, self._chunks(self._read(tar, members, name, path))

        index = json.loads(self._read(tar, members, "index.json", path).read())
        names: list[str] = []
        for desc in index.get("manifests", []):
            annotations = desc.get("annotations") or {}
            raw_name = annotations.get(IMAGE_NAME_ANNOTATION) or annotations.get(REF_NAME_ANNOTATION) or ""
            media_type = desc.get("mediaType", "")
            if media_type in INDEX_TYPES:
                nested = json.loads(self._read(tar, members, blob_name(desc["digest"]), path).read())
                desc = pick_platform(nested, f"{path}")
                media_type = desc.get("mediaType", "")
            data = self._read(tar, members, blob_name(desc["digest"]), path).read()
            if sha256(data) != desc["digest"]:
                raise EngineError(f"manifest {desc['digest']} in {path} failed its digest check")
            image_names = []
            if raw_name and ("/" in raw_name or ":" in raw_name):
                try:
                    image_names.append(_ref.normalize(raw_name))
                except ValueError:
                    pass
            self.store(image_names, json.loads(data), data, media_type or MANIFEST_TYPES[0], fetch, lease, str(path))
            names.extend(image_names)
        return names

    def _load_docker(
        self, tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], lease: str, path: Path
    ) -> list[str]:
        entries = json.loads(self._read(tar, members, "manifest.json", path).read())
        names: list[str] = []
        for entry in entries:
            config_bytes = self._read(tar, members, entry["Config"], path).read()
            config = json.loads(config_bytes)
            layers: list[dict[str, Any]] = []
            files: dict[str, str] = {}
            for layer_path in entry.get("Layers", []):
                fileobj = self._read(tar, members, layer_path, path)
                head = fileobj.read(2)
                hasher = hashlib.sha256(head)
                for chunk in self._chunks(fileobj):
                    hasher.update(chunk)
                digest = "sha256:" + hasher.hexdigest()
                gzip = head == b"\x1f\x8b"
                layers.append(
                    {
                        "mediaType": MT_DOCKER_LAYER_GZIP if gzip else MT_DOCKER_LAYER,
                        "size": members[layer_path.removeprefix("./")].size,
                        "digest": digest,
                    }
                )
                files[digest] = layer_path
            config_digest = sha256(config_bytes)
            manifest = {
                "schemaVersion": 2,
                "mediaType": MT_DOCKER_MANIFEST,
                "config": {"mediaType": MT_DOCKER_CONFIG, "size": len(config_bytes), "digest": config_digest},
                "layers": layers,
            }
            manifest_bytes = json.dumps(manifest, separators=(",", ":")).encode()

            def fetch(
                desc: dict[str, Any],
                config_digest: str = config_digest,
                config_bytes: bytes = config_bytes,
                files: dict[str, str] = files,
            ) -> tuple[int, Iterator[bytes]]:
                if desc["digest"] == config_digest:
                    return len(config_bytes), iter([config_bytes])
                name = files[desc["digest"]]
                return members[name.removeprefix("./")].size, self._chunks(self._read(tar, members, name, path))

            image_names = []
            for tag in entry.get("RepoTags") or []:
                try:
                    image_names.append(_ref.normalize(tag))
                except ValueError:
                    continue
            if not config.get("rootfs"):
                raise EngineError(f"image config {entry['Config']} in {path} has no rootfs")
            self.store(image_names, manifest, manifest_bytes, MT_DOCKER_MANIFEST, fetch, lease, str(path))
            names.extend(image_names)
        return names

    # ------------------------------------------------------------------ queries

    def get(self, name: str) -> Any | None:
        """The image record ``name`` (normalised), or ``None``."""
        try:
            resp = self.client.images.Get(images_pb2.GetImageRequest(name=name), metadata=self.client.md(), timeout=30)
        except RpcError as error:
            if is_not_found(error):
                return None
            raise
        return resp.image

    def config_digest(self, image: Any) -> str:
        """The image ID (config digest) of an image record."""
        target = image.target
        cached = self._config_of.get(target.digest)
        if cached:
            return cached
        data = self.client.read_blob(target.digest)
        doc = json.loads(data)
        if target.media_type in INDEX_TYPES or doc.get("manifests") is not None:
            desc = pick_platform(doc, image.name)
            doc = json.loads(self.client.read_blob(desc["digest"]))
        config = str(doc["config"]["digest"])
        self._config_of[target.digest] = config
        return config

    def config(self, image: Any) -> dict[str, Any]:
        """The parsed image config of an image record (cached: content is immutable)."""
        digest = self.config_digest(image)
        config = self._configs.get(digest)
        if config is None:
            config = self._configs[digest] = json.loads(self.client.read_blob(digest))
        return config

    def top_chain(self, image: Any) -> str:
        """The chain ID of the image's top layer: the parent of container snapshots."""
        diff_ids = self.config(image).get("rootfs", {}).get("diff_ids", [])
        if not diff_ids:
            raise ImageNotFoundError(f"image {image.name!r} has no layers")
        return chain_ids(diff_ids)[-1]

    def list(self) -> list[Any]:
        """Every image record of the namespace."""
        resp = self.client.images.List(images_pb2.ListImagesRequest(), metadata=self.client.md(), timeout=30)
        return list(resp.images)

    def delete(self, name: str) -> None:
        """Delete the image record ``name``; containerd collects what it alone held."""
        try:
            self.client.images.Delete(
                images_pb2.DeleteImageRequest(name=name, sync=True), metadata=self.client.md(), timeout=120
            )
        except RpcError as error:
            if not is_not_found(error):
                raise EngineError(f"removing image {name!r} failed: {details(error)}") from error
