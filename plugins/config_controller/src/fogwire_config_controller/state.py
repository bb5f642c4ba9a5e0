"""What the controller source keeps across restarts, in one SQLite file (WAL, mode 0600).

* the desired state last fetched (the documents handed to the agent) and what was
  left out of it, written before the change is acknowledged: a reboot with no
  network brings the workloads back, and a crash between fetch and ack repeats
  nothing (a ``rebuild: true`` the fetch cleared at the controller is in here);
* the change cursor: the ``lastUpdated`` of the last acknowledged poll and of one
  fetched but not yet acknowledged;
* the node's settings as the controller last gave them (``GET agent/config``);
* the node uuid the state belongs to, and whether the node is deprovisioned (and why).

Calls are small and blocking; the source runs them in a worker thread.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import attrs

SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshot (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    node TEXT NOT NULL,
    documents TEXT NOT NULL,
    rejected TEXT NOT NULL,
    registries TEXT NOT NULL,
    fetched_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@attrs.frozen
class Snapshot:
    """The last fetched desired state: documents, what was rejected (uuid → reason), the registry rows' ids."""

    node: str
    documents: list[Any]
    rejected: dict[str, str]
    registries: list[Any] = attrs.field(repr=False)
    fetched_at: float


class ControllerState:
    """The source's SQLite file; every method is blocking and thread-safe."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self.connection = connection
        self.path = path
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> ControllerState:
        """Open (creating with mode 0600) the state file at ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.executescript(SCHEMA)
        return cls(connection, path)

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self.connection.close()

    def snapshot(self) -> Snapshot | None:
        """The last fetched state, or ``None``."""
        with self._lock:
            row = self.connection.execute(
                "SELECT node, documents, rejected, registries, fetched_at FROM snapshot WHERE id = 1"
            ).fetchone()
        if row is None:
            return None
        return Snapshot(row[0], json.loads(row[1]), json.loads(row[2]), json.loads(row[3]), row[4])

    def save_snapshot(
        self, node: str, documents: list[Any], rejected: dict[str, str], registries: list[Any], cursor: str | None
    ) -> None:
        """Keep a fetched state and the cursor it was fetched at (not yet acknowledged), in one transaction."""
        with self._lock:
            self.connection.execute("BEGIN IMMEDIATE")
            try:
                self.connection.execute(
                    "INSERT OR REPLACE INTO snapshot (id, node, documents, rejected, registries, fetched_at) "
                    "VALUES (1, ?, ?, ?, ?, ?)",
                    (node, json.dumps(documents), json.dumps(rejected), json.dumps(registries), time.time()),
                )
                if cursor is not None:
                    self._put("pending_cursor", cursor)
                self.connection.execute("COMMIT")
            except BaseException:
                self.connection.execute("ROLLBACK")
                raise

    def clear_snapshot(self) -> None:
        """Forget the fetched state (deprovisioned, or provisioned as another node)."""
        with self._lock:
            self.connection.execute("DELETE FROM snapshot")
            self.connection.execute("DELETE FROM kv WHERE key IN ('pending_cursor', 'acked_cursor', 'settings')")

    def _put(self, key: str, value: Any) -> None:
        self.connection.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def put(self, key: str, value: Any) -> None:
        """Keep ``value`` (JSON-able) under ``key``."""
        with self._lock:
            self._put(key, value)

    def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key``, or ``default``."""
        with self._lock:
            row = self.connection.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def delete(self, key: str) -> None:
        """Forget ``key``."""
        with self._lock:
            self.connection.execute("DELETE FROM kv WHERE key = ?", (key,))

    def acknowledged(self, cursor: str) -> None:
        """The controller took the ack of ``cursor``."""
        with self._lock:
            self._put("acked_cursor", cursor)
            self.connection.execute("DELETE FROM kv WHERE key = 'pending_cursor'")


def state_path(state_dir: Path) -> Path:
    """``<state dir>/controller/controller.db``."""
    return state_dir / "controller" / "controller.db"
