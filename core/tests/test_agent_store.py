"""The SQLite state file, sd_notify over a real unix datagram socket, and file helpers."""

from __future__ import annotations

import os
import socket
import sqlite3
import stat
from pathlib import Path

import yaml

from fogwire.agent import remove_microservice, write_documents
from fogwire.store import MicroserviceRecord, Store
from fogwire.supervise import sd_notify, watchdog_interval


def test_state_file_is_private_wal_and_keeps_desired_state(tmp_path: Path) -> None:
    path = tmp_path / "state" / "state.db"
    store = Store.open(path)
    documents = [{"kind": "Application", "spec": {"microservices": []}}]
    store.save_applied("desired.yaml", "sha256:1", documents)
    store.put(MicroserviceRecord("web", status="running", restarts=2, last_error="boom"))
    store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again = Store.open(path)
    applied = again.load_applied()
    assert applied is not None and applied.documents == documents and applied.digest == "sha256:1"
    record = again.records()["web"]
    assert (record.status, record.restarts, record.last_error) == ("running", 2, "boom")
    again.forget(["web"])
    assert again.records() == {}
    again.close()


def test_event_log_is_bounded(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.db")
    store.event_limit = 100
    for i in range(1000):
        store.add_event("web", "test", f"event {i}")
    assert store.event_count() <= 150
    assert store.events(1)[0].message == "event 999"
    store.close()


def test_sd_notify_sends_a_datagram(tmp_path: Path) -> None:
    address = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(address))
        server.settimeout(5)
        assert sd_notify("WATCHDOG=1", {"NOTIFY_SOCKET": str(address)})
        assert server.recv(100) == b"WATCHDOG=1"
    assert not sd_notify("READY=1", {})
    assert not sd_notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "absent.sock")})


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "20000000"}) == 10.0
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None


def test_write_documents_is_atomic_and_delete_edits_documents(tmp_path: Path) -> None:
    documents = [
        {"kind": "Application", "spec": {"microservices": [{"name": "a"}, {"name": "b"}]}},
        {"kind": "Microservice", "metadata": {"name": "c"}, "spec": {}},
    ]
    target = tmp_path / "desired.yaml"
    write_documents(target, documents)
    assert list(yaml.safe_load_all(target.read_text())) == documents
    assert [p.name for p in tmp_path.iterdir()] == ["desired.yaml"]
    without_a = remove_microservice(documents, "a")
    assert without_a is not None and without_a[0]["spec"]["microservices"] == [{"name": "b"}]
    without_c = remove_microservice(documents, "c")
    assert without_c is not None and len(without_c) == 1
    assert remove_microservice(documents, "zzz") is None


def test_sd_notify_never_blocks_on_a_full_queue(tmp_path: Path) -> None:
    address = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(address))
        results = [sd_notify("WATCHDOG=1", {"NOTIFY_SOCKET": str(address)}) for _ in range(2000)]
        assert results[0] is True
        assert results[-1] is False  # dropped, not blocked
