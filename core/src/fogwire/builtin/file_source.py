"""The ``file`` config source: desired state from a local YAML (or JSON) file, watched.

The file may hold several YAML documents; :meth:`FileSource.fetch` returns them as a
list. Changes are found by polling the file's identity (inode, size, mtime) every
``poll_interval`` seconds (option, default 0.5), which sees in-place writes, atomic
renames and symlink swaps alike, on every OS, without a dependency.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import yaml

from fogwire.errors import SourceError
from fogwire.payloads import Documents
from fogwire.sources import ChangeNotice, ConfigSnapshot, ConfigSource, SourceContext


def load_documents(text: str, origin: str) -> Documents:
    """Parse every YAML document in ``text``; empty documents are dropped.

    Raises :class:`SourceError` naming ``origin`` and the line on a syntax error.
    """
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{origin}:{mark.line + 1}" if mark is not None else origin
        raise SourceError(f"{where}: not valid YAML: {getattr(error, 'problem', None) or error}") from error


class FileSource(ConfigSource[Documents]):
    """Reads a YAML file named by the ``path`` option and notices when it changes."""

    name = "file"

    def __init__(self, context: SourceContext) -> None:
        super().__init__(context)
        path = context.options.get("path")
        if not path:
            raise SourceError("the 'file' config source needs a 'path' option")
        self.path = Path(str(path))
        self.poll_interval = float(context.options.get("poll_interval", 0.5))

    async def fetch(self) -> ConfigSnapshot[Documents]:
        """Read and parse the file."""
        try:
            text = await asyncio.to_thread(self.path.read_text, encoding="utf-8")
        except OSError as error:
            raise SourceError(f"cannot read desired-state file {self.path}: {error.strerror or error}") from error
        return ConfigSnapshot.of(str(self.path), load_documents(text, str(self.path)))

    def _identity(self) -> tuple[int, int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    async def changes(self) -> AsyncIterator[ChangeNotice]:
        """Yield a notice whenever the file's identity changes (and when it reappears)."""
        last = self._identity()
        while True:
            await asyncio.sleep(self.poll_interval)
            current = self._identity()
            if current != last:
                last = current
                yield ChangeNotice("deleted" if current is None else f"{self.path} changed")
