"""``fogwire bundle import``: verify a bundle, then load it into an engine or push it to a registry.

Long on purpose: both targets (engine, registry) share staging, verification and the
re-import cache, which must stay one sequence to keep a failed import invisible.

The bundle is staged and verified in a private directory first (see
:mod:`fogwire_bundle.reader`); only then does anything become visible. A target
skips what it already has: an engine skips images whose config digest it already
holds, a registry skips blobs and manifests a ``HEAD`` finds, so importing the same
bundle twice moves almost nothing. A registry push records each open upload
session and its offset, so an interrupted push resumes inside the blob it stopped in.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import errno
import hashlib
import io
import json
import logging
import queue
import shutil
import tarfile
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from fogwire_bundle.archive import tar_entry
from fogwire_bundle.errors import BundleError
from fogwire_bundle.layout import INDEX, LAYOUT_VERSION, OCI_LAYOUT, BlobSlice, BundleImage, LayoutDir
from fogwire_bundle.oci import (
    CHUNK,
    CONTAINERD_NAME,
    INDEX_TYPES,
    OCI_INDEX,
    REF_NAME,
    Platform,
    Reference,
    canonical_json,
    pick_platforms,
)
from fogwire_bundle.progress import Progress
from fogwire_bundle.reader import StagedBundle, stage

if TYPE_CHECKING:
    from fogwire.engine import Engine
    from fogwire_bundle.registry import RegistryClient

log = logging.getLogger(__name__)


@attrs.frozen
class ImageOutcome:
    """What happened to one image of the bundle."""

    reference: str
    """The reference in the bundle."""
    target: str
    """Where it is now: the engine's image name or the registry reference."""
    digest: str
    status: str
    """``loaded``, ``pushed`` or ``present`` (already there; nothing moved)."""
    image_id: str = ""
    """For an engine: the config digest the engine reports for the image."""


@attrs.frozen
class ImportResult:
    """The summary of one import (``--json`` prints it)."""

    bundle: str
    kind: str
    format: str
    target: str
    images: tuple[ImageOutcome, ...]
    bytes_moved: int
    bytes_skipped: int
    blobs_moved: int
    blobs_skipped: int
    seconds: float
    cached: bool = False
    """True when this exact file was imported before and the target still holds every image,
    so nothing was read again (see ``cache_file`` of :func:`import_bundle`)."""

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {
            "bundle": self.bundle,
            "kind": self.kind,
            "format": self.format,
            "target": self.target,
            "images": [attrs.asdict(i) for i in self.images],
            "bytesMoved": self.bytes_moved,
            "bytesSkipped": self.bytes_skipped,
            "blobsMoved": self.blobs_moved,
            "blobsSkipped": self.blobs_skipped,
            "seconds": round(self.seconds, 3),
            "cached": self.cached,
        }


@attrs.define
class _Tally:
    outcomes: list[ImageOutcome] = attrs.field(factory=list)
    blobs_moved: int = 0
    blobs_skipped: int = 0
    bytes_moved: int = 0
    bytes_skipped: int = 0


class Target(abc.ABC):
    """Where an import puts a verified bundle."""

    description: str = ""

    async def check(self, staged: StagedBundle) -> None:  # noqa: B027 - optional hook
        """Refuse a bundle this target cannot take, before anything is made visible."""

    @abc.abstractmethod
    async def publish(self, staged: StagedBundle, work: Path, progress: Progress) -> _Tally:
        """Make the verified images of ``staged`` available; ``work`` is scratch space."""

    @abc.abstractmethod
    async def holds(self, outcome: ImageOutcome) -> bool:
        """True if the target still holds the image an earlier import of ``outcome`` put there."""


# ---------------------------------------------------------------------- engine


