"""The agent's state in one SQLite file (stdlib ``sqlite3``, WAL, mode 0600).

It holds what must survive a crash or a reboot without network:

* the desired state last applied, as the raw documents (so the agent can start
  from it when no config source is reachable);
* per microservice: status, the hashes and spec of the workload last known good,
  a rejected (rolled back) hash, failures, restarts, the last error, and the
  *intent* of an action in progress (so a restarted agent finishes it);
* per microservice: the ``rebuild`` request waiting to be carried out and the
  one last carried out (so a rebuild interrupted by a crash is done again, and a
  finished one is not repeated after a restart);
* the microservices an operator stopped (``fogwire ms stop``), which stay
  stopped until started again, across restarts;
* an event log bounded to :attr:`Store.event_limit` rows.

Writes are small and local; the reconciler calls them through
:meth:`Store.call`, which runs them in a worker thread so the event loop never
waits on the disk.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS applied (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    origin TEXT NOT NULL,
    digest TEXT NOT NULL,
    documents TEXT NOT NULL,
    applied_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS microservices (
    name TEXT PRIMARY KEY,
    status TEXT NOT NULL DEFAULT 'pending',
    config_hash TEXT,
    good_spec TEXT,
    good_hash TEXT,
    rejected_hash TEXT,
    failures INTEGER NOT NULL DEFAULT 0,
    restarts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    intent TEXT,
    intent_data TEXT,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rebuilds (
    name TEXT PRIMARY KEY,
    requested TEXT,
    done TEXT,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS held (
    name TEXT PRIMARY KEY,
    since REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    microservice TEXT,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
"""


@attrs.frozen
class AppliedState:
    """The desired state last applied: its raw documents and where they came from."""

    origin: str
    digest: str
    documents: list[Any]
    applied_at: float


@attrs.frozen
class MicroserviceRecord:
    """What the store knows about one microservice."""

    name: str
    status: str = "pending"
    config_hash: str | None = None
    good_spec: str | None = None
    """JSON of the last workload spec that ran healthy (for rollback)."""
    good_hash: str | None = None
    rejected_hash: str | None = None
    """Config hash of a replacement that was rolled back; not retried until the desired spec changes."""
    failures: int = 0
    restarts: int = 0
    last_error: str | None = None
    intent: str | None = None
    intent_data: str | None = None
    updated_at: float = 0.0


@attrs.frozen
class RebuildRecord:
    """The rebuild requests of one microservice (see :func:`fogwire.resolve.rebuild_request`)."""

    name: str
    requested: str | None = None
    """A request received and not yet carried out."""
    done: str | None = None
    """The request last carried out; cleared when the microservice says ``rebuild: false`` again."""


@attrs.frozen
class Event:
    """One line of the event log."""

    id: int
    time: float
    microservice: str | None
    kind: str
    message: str


