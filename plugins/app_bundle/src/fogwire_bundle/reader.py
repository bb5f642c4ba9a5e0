"""Reading a bundle into a private staging directory and verifying every byte of it.

Accepted: a fogwire bundle (OCI image layout + ``fogwire-bundle.json``) as tar,
zstd-compressed tar or squashfs, any OCI image layout tarball, and a Koffer bundle
(a tar of a registry's storage tree ``docker/registry/v2/{blobs,repositories}``).

Every entry is checked before it is written: no absolute path, no ``..``, nothing
but regular files and directories (a symlink, hard link, device or fifo is an
error). Every blob is hashed while it is copied and compared with its name; every
manifest's descriptors must point at a blob in the bundle whose size matches. Only
a bundle that passes all of it comes out of :func:`stage`; the caller then makes
it visible (engine, registry) and removes the staging directory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal

import attrs

from fogwire_bundle.archive import Format, check_sidecar, detect, need
from fogwire_bundle.errors import BundleError
from fogwire_bundle.layout import BUNDLE_MANIFEST, INDEX, OCI_LAYOUT, BundleImage, LayoutDir
from fogwire_bundle.oci import (
    CHUNK,
    CONTAINERD_NAME,
    INDEX_TYPES,
    REF_NAME,
    Platform,
    check_digest,
    copy_hashing,
    index_platforms,
)
from fogwire_bundle.progress import Progress

log = logging.getLogger(__name__)

METADATA_LIMIT = 16 << 20
"""Largest ``index.json`` / bundle manifest / Koffer link file accepted."""

_HEX = re.compile(r"^[0-9a-f]{64}$")
_KOFFER_ROOT = ("docker", "registry", "v2")


@attrs.frozen
class StagedBundle:
    """A bundle unpacked into ``layout`` and fully verified."""

    source: Path
    kind: Literal["fogwire", "oci", "koffer"]
    format: Format
    layout: LayoutDir
    images: tuple[BundleImage, ...]
    blob_bytes: int
    sidecar_checked: bool


@attrs.frozen
class _Entry:
    name: str
    kind: Literal["file", "dir", "symlink", "hardlink", "device", "fifo", "other"]
    size: int
    link: str = ""
    offset: int = -1
    """Where the entry's data starts in the bundle file (plain tar only), else -1."""


def _entry_kind(member: tarfile.TarInfo) -> Literal["file", "dir", "symlink", "hardlink", "device", "fifo", "other"]:
    if member.isreg():
        return "file"
    if member.isdir():
        return "dir"
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hardlink"
    if member.ischr() or member.isblk():
        return "device"
    if member.isfifo():
        return "fifo"
    return "other"


