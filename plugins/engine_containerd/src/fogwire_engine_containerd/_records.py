"""What the containerd engine remembers about each workload beyond containerd's own records.

containerd keeps containers and tasks, not what a node agent needs across its own
restarts: exit codes, restart counts, whether the user stopped a workload, its
network. Each workload's record is a small JSON file under the agent's data dir,
written atomically (saves of different workloads may run at once).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

log = logging.getLogger(__name__)


@attrs.define
class Record:
    """One workload's remembered state."""

    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    restart_count: int = 0
    oom_killed: bool = False
    user_stopped: bool = False
    running: bool = False
    """The plugin started it and has not seen it exit (what it should be after a fault)."""
    cni: dict[str, Any] | None = None
    pid: int = 0

    def to_json(self) -> str:
        """The record as the JSON written to its file."""
        return json.dumps(attrs.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Record:
        """A record from its file's JSON; keys it no longer has are ignored."""
        fields = {f.name for f in attrs.fields(cls)}
        return cls(**{k: v for k, v in json.loads(text).items() if k in fields})


class Records:
    """The records of the engine's workloads, in memory and in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._records: dict[str, Record] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._records

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._records))

    def get(self, name: str) -> Record | None:
        """``name``'s record, if it has one."""
        return self._records.get(name)

    def of(self, name: str) -> Record:
        """``name``'s record, made (empty) if it has none yet."""
        rec = self._records.get(name)
        if rec is None:
            rec = self._records[name] = Record()
        return rec

    def new(self, name: str) -> Record:
        """A fresh record for a workload just created."""
        rec = self._records[name] = Record()
        return rec

    def drop(self, name: str) -> None:
        """Forget ``name`` (its file is removed with :meth:`delete_file`)."""
        self._records.pop(name, None)

    def delete_file(self, name: str) -> None:
        """Remove ``name``'s file (blocking)."""
        (self.directory / f"{name}.json").unlink(missing_ok=True)

    def save(self, name: str) -> None:
        """Write ``name``'s record to its file atomically (blocking)."""
        rec = self._records.get(name)
        if rec is None:
            return
        path = self.directory / f"{name}.json"
        tmp = path.with_name(f".{name}.{os.urandom(4).hex()}.tmp")  # saves may run concurrently
        try:
            tmp.write_text(rec.to_json())
            tmp.replace(path)
        except OSError as error:
            log.warning("cannot save the record of workload %s: %s", name, error)
            tmp.unlink(missing_ok=True)

    def load(self) -> None:
        """Read every record file (blocking); unreadable ones are skipped."""
        for path in self.directory.glob("*.json"):
            with contextlib.suppress(OSError, ValueError, TypeError):
                self._records[path.stem] = Record.from_json(path.read_text())
