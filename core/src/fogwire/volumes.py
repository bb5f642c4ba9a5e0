"""iofogctl's ``Volume`` documents on this node: a folder copied to where microservices bind it.

``iofogctl deploy`` pushes a Volume over SSH to each agent it names; a fogwire node
given the document (the ``file`` source, ``fogwire apply``) is one of those agents
and copies the folder itself, before the workloads that bind the destination run.
Files are replaced atomically (a workload reading one sees the old or the new
content) and get the Volume's ``permissions``; nothing at the destination is
deleted, as ``iofogctl`` deletes nothing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from fogwire.errors import FogwireError
from fogwire.model.iofog import VolumeSpec


def volume_label(volume: VolumeSpec) -> str:
    """How events name ``volume``: its name, else its destination."""
    return f"Volume {volume.name or volume.destination!r}"


def push_volume(volume: VolumeSpec) -> int:
    """Copy the files under ``volume.source`` into ``volume.destination``; the number of files copied.

    Raises :class:`FogwireError` when the source is not a folder on this node. A
    source that is the destination is left as it is (0 files).
    """
    source, destination = Path(volume.source), Path(volume.destination)
    if not source.is_dir():
        raise FogwireError(f"{volume_label(volume)}: source {str(source)!r} is not a folder on this node")
    if destination.exists() and source.resolve() == destination.resolve():
        return 0
    mode = int(volume.permissions.removeprefix("0o"), 8) if volume.permissions else None
    copied = 0
    for folder, _, files in os.walk(source):
        target = destination / Path(folder).relative_to(source)
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            _replace_with_copy(Path(folder) / name, target / name, mode)
            copied += 1
    return copied


def _replace_with_copy(source: Path, target: Path, mode: int | None) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)
    try:
        if source.is_symlink():
            os.unlink(temporary)
            os.symlink(os.readlink(source), temporary)
        else:
            shutil.copy2(source, temporary)
            if mode is not None:
                os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