class EngineTarget(Target):
    """Load into a container engine through :meth:`fogwire.engine.Engine.load_image_archive`.

    For each image the variant for ``platform`` (default: this machine's) is chosen;
    an archive holding those images is written in the staging directory, as both an
    OCI layout (``index.json``) and a docker-archive (``manifest.json``), so every
    engine plugin can load it without conversion.
    """

    def __init__(self, engine: Engine, platform: Platform) -> None:
        self.engine = engine
        self.platform = platform
        url = engine.context.url
        self.description = f"engine {engine.name or type(engine).__name__}" + (f" at {url}" if url else "")
        self._chosen: list[tuple[BundleImage, dict[str, Any]]] = []

    async def check(self, staged: StagedBundle) -> None:
        """Pick every image's variant for the platform; refuse the bundle if one has none."""
        layout = staged.layout
        chosen: list[tuple[BundleImage, dict[str, Any]]] = []
        for image in staged.images:
            if image.media_type in INDEX_TYPES:
                entries = pick_platforms(layout.read_json(image.digest), [self.platform])
                if not entries:
                    raise BundleError(
                        f"{staged.source}: image {image.reference} has no variant for {self.platform} "
                        f"(it has {', '.join(image.platforms) or 'none'}); build the bundle with that platform"
                    )
                chosen.append((image, entries[0]))
                continue
            found = Platform.parse(image.platforms[0]) if image.platforms and "/" in image.platforms[0] else None
            if found is None or not self.platform.matches(found):
                raise BundleError(
                    f"{staged.source}: image {image.reference} is {image.platforms[0] if image.platforms else 'of unknown platform'}"
                    f", not {self.platform}; this node cannot run it"
                )
            chosen.append((image, {"digest": image.digest, "mediaType": image.media_type, "size": image.size}))
        self._chosen = chosen

    async def publish(self, staged: StagedBundle, work: Path, progress: Progress) -> _Tally:
        """Write the engine archive of images the engine lacks and load it."""
        tally = _Tally()
        layout = staged.layout
        wanted: list[tuple[BundleImage, dict[str, Any], dict[str, Any]]] = []
        for image, descriptor in self._chosen:
            manifest = layout.read_json(str(descriptor["digest"]))
            config_digest = str((manifest.get("config") or {}).get("digest"))
            size = sum(layout.size(str(d["digest"])) for d in _parts(manifest))
            name = _engine_name(image.reference)
            present = await self.engine.image_digest(name) if name else None
            if present == config_digest:
                progress.note(f"{image.reference}: already in the engine ({config_digest[:19]}); skipped")
                tally.outcomes.append(ImageOutcome(image.reference, name, image.digest, "present", config_digest))
                tally.bytes_skipped += size
                tally.blobs_skipped += len(manifest.get("layers") or []) + 1
                progress.skip(size)
                continue
            wanted.append((image, descriptor, manifest))
        if not wanted:
            return tally
        archive = work / "engine-archive.tar"
        blobs = await asyncio.to_thread(_write_engine_archive, layout, wanted, archive)
        tally.blobs_moved += len(blobs)
        tally.bytes_moved += sum(blobs.values())
        names = ", ".join(i.reference for i, _, _ in wanted)
        progress.start(f"loading {names}")
        progress.expect(archive.stat().st_size)
        result = await self.engine.load_image_archive(archive)
        progress.advance(archive.stat().st_size)
        progress.finish(f"loading {names}", f"engine reports {', '.join(result.references) or 'no names'}")
        for image, _, manifest in wanted:
            name = _engine_name(image.reference)
            config_digest = str((manifest.get("config") or {}).get("digest"))
            tally.outcomes.append(
                ImageOutcome(image.reference, name or image.digest, image.digest, "loaded", config_digest)
            )
        return tally

    async def holds(self, outcome: ImageOutcome) -> bool:
        """The engine has the image under its name with the same config digest."""
        if not outcome.image_id or outcome.target == outcome.digest:
            return False
        return await self.engine.image_digest(outcome.target) == outcome.image_id


def _parts(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [manifest.get("config") or {}, *(manifest.get("layers") or [])]


def _engine_name(reference: str) -> str:
    """The name an engine tags the image with: the reference without a digest (``""`` if none)."""
    try:
        ref = Reference.parse(reference)
    except BundleError:
        return ""
    if not ref.tag:
        return ""
    return str(attrs.evolve(ref, digest=""))


def _write_engine_archive(
    layout: LayoutDir, wanted: Sequence[tuple[BundleImage, dict[str, Any], dict[str, Any]]], archive: Path
) -> dict[str, int]:
    """An OCI layout + docker-archive tar of the chosen manifests; returns the blobs written."""
    blobs: dict[str, int] = {}
    index_entries: list[dict[str, Any]] = []
    docker_manifest: list[dict[str, Any]] = []
    for image, descriptor, manifest in wanted:
        digest = str(descriptor["digest"])
        name = _engine_name(image.reference)
        annotations = {REF_NAME: name, CONTAINERD_NAME: name} if name else {}
        index_entries.append(
            {
                "mediaType": descriptor.get("mediaType") or manifest.get("mediaType"),
                "digest": digest,
                "size": layout.size(digest),
                **({"annotations": annotations} if annotations else {}),
            }
        )
        blobs[digest] = layout.size(digest)
        for part in _parts(manifest):
            blobs[str(part["digest"])] = layout.size(str(part["digest"]))
        docker_manifest.append(
            {
                "Config": "blobs/sha256/" + str(manifest["config"]["digest"]).split(":", 1)[1],
                "RepoTags": [name] if name else [],
                "Layers": ["blobs/sha256/" + str(d["digest"]).split(":", 1)[1] for d in manifest.get("layers") or []],
            }
        )
    small = {
        OCI_LAYOUT: canonical_json(LAYOUT_VERSION),
        INDEX: json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index_entries}).encode(),
        "manifest.json": json.dumps(docker_manifest).encode(),
    }
    with (
        archive.open("wb") as out,
        tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=CHUNK) as tar,
    ):
        for name, data in small.items():
            tar.addfile(tar_entry(name, len(data)), io.BytesIO(data))
        tar.addfile(tar_entry("blobs", directory=True))
        tar.addfile(tar_entry("blobs/sha256", directory=True))
        for digest in sorted(blobs):
            with layout.open_blob(digest) as blob:
                reader = _Hashing(blob)
                tar.addfile(tar_entry("blobs/sha256/" + digest.split(":", 1)[1], blobs[digest]), reader)
            if reader.digest() != digest:
                raise BundleError(f"blob {digest} changed in the bundle file after it was verified; not loaded")
    return blobs


