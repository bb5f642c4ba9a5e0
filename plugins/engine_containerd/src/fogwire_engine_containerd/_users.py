"""An image's named ``User``, resolved from the image's own ``/etc/passwd`` and ``/etc/group``.

Docker and Podman run an image whose config says ``User: nobody`` as that
user; so does this plugin. containerd leaves it to the client: the plugin reads
the two files from the workload's prepared snapshot. The snapshot's mounts name
the layer directories on the host (overlayfs ``upperdir``/``lowerdir``, or one
bind source), so the files are read in place, top layer first, with overlayfs
whiteouts and opaque directories honoured, without mounting anything.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from fogwire.errors import EngineError

_OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")


@attrs.frozen
class ProcessUser:
    """The numeric identity a workload's process runs as."""

    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()


def needs_lookup(user: str) -> bool:
    """True unless ``user`` is empty or a numeric ``uid:gid``.

    A name or a group name needs the image's files, and so does a bare uid: its
    gid and groups come from its ``/etc/passwd`` entry, as with Docker.
    """
    if not user:
        return False
    name, _, group = user.partition(":")
    return not (name.isdigit() and group.isdigit())


def layer_dirs(mounts: Iterable[Any]) -> list[Path]:
    """The snapshot's directories on the host, the topmost first (from containerd ``Mount`` messages)."""
    dirs: list[Path] = []
    for mount in mounts:
        if mount.type == "bind":
            dirs.append(Path(mount.source))
            continue
        upper: list[Path] = []
        lower: list[Path] = []
        for option in mount.options:
            key, _, value = option.partition("=")
            if key == "upperdir":
                upper = [Path(value)]
            elif key == "lowerdir":
                lower = [Path(d) for d in value.split(":") if d]
        dirs.extend(upper + lower)
    return dirs


def _opaque(directory: Path) -> bool:
    for name in _OPAQUE_XATTRS:
        try:
            if os.getxattr(directory, name) == b"y":
                return True
        except OSError:
            continue
    return False


def read_image_file(layers: Sequence[Path], relative: str) -> str | None:
    """The text of ``relative`` (e.g. ``etc/passwd``) as the container will see it, or ``None``."""
    parts = Path(relative).parts
    for layer in layers:
        path = layer.joinpath(*parts)
        try:
            info = path.lstat()
        except OSError:
            info = None
        if info is not None:
            if stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:
                return None  # a whiteout: deleted in this layer
            if stat.S_ISREG(info.st_mode):
                try:
                    return path.read_text(errors="replace")
                except OSError:
                    return None
            return None  # a directory or a link where a file should be: not followed
        # a directory on the way marked opaque hides everything below it in lower layers
        if any(_opaque(layer.joinpath(*parts[:i])) for i in range(1, len(parts))):
            return None
    return None


def _entries(text: str | None, fields: int) -> list[list[str]]:
    out = []
    for line in (text or "").splitlines():
        if not line or line.startswith("#"):
            continue
        cols = line.split(":")
        if len(cols) >= fields:
            out.append(cols)
    return out


def resolve_user(user: str, layers: Sequence[Path]) -> ProcessUser:
    """Resolve ``user`` against the image's files, as Docker does.

    ``name`` takes the uid and primary gid from ``/etc/passwd``; ``:group``
    sets the gid instead (by name from ``/etc/group``, or a number); without
    it, the user's other groups in ``/etc/group`` become additional gids. Raises
    :class:`EngineError` naming what is missing.
    """
    name, _, group = user.partition(":")
    passwd = _entries(read_image_file(layers, "etc/passwd"), 7)
    groups = _entries(read_image_file(layers, "etc/group"), 4)
    if name.isdigit():
        uid = int(name)
        account = next((e for e in passwd if e[2] == name), None)
        gid = int(account[3]) if account is not None and account[3].isdigit() else 0
        username = account[0] if account is not None else None
    else:
        account = next((e for e in passwd if e[0] == name), None)
        if account is None:
            raise EngineError(f"user {name!r} is not in the image's /etc/passwd")
        if not (account[2].isdigit() and account[3].isdigit()):
            raise EngineError(f"the image's /etc/passwd entry of {name!r} has no numeric uid and gid")
        uid, gid, username = int(account[2]), int(account[3]), name
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            entry = next((g for g in groups if g[0] == group), None)
            if entry is None or not entry[2].isdigit():
                raise EngineError(f"group {group!r} is not in the image's /etc/group")
            gid = int(entry[2])
    additional: list[int] = []
    if username is not None and not group:
        for entry in groups:
            if username in entry[3].split(",") and entry[2].isdigit() and int(entry[2]) != gid:
                additional.append(int(entry[2]))
    return ProcessUser(uid, gid, tuple(sorted(set(additional))))
