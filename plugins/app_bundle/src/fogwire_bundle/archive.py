"""Packing a layout directory into a bundle file: tar, tar + zstd, or squashfs.

zstd goes through Debian's ``zstd`` command (package ``zstd``) in a pipe, so core
needs no compiled dependency and memory stays flat; squashfs through
``mksquashfs`` / ``unsquashfs`` (package ``squashfs-tools``). A bundle is written
to ``FILE.partial`` and renamed into place when complete, with ``FILE.sha256``
(a ``sha256sum`` line, as Koffer writes) beside it.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import IO

from fogwire_bundle.errors import BundleError
from fogwire_bundle.layout import BUNDLE_MANIFEST, INDEX, OCI_LAYOUT
from fogwire_bundle.oci import CHUNK

MTIME = 0
"""Every entry's mtime, so the same images give the same bundle bytes."""


class Format(enum.Enum):
    """How the layout is packed."""

    TAR = "tar"
    TAR_ZSTD = "tar.zst"
    SQUASHFS = "squashfs"


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
SQUASHFS_MAGIC = b"hsqs"


def detect(path: Path) -> Format:
    """The format of the bundle at ``path`` from its first bytes (not its name)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(512)
    except OSError as error:
        raise BundleError(f"{path}: cannot read: {error.strerror or error}") from None
    if size == 0:
        raise BundleError(f"{path}: the file is empty (0 bytes); it is not a bundle (an interrupted copy?)")
    if head.startswith(ZSTD_MAGIC):
        return Format.TAR_ZSTD
    if head.startswith(SQUASHFS_MAGIC):
        return Format.SQUASHFS
    if len(head) >= 262 and head[257:262] == b"ustar":
        return Format.TAR
    raise BundleError(f"{path}: not a bundle: neither a tar archive, a zstd-compressed tar nor a squashfs image")


def need(tool: str, package: str, why: str) -> str:
    """The path of ``tool``, or a clear error saying which Debian package brings it."""
    found = shutil.which(tool)
    if found is None:
        raise BundleError(f"{why} needs the {tool} command: install the Debian package {package}")
    return found


def tar_entry(name: str, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    """A deterministic tar header: root-owned, fixed mtime, 0644 files / 0755 directories."""
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.size = size
    info.mtime = MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _layout_entries(root: Path) -> list[str]:
    """Layout files in archive order: small metadata first, then sorted blobs."""
    blobs = sorted(p.name for p in (root / "blobs" / "sha256").iterdir() if not p.name.endswith(".tmp"))
    return [OCI_LAYOUT, INDEX, BUNDLE_MANIFEST, *(f"blobs/sha256/{b}" for b in blobs)]


def write_tar(root: Path, out: IO[bytes]) -> None:
    """Stream the layout at ``root`` as a tar into ``out`` (deterministic entries)."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=CHUNK) as tar:
        tar.addfile(tar_entry("blobs", directory=True))
        tar.addfile(tar_entry("blobs/sha256", directory=True))
        for name in _layout_entries(root):
            path = root / name
            if not path.exists():
                continue
            with path.open("rb") as f:
                tar.addfile(tar_entry(name, path.stat().st_size), f)


def pack(root: Path, output: Path, fmt: Format) -> None:
    """Pack the layout at ``root`` into ``output`` (written as ``output.partial``, then renamed).

    Also writes ``output.sha256``. On any failure nothing is left behind.
    """
    partial = output.with_name(output.name + ".partial")
    try:
        if fmt is Format.TAR:
            with partial.open("wb") as out:
                write_tar(root, out)
        elif fmt is Format.TAR_ZSTD:
            zstd = need("zstd", "zstd", "--compress zstd")
            with partial.open("wb") as out:
                proc = subprocess.Popen([zstd, "-q", "-c", "-3", "-T0"], stdin=subprocess.PIPE, stdout=out)
                assert proc.stdin is not None
                try:
                    write_tar(root, proc.stdin)
                finally:
                    proc.stdin.close()
                    code = proc.wait()
                if code != 0:
                    raise BundleError(f"{output}: zstd failed with exit code {code}")
        else:
            mksquashfs = need("mksquashfs", "squashfs-tools", "--format squashfs")
            done = subprocess.run(
                [
                    mksquashfs,
                    str(root),
                    str(partial),
                    "-noappend",
                    "-quiet",
                    "-no-progress",
                    "-all-root",
                    "-no-xattrs",
                    "-mkfs-time",
                    str(MTIME),
                    "-all-time",
                    str(MTIME),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise BundleError(f"{output}: mksquashfs failed: {done.stderr.strip() or done.stdout.strip()}")
        digest = file_sha256(partial)
        os.replace(partial, output)
        sidecar = output.with_name(output.name + ".sha256")
        sidecar.write_text(f"{digest}  {output.name}\n")
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read chunk by chunk."""
    hasher = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def check_sidecar(path: Path, *, required: bool = False) -> bool:
    """Verify ``path.sha256`` (a ``sha256sum`` line) if it exists; return whether one was checked.

    A mismatch is an error naming both files; so is a missing sidecar when ``required``.
    """
    sidecar = path.with_name(path.name + ".sha256")
    if not sidecar.exists():
        if required:
            raise BundleError(f"{path}: {sidecar.name} is missing; it is needed to verify the bundle")
        return False
    try:
        text = sidecar.read_text(errors="replace").strip()
    except OSError as error:
        raise BundleError(f"{sidecar}: cannot read: {error.strerror or error}") from None
    expected = text.split()[0].lower() if text else ""
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise BundleError(f"{sidecar}: not a sha256sum line (expected '<64 hex>  {path.name}')")
    actual = file_sha256(path)
    if actual != expected:
        raise BundleError(
            f"{path}: its sha256 is {actual} but {sidecar.name} says {expected}: the bundle was altered or damaged in transit"
        )
    return True