class _Stager:
    def __init__(self, source: Path, work: Path, progress: Progress, *, in_place: bool = False) -> None:
        self.source = source
        self.in_place = in_place
        self.layout = LayoutDir(work / "layout").create()
        self.koffer_dir = work / "koffer"
        self.progress = progress
        self.blob_bytes = 0
        self.koffer_seen = False
        self.entries = 0

    def _parts(self, entry: _Entry) -> list[str]:
        name = entry.name
        where = f"{self.source}: entry {name!r}"
        if name.startswith("/"):
            raise BundleError(f"{where} has an absolute path; a bundle holds only relative paths")
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise BundleError(f"{where} contains '..' and would be written outside the bundle")
        if entry.kind not in ("file", "dir"):
            what = {"symlink": f"a symlink to {entry.link!r}", "hardlink": f"a hard link to {entry.link!r}"}.get(
                entry.kind, f"a {entry.kind}"
            )
            raise BundleError(f"{where} is {what}; a bundle holds only regular files and directories")
        return parts

    def accept(self, entry: _Entry, reader: IO[bytes] | None, src_path: Path | None = None) -> None:
        """Check one entry and, if it is part of the layout, stage it (blobs hashed)."""
        self.entries += 1
        parts = self._parts(entry)
        if entry.kind == "dir" or not parts:
            return
        where = f"{self.source}: entry {entry.name!r}"
        koffer = _koffer_path(parts)
        if koffer is not None:
            self.koffer_seen = True
            if len(koffer) == 5 and koffer[:2] == ["blobs", "sha256"] and koffer[4] == "data":
                if koffer[2] != koffer[3][:2]:
                    raise BundleError(f"{where}: blob directory {koffer[2]!r} does not match its digest {koffer[3]!r}")
                self._blob(koffer[3], entry, reader, src_path, where)
            elif koffer and koffer[0] == "repositories" and "_uploads" not in koffer and koffer[-1] == "link":
                self._small(self.koffer_dir.joinpath(*koffer), entry, reader, where)
            return
        if len(parts) == 3 and parts[:2] == ["blobs", "sha256"]:
            self._blob(parts[2], entry, reader, src_path, where)
        elif len(parts) >= 2 and parts[0] == "blobs":
            raise BundleError(f"{where}: only sha256 blobs (blobs/sha256/<64 hex>) are supported")
        elif parts in ([INDEX], [OCI_LAYOUT], [BUNDLE_MANIFEST]):
            self._small(self.layout.root / parts[0], entry, reader, where)
        else:
            log.debug("%s: ignoring %s", self.source, entry.name)

    def _small(self, target: Path, entry: _Entry, reader: IO[bytes] | None, where: str) -> None:
        if entry.size > METADATA_LIMIT:
            raise BundleError(f"{where} is {entry.size} bytes; metadata files are limited to {METADATA_LIMIT}")
        assert reader is not None
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            copy_hashing(reader, out, limit=METADATA_LIMIT)

    def _blob(self, hexdigest: str, entry: _Entry, reader: IO[bytes] | None, src_path: Path | None, where: str) -> None:
        if not _HEX.match(hexdigest):
            raise BundleError(f"{where}: {hexdigest!r} is not a sha256 digest (64 lower-case hex digits)")
        expected = "sha256:" + hexdigest
        target = self.layout.blob_path(expected)
        tmp = target.with_name(target.name + ".tmp")
        try:
            if self.in_place and entry.offset >= 0:
                assert reader is not None
                digest, size = copy_hashing(reader, None, on_chunk=self.progress.advance)
            elif src_path is not None:
                with src_path.open("rb") as f:
                    digest, size = copy_hashing(f, None, on_chunk=self.progress.advance)
            else:
                assert reader is not None
                with tmp.open("wb") as out:
                    digest, size = copy_hashing(reader, out, on_chunk=self.progress.advance)
            if size != entry.size:
                raise BundleError(f"{where}: truncated: {size} of {entry.size} bytes")
            if digest != expected:
                raise BundleError(f"{where}: blob {expected} is tampered or corrupt: its content hashes to {digest}")
            if self.in_place and entry.offset >= 0:
                # a plain tar is read where it lies: nothing copied, only remembered
                self.layout.external[expected] = (self.source, entry.offset, size)
                target.unlink(missing_ok=True)
            elif src_path is not None:
                os.replace(src_path, target)
            else:
                tmp.replace(target)
            self.blob_bytes += size
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def _koffer_path(parts: list[str]) -> list[str] | None:
    """The part after ``docker/registry/v2/`` if ``parts`` is inside a registry storage tree."""
    for i in range(len(parts) - 2):
        if tuple(parts[i : i + 3]) == _KOFFER_ROOT:
            return parts[i + 3 :]
    return None


# ---------------------------------------------------------------------- archive readers


