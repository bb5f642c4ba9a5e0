"""The ``router-file`` config source: a router config from a local file, watched.

Core's ``file`` source reads ioFog documents for the agent; this one reads the same
kind of file (YAML or JSON, polled for changes) holding one router config, in the
controller's object form or as a skrouterd entity list, for ``fogwire router``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fogwire.builtin.file_source import FileSource
from fogwire.payloads import JSONValue
from fogwire.sources import ChangeNotice, ConfigSnapshot, ConfigSource, SourceContext


class RouterFileSource(ConfigSource[JSONValue]):
    """Reads the router config in the file named by the ``path`` option (the ``file`` source's options)."""

    name = "router-file"

    def __init__(self, context: SourceContext) -> None:
        super().__init__(context)
        self._file = FileSource(context)

    @property
    def path(self) -> str:
        """The watched file."""
        return str(self._file.path)

    async def fetch(self) -> ConfigSnapshot[JSONValue]:
        """The file's one document (a file of several is handed on as their list)."""
        snapshot = await self._file.fetch()
        documents = snapshot.payload
        payload: JSONValue = documents[0] if len(documents) == 1 else documents
        return ConfigSnapshot(snapshot.origin, payload, snapshot.digest)

    def changes(self) -> AsyncIterator[ChangeNotice]:
        """A notice whenever the file changes."""
        return self._file.changes()