class _Hashing:
    """A reader that hashes what passes through it."""

    def __init__(self, source: BlobSlice) -> None:
        self._source = source
        self._hasher = hashlib.sha256()

    def read(self, size: int = -1, /) -> bytes:
        data = self._source.read(size)
        self._hasher.update(data)
        return data

    def digest(self) -> str:
        return "sha256:" + self._hasher.hexdigest()


# ---------------------------------------------------------------------- registry


class RegistryTarget(Target):
    """Push to a registry: blobs (skipping those a ``HEAD`` finds), then manifests, then tags.

    Images keep their repository path and tag under ``server`` (and ``prefix``).
    Open upload sessions are recorded in ``resume_file`` after every chunk.
    """

    def __init__(
        self, client: RegistryClient, prefix: str = "", resume_file: Path | None = None, *, jobs: int = 3
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.resume_file = resume_file
        self.jobs = max(1, jobs)
        """Blobs uploaded at once, each on its own connection (as skopeo, oras and hauler do)."""
        self._lock = threading.Lock()
        self._pushed: dict[str, str] = {}
        self.description = f"registry {client.server}{'/' + prefix if prefix else ''}"

    def target_reference(self, reference: str) -> Reference:
        """Where ``reference`` of the bundle lands in this registry."""
        return Reference.parse(reference).with_registry(self.client.server, self.prefix)

    async def publish(self, staged: StagedBundle, work: Path, progress: Progress) -> _Tally:
        """Push every image (in a thread: the client blocks)."""
        return await asyncio.to_thread(self._push_all, staged, progress)

    async def holds(self, outcome: ImageOutcome) -> bool:
        """The registry answers ``HEAD`` for the pushed tag (or digest) with the same digest."""

        def check() -> bool:
            ref = Reference.parse(outcome.target)
            try:
                return self.client.manifest_digest(ref.repository, ref.tag or outcome.digest) == outcome.digest
            finally:
                self.client.close()

        return await asyncio.to_thread(check)

    # -- resume records

    def _load_resume(self) -> dict[str, dict[str, Any]]:
        if self.resume_file is None or not self.resume_file.exists():
            return {}
        try:
            data = json.loads(self.resume_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save_resume(self, records: dict[str, dict[str, Any]]) -> None:
        if self.resume_file is None:
            return
        with self._lock:
            self._write_resume(records)

    def _write_resume(self, records: dict[str, dict[str, Any]]) -> None:
        assert self.resume_file is not None
        self.resume_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.resume_file.with_name(self.resume_file.name + ".tmp")
        tmp.write_text(json.dumps(records))
        tmp.replace(self.resume_file)

    # -- pushing

    def _push_all(self, staged: StagedBundle, progress: Progress) -> _Tally:
        tally = _Tally()
        records = self._load_resume()
        self._pushed = {}
        try:
            for image in staged.images:
                self._push_image(staged, image, progress, tally, records)
        finally:
            self.client.close()
        return tally

    def _push_image(
        self,
        staged: StagedBundle,
        image: BundleImage,
        progress: Progress,
        tally: _Tally,
        records: dict[str, dict[str, Any]],
    ) -> None:
        layout = staged.layout
        ref = self.target_reference(image.reference)
        repository = ref.repository
        manifests: list[tuple[str, str]] = []
        blobs: list[str] = []
        for descriptor, _ in layout.walk(image.digest, image.media_type, image.reference):
            digest = str(descriptor["digest"])
            kind = str(descriptor.get("mediaType", ""))
            if digest == image.digest or kind in INDEX_TYPES or kind.endswith(("manifest.v1+json", "manifest.v2+json")):
                manifests.append((digest, kind or str(layout.read_json(digest).get("mediaType", ""))))
            elif digest not in blobs:
                blobs.append(digest)
        progress.start(f"{image.reference} -> {ref}")
        missing: list[str] = []
        for digest in blobs:
            if self.client.has_blob(repository, digest, push=True):
                tally.blobs_skipped += 1
                tally.bytes_skipped += layout.size(digest)
                progress.skip(layout.size(digest))
            else:
                missing.append(digest)
        progress.expect(sum(layout.size(d) for d in missing))
        to_upload: list[str] = []
        for digest in missing:
            source = self._pushed.get(digest)
            if source and source != repository and self.client.mount_blob(repository, digest, source):
                # pushed to another repository of this registry a moment ago: linked, not sent again
                tally.blobs_skipped += 1
                tally.bytes_skipped += layout.size(digest)
                progress.skip(layout.size(digest))
            else:
                to_upload.append(digest)
        sent = self._upload_all(repository, to_upload, layout, progress, records)
        tally.bytes_moved += sent
        tally.blobs_moved += len(to_upload)
        for digest in to_upload:
            self._pushed.setdefault(digest, repository)
        # children before parents: walk yields the root first
        pushed_any = bool(missing)
        for digest, media_type in reversed(manifests):
            if digest == image.digest:
                continue
            if self.client.manifest_digest(repository, digest, push=True) is None:
                self.client.put_manifest(repository, digest, layout.read_small(digest), media_type)
                pushed_any = True
        top = ref.tag or image.digest
        if self.client.manifest_digest(repository, top, push=True) != image.digest:
            self.client.put_manifest(repository, top, layout.read_small(image.digest), image.media_type)
            pushed_any = True
        progress.finish(f"{image.reference} -> {ref}", "pushed" if pushed_any else "already there")
        tally.outcomes.append(
            ImageOutcome(image.reference, str(ref), image.digest, "pushed" if pushed_any else "present")
        )

    def _upload_all(
        self,
        repository: str,
        digests: Sequence[str],
        layout: LayoutDir,
        progress: Progress,
        records: dict[str, dict[str, Any]],
    ) -> int:
        """Upload ``digests`` with up to :attr:`jobs` connections; return the bytes sent."""
        if len(digests) <= 1 or self.jobs == 1:
            return sum(self._upload(self.client, repository, d, layout, progress, records) for d in digests)
        workers = min(self.jobs, len(digests))
        clients = [self.client.clone() for _ in range(workers)]
        free: queue.SimpleQueue[RegistryClient] = queue.SimpleQueue()
        for client in clients:
            free.put(client)

        def one(digest: str) -> int:
            client = free.get()
            try:
                return self._upload(client, repository, digest, layout, progress, records)
            finally:
                free.put(client)

        pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="fogwire-push")
        try:
            # biggest first, so the long uploads overlap the short ones
            order = sorted(digests, key=layout.size, reverse=True)
            return sum(future.result() for future in [pool.submit(one, d) for d in order])
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            for client in clients:
                client.close()

    def _upload(
        self,
        client: RegistryClient,
        repository: str,
        digest: str,
        layout: LayoutDir,
        progress: Progress,
        records: dict[str, dict[str, Any]],
    ) -> int:
        """Upload one blob, resuming a recorded session; return the bytes sent now."""
        key = f"{client.server}/{repository}@{digest}"
        size = layout.size(digest)
        location, offset = "", 0
        record = records.get(key)
        if record:
            found = client.upload_offset(repository, str(record.get("location", "")))
            if found is not None and found <= size:
                location, offset = str(record["location"]), found
                log.info("resuming upload of %s at byte %d of %d", digest, offset, size)
                with self._lock:
                    progress.skip(offset)
        if not location:
            location = client.start_upload(repository)
            with self._lock:
                records[key] = {"location": location, "offset": 0}
            self._save_resume(records)
        sent = 0

        def on_chunk(new_location: str, new_offset: int, length: int) -> None:
            nonlocal sent
            sent += length
            with self._lock:
                records[key] = {"location": new_location, "offset": new_offset}
            self._save_resume(records)
            with self._lock:
                progress.advance(length)

        with layout.open_blob(digest) as source:
            location = client.upload_chunks(repository, location, source, offset, size, on_chunk)
        client.finish_upload(repository, location, digest)
        with self._lock:
            records.pop(key, None)
        self._save_resume(records)
        return sent


# ---------------------------------------------------------------------- entry point


def _identity(path: Path) -> dict[str, Any]:
    """What makes a bundle file "the same file": path, inode, size, mtime, and its ``.sha256``."""
    info = path.stat()
    sidecar = path.with_name(path.name + ".sha256")
    try:
        checksum = sidecar.read_text().split()[0] if sidecar.exists() else ""
    except (OSError, IndexError):
        checksum = ""
    return {
        "path": str(path.resolve()),
        "inode": info.st_ino,
        "size": info.st_size,
        "mtime_ns": info.st_mtime_ns,
        "sha256": checksum,
    }


def _load_cache(cache_file: Path) -> dict[str, Any]:
    try:
        data = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


async def _cached(path: Path, target: Target, cache_file: Path, started: float) -> ImportResult | None:
    """The earlier result if this exact file went to this target and the target still holds it all."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    record = _load_cache(cache_file).get(target.description)
    entry = record.get(str(path.resolve())) if isinstance(record, dict) else None
    if not isinstance(entry, dict) or entry.get("identity") != _identity(path):
        return None
    try:
        outcomes = tuple(ImageOutcome(**o) for o in entry["images"])
    except (KeyError, TypeError):
        return None
    for outcome in outcomes:
        if not await target.holds(outcome):
            return None
    return ImportResult(
        bundle=str(path),
        kind=str(entry.get("kind", "")),
        format=str(entry.get("format", "")),
        target=target.description,
        images=tuple(attrs.evolve(o, status="present") for o in outcomes),
        bytes_moved=0,
        bytes_skipped=int(entry.get("bytes", 0)),
        blobs_moved=0,
        blobs_skipped=int(entry.get("blobs", 0)),
        seconds=time.monotonic() - started,
        cached=True,
    )


def _remember(path: Path, target: Target, cache_file: Path, result: ImportResult) -> None:
    data = _load_cache(cache_file)
    record = data.setdefault(target.description, {})
    record[str(path.resolve())] = {
        "identity": _identity(path),
        "kind": result.kind,
        "format": result.format,
        "bytes": result.bytes_moved + result.bytes_skipped,
        "blobs": result.blobs_moved + result.blobs_skipped,
        "images": [attrs.asdict(o) for o in result.images],
    }
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_name(cache_file.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(cache_file)


async def import_bundle(
    path: Path,
    target: Target,
    *,
    work_dir: Path,
    progress: Progress | None = None,
    cache_file: Path | None = None,
) -> ImportResult:
    """Verify the bundle at ``path`` completely, then publish it to ``target``.

    Staging happens in a fresh directory under ``work_dir``, removed afterwards
    whatever happens. A full disk is a :class:`BundleError` naming the directory.

    With ``cache_file``, a successful import is remembered (file path, inode, size,
    mtime, ``.sha256``, and what went where). Importing that unchanged file to the
    same target again only asks the target whether it still holds every image; if
    so nothing is read or moved (``result.cached``), else the import runs in full.
    """
    progress = progress or Progress.silent()
    started = time.monotonic()
    path = Path(path)
    work_dir = Path(work_dir)
    if cache_file is not None:
        cached = await _cached(path, target, cache_file, started)
        if cached is not None:
            progress.note(f"{path.name}: imported before into {target.description}, which still holds every image")
            return cached
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="import-", dir=work_dir))
    except OSError as error:
        raise BundleError(f"{work_dir}: cannot create the staging directory: {error.strerror or error}") from None
    try:
        staged = await asyncio.to_thread(stage, path, work, progress)
        await target.check(staged)
        tally = await target.publish(staged, work, progress)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise BundleError(
                f"{path}: no space left on device while staging it in {work_dir}; free space there "
                "or choose another --work-dir (nothing was imported)"
            ) from None
        raise BundleError(f"{path}: {error.strerror or error} ({error.filename or work_dir})") from None
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
    result = ImportResult(
        bundle=str(path),
        kind=staged.kind,
        format=staged.format.value,
        target=target.description,
        images=tuple(tally.outcomes),
        bytes_moved=tally.bytes_moved,
        bytes_skipped=tally.bytes_skipped,
        blobs_moved=tally.blobs_moved,
        blobs_skipped=tally.blobs_skipped,
        seconds=time.monotonic() - started,
    )
    if cache_file is not None:
        _remember(path, target, cache_file, result)
    return result