class Store:
    """The SQLite state file. Open it with :meth:`open`; one instance per process."""

    event_limit = 1000
    """The event log keeps at most this many rows."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self._lock = threading.Lock()
        self.path = path
        self._inserts = 0

    @classmethod
    def open(cls, path: Path) -> Store:
        """Open (creating if needed, mode 0600) the state file at ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        for suffix in ("-wal", "-shm"):
            extra = path.with_name(path.name + suffix)
            if extra.exists():
                os.chmod(extra, 0o600)
        return cls(db, path)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run one store method in a worker thread."""
        return await asyncio.to_thread(fn, *args)

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # -- desired state ------------------------------------------------------------------

    def save_applied(self, origin: str, digest: str, documents: list[Any]) -> None:
        """Record ``documents`` as the desired state last applied."""
        text = json.dumps(documents, default=str)
        self._execute(
            "INSERT INTO applied (id, origin, digest, documents, applied_at) VALUES (1, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET origin=excluded.origin, digest=excluded.digest, "
            "documents=excluded.documents, applied_at=excluded.applied_at",
            (origin, digest, text, time.time()),
        )

    def load_applied(self) -> AppliedState | None:
        """The desired state last applied, or ``None`` if nothing was ever applied."""
        rows = self._execute("SELECT origin, digest, documents, applied_at FROM applied WHERE id = 1")
        if not rows:
            return None
        origin, digest, documents, applied_at = rows[0]
        return AppliedState(origin, digest, json.loads(documents), applied_at)

    # -- microservices ------------------------------------------------------------------

    def records(self) -> dict[str, MicroserviceRecord]:
        """Every microservice the store knows, by name."""
        fields = [f.name for f in attrs.fields(MicroserviceRecord)]
        rows = self._execute(f"SELECT {', '.join(fields)} FROM microservices")
        return {row[0]: MicroserviceRecord(*row) for row in rows}

    def put(self, record: MicroserviceRecord, rebuild: RebuildRecord | None = None) -> None:
        """Insert or replace one microservice's record (and its rebuild record, in the same transaction)."""
        fields = [f.name for f in attrs.fields(MicroserviceRecord)]
        values = [getattr(record, f) for f in fields]
        values[fields.index("updated_at")] = time.time()
        sql = f"INSERT OR REPLACE INTO microservices ({', '.join(fields)}) VALUES ({', '.join('?' * len(fields))})"
        if rebuild is None:
            self._execute(sql, values)
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(sql, values)
                self._put_rebuild(rebuild)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def forget(self, names: Sequence[str]) -> None:
        """Drop the records (and rebuild records) of microservices no longer desired nor running."""
        for name in names:
            self._execute("DELETE FROM microservices WHERE name = ?", (name,))
            self._execute("DELETE FROM rebuilds WHERE name = ?", (name,))
            self._execute("DELETE FROM held WHERE name = ?", (name,))

    # -- rebuild requests ---------------------------------------------------------------

    def rebuilds(self) -> dict[str, RebuildRecord]:
        """Every microservice's rebuild record, by name."""
        rows = self._execute("SELECT name, requested, done FROM rebuilds")
        return {row[0]: RebuildRecord(*row) for row in rows}

    def put_rebuild(self, rebuild: RebuildRecord) -> None:
        """Insert or replace one microservice's rebuild record."""
        with self._lock:
            self._put_rebuild(rebuild)

    def _put_rebuild(self, rebuild: RebuildRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO rebuilds (name, requested, done, updated_at) VALUES (?, ?, ?, ?)",
            (rebuild.name, rebuild.requested, rebuild.done, time.time()),
        )

    # -- operator holds -----------------------------------------------------------------

    def held(self) -> set[str]:
        """The microservices an operator stopped and the reconciler must leave stopped."""
        return {row[0] for row in self._execute("SELECT name FROM held")}

    def set_held(self, name: str, held: bool) -> None:
        """Hold ``name`` stopped (``held``) or release it."""
        if held:
            self._execute("INSERT OR REPLACE INTO held (name, since) VALUES (?, ?)", (name, time.time()))
        else:
            self._execute("DELETE FROM held WHERE name = ?", (name,))

    # -- events -------------------------------------------------------------------------

    def add_event(self, microservice: str | None, kind: str, message: str) -> None:
        """Append to the event log, trimming it to :attr:`event_limit` rows."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO events (time, microservice, kind, message) VALUES (?, ?, ?, ?)",
                (time.time(), microservice, kind, message),
            )
            self._inserts += 1
            if self._inserts % 50 == 0 or self._inserts == 1:
                self._db.execute("DELETE FROM events WHERE id <= ?", ((cursor.lastrowid or 0) - self.event_limit,))

    def events(self, limit: int = 50, microservice: str | None = None) -> list[Event]:
        """The most recent events, oldest first."""
        if microservice is None:
            rows = self._execute(
                "SELECT id, time, microservice, kind, message FROM events ORDER BY id DESC LIMIT ?", (limit,)
            )
        else:
            rows = self._execute(
                "SELECT id, time, microservice, kind, message FROM events WHERE microservice = ? ORDER BY id DESC LIMIT ?",
                (microservice, limit),
            )
        return [Event(*row) for row in reversed(rows)]

    def event_count(self) -> int:
        """How many events the log holds."""
        return int(self._execute("SELECT COUNT(*) FROM events")[0][0])