@contextlib.contextmanager
def _tar_stream(path: Path, fmt: Format) -> Iterator[IO[bytes]]:
    if fmt is Format.TAR:
        with path.open("rb") as f:
            yield f
        return
    zstd = need("zstd", "zstd", f"reading {path.name} (zstd-compressed)")
    proc = subprocess.Popen([zstd, "-d", "-c", "-q", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    ok = False
    try:
        yield proc.stdout
        ok = True
    finally:
        if not ok:
            proc.kill()
        # drain what is left so zstd can finish and report its own verdict
        while ok and proc.stdout.read(CHUNK):
            pass
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace").strip()
        proc.stderr.close()
        code = proc.wait()
        if ok and code != 0:
            raise BundleError(f"{path}: truncated or corrupt zstd data: {err or f'zstd exit code {code}'}")


def _read_tar(path: Path, fmt: Format, stager: _Stager) -> None:
    last = "(start of archive)"
    try:
        with _tar_stream(path, fmt) as stream, tarfile.open(fileobj=stream, mode="r|", bufsize=CHUNK) as tar:
            for member in tar:
                offset = member.offset_data if fmt is Format.TAR else -1
                entry = _Entry(member.name, _entry_kind(member), member.size, member.linkname, offset)
                reader = tar.extractfile(member) if member.isreg() else None
                stager.accept(entry, reader)
                last = member.name
    except (tarfile.TarError, EOFError) as error:
        raise BundleError(f"{path}: truncated or corrupt archive after entry {last!r}: {error}") from None
    if stager.entries == 0:
        raise BundleError(f"{path}: the archive holds no entries")


_LLS = re.compile(r"^(?P<mode>\S{10})\s+\S+\s+\S+\s+\S+\s+\S+\s+(?P<name>.*)$")


def _read_squashfs(path: Path, work: Path, stager: _Stager) -> None:
    unsquashfs = need("unsquashfs", "squashfs-tools", f"reading {path.name} (squashfs)")
    listing = subprocess.run(
        [unsquashfs, "-lls", "-n", "-d", "", str(path)], capture_output=True, text=True, check=False
    )
    if listing.returncode != 0:
        raise BundleError(
            f"{path}: truncated or corrupt squashfs image: {listing.stderr.strip() or listing.stdout.strip()}"
        )
    kinds: dict[str, Literal["file", "dir", "symlink", "device", "fifo", "other"]] = {
        "-": "file",
        "d": "dir",
        "l": "symlink",
        "c": "device",
        "b": "device",
        "p": "fifo",
        "s": "other",
    }
    for line in listing.stdout.splitlines():
        match = _LLS.match(line)
        if not match:
            continue
        name, _, link = match["name"].partition(" -> ")
        name = name.removeprefix("/")  # listed under the empty destination "-d ''"
        kind = kinds.get(match["mode"][0], "other")
        if kind not in ("file", "dir"):
            stager.accept(_Entry(name, kind, 0, link), None)
    raw = work / "raw"
    done = subprocess.run(
        [unsquashfs, "-n", "-q", "-no-xattrs", "-da", "8", "-fr", "8", "-d", str(raw), str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        message = done.stderr.strip() or done.stdout.strip()
        if "No space left" in message:
            raise OSError(28, "No space left on device", str(raw))
        raise BundleError(f"{path}: cannot unpack the squashfs image: {message}")
    try:
        for dirpath, dirnames, filenames in os.walk(raw):
            dirnames.sort()
            for name in sorted(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
                full = Path(dirpath, name)
                rel = full.relative_to(raw).as_posix()
                info = full.lstat()
                if stat.S_ISREG(info.st_mode):
                    with full.open("rb") as f:
                        stager.accept(_Entry(rel, "file", info.st_size), f, src_path=full)
                else:
                    other: Literal["symlink", "device", "fifo", "other"] = (
                        "symlink"
                        if stat.S_ISLNK(info.st_mode)
                        else "device"
                        if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
                        else "fifo"
                        if stat.S_ISFIFO(info.st_mode)
                        else "other"
                    )
                    stager.accept(_Entry(rel, other, 0, os.readlink(full) if other == "symlink" else ""), None)
    finally:
        shutil.rmtree(raw, ignore_errors=True)


# ---------------------------------------------------------------------- verification


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError) as error:
        raise BundleError(f"{what} is not valid JSON: {error}") from None


def _config_platform(layout: LayoutDir, manifest_digest: str) -> str:
    manifest = layout.read_json(manifest_digest)
    config = layout.read_json(check_digest((manifest.get("config") or {}).get("digest"), f"manifest {manifest_digest}"))
    return str(
        Platform(str(config.get("os", "")), str(config.get("architecture", "")), str(config.get("variant", "") or ""))
    )


def platforms_of(layout: LayoutDir, digest: str, media_type: str) -> tuple[str, ...]:
    """The platforms an image offers: its index's entries, or its config's os/architecture."""
    if media_type in INDEX_TYPES:
        return tuple(index_platforms(layout.read_json(digest)))
    return (_config_platform(layout, digest),)


def _oci_images(source: Path, layout: LayoutDir) -> tuple[list[BundleImage], Literal["fogwire", "oci"]]:
    oci_layout = layout.root / OCI_LAYOUT
    if oci_layout.exists():
        version = _load_json(oci_layout, f"{source}: oci-layout")
        if not isinstance(version, dict) or version.get("imageLayoutVersion") != "1.0.0":
            raise BundleError(f"{source}: oci-layout is not imageLayoutVersion 1.0.0")
    index = _load_json(layout.root / INDEX, f"{source}: index.json")
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise BundleError(f"{source}: index.json has no manifests list")
    listed: dict[str, dict[str, Any]] = {}
    kind: Literal["fogwire", "oci"] = "oci"
    manifest_path = layout.root / BUNDLE_MANIFEST
    if manifest_path.exists():
        kind = "fogwire"
        document = _load_json(manifest_path, f"{source}: {BUNDLE_MANIFEST}")
        if not isinstance(document, dict):
            raise BundleError(f"{source}: {BUNDLE_MANIFEST} is not a JSON object")
        for blob in document.get("blobs") or []:
            digest = check_digest(
                blob.get("digest") if isinstance(blob, dict) else None, f"{source}: {BUNDLE_MANIFEST}"
            )
            if not layout.has(digest):
                raise BundleError(f"{source}: blob {digest} listed in {BUNDLE_MANIFEST} is missing from the bundle")
            if isinstance(blob.get("size"), int) and blob["size"] != layout.size(digest):
                raise BundleError(
                    f"{source}: blob {digest} holds {layout.size(digest)} bytes, {BUNDLE_MANIFEST} says {blob['size']}"
                )
        for image in document.get("images") or []:
            if isinstance(image, dict) and isinstance(image.get("digest"), str):
                listed[image["digest"]] = image
    images: list[BundleImage] = []
    for number, descriptor in enumerate(index["manifests"], start=1):
        where = f"{source}: index.json manifests[{number - 1}]"
        if not isinstance(descriptor, dict):
            raise BundleError(f"{where} is not an object")
        digest = check_digest(descriptor.get("digest"), where)
        media_type = str(descriptor.get("mediaType", ""))
        for _ in layout.walk(digest, media_type, where):
            pass
        if not media_type:
            media_type = str(layout.read_json(digest).get("mediaType", ""))
        annotations = descriptor.get("annotations") or {}
        name = str(annotations.get(CONTAINERD_NAME) or annotations.get(REF_NAME) or "")
        if digest in listed and ("/" not in name and ":" not in name):
            name = str(listed[digest].get("reference", name))
        if not name:
            name = f"unnamed-{number}@{digest}"
        images.append(
            BundleImage(name, digest, media_type, layout.size(digest), platforms_of(layout, digest, media_type))
        )
    if not images:
        raise BundleError(f"{source}: index.json lists no images")
    return images, kind


def _koffer_images(source: Path, layout: LayoutDir, koffer_dir: Path) -> list[BundleImage]:
    repositories = koffer_dir / "repositories"
    images: list[BundleImage] = []
    for link in sorted(repositories.rglob("_manifests/tags/*/current/link")) if repositories.exists() else []:
        rel = link.relative_to(repositories).parts
        cut = rel.index("_manifests")
        repository, tag = "/".join(rel[:cut]), rel[cut + 2]
        where = f"{source}: repository {repository} tag {tag}"
        digest = check_digest(link.read_text().strip(), where)
        if not layout.has(digest):
            raise BundleError(f"{where}: manifest blob {digest} is missing from the bundle")
        manifest = layout.read_json(digest)
        media_type = str(manifest.get("mediaType", ""))
        for _ in layout.walk(digest, media_type, where):
            pass
        images.append(
            BundleImage(
                f"{repository}:{tag}", digest, media_type, layout.size(digest), platforms_of(layout, digest, media_type)
            )
        )
    if not images:
        raise BundleError(f"{source}: a registry storage tree (Koffer bundle) with no tagged image")
    return images


def stage(path: Path, work: Path, progress: Progress | None = None) -> StagedBundle:
    """Unpack the bundle at ``path`` into ``work`` and verify it completely (blocking).

    Raises :class:`BundleError` naming the file and the problem; ``OSError`` (a full
    disk) passes through for the caller to report. ``work`` is the caller's to remove.
    """
    progress = progress or Progress.silent()
    path = Path(path)
    fmt = detect(path)
    sidecar = check_sidecar(path)
    progress.start(f"verifying {path.name}")
    progress.expect(path.stat().st_size)
    try:
        return _stage(path, fmt, sidecar, work, progress)
    except BundleError as error:
        if str(path) in str(error):
            raise
        raise BundleError(f"{path}: {error}") from None


def _stage(path: Path, fmt: Format, sidecar: bool, work: Path, progress: Progress) -> StagedBundle:
    stager = _Stager(path, work, progress, in_place=fmt is Format.TAR)
    if fmt is Format.SQUASHFS:
        _read_squashfs(path, work, stager)
    else:
        _read_tar(path, fmt, stager)
    layout = stager.layout
    if (layout.root / INDEX).exists():
        images, kind = _oci_images(path, layout)
        bundle_kind: Literal["fogwire", "oci", "koffer"] = kind
    elif stager.koffer_seen:
        if not sidecar:
            log.warning("%s: Koffer bundle without %s.sha256 beside it; relying on blob digests", path, path.name)
        images = _koffer_images(path, layout, stager.koffer_dir)
        bundle_kind = "koffer"
    else:
        raise BundleError(
            f"{path}: no index.json (OCI image layout) and no docker/registry/v2 tree (Koffer bundle): not a bundle"
        )
    progress.finish(f"verifying {path.name}", f"{len(images)} image(s) verified")
    return StagedBundle(path, bundle_kind, fmt, layout, tuple(images), stager.blob_bytes, sidecar)
