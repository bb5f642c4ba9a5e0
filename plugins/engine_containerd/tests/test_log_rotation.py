"""Workload log files: rotation past a size, at most N files, reading across rotations."""

from __future__ import annotations

from pathlib import Path

from fogwire_engine_containerd._logs import LogReader, remove_logs, rotated, write_lines


def lines(prefix: str, count: int) -> list[bytes]:
    return [f"{prefix}-{i:04d}".encode() for i in range(count)]


def test_a_log_is_rotated_past_its_size_and_at_most_max_files_are_kept(tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    for batch in range(40):
        write_lines(log, "stdout", lines(f"b{batch}", 20), max_bytes=4096, max_files=3)
    kept = [*rotated(log), log]
    assert [p.name for p in kept] == ["w.log.2", "w.log.1", "w.log"]
    assert all(p.stat().st_size < 4096 + 2048 for p in kept)  # a file passes the limit by one write at most
    every = LogReader(log).read_all()
    assert every[-1] == ("stdout", "b39-0019")
    texts = [text for _, text in every]
    assert texts == sorted(texts, key=lambda t: (int(t.split("-")[0][1:]), t)), "oldest first, nothing reordered"
    assert "b0-0000" not in texts, "the oldest file was deleted"


def test_one_file_means_the_log_restarts_when_full(tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    for batch in range(10):
        write_lines(log, "stderr", lines(f"b{batch}", 50), max_bytes=2048, max_files=1)
    assert rotated(log) == []
    assert not log.exists() or log.stat().st_size < 2048 + 4096
    write_lines(log, "stderr", [b"after"], max_bytes=2048, max_files=1)
    assert LogReader(log).read_all()[-1] == ("stderr", "after")


def test_a_follower_finishes_the_rotated_file_then_reads_the_new_one(tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    reader = LogReader(log)
    assert reader.read_new() == []  # no file yet
    write_lines(log, "stdout", lines("a", 3), max_bytes=10_000)
    assert [t for _, t in reader.read_new()] == ["a-0000", "a-0001", "a-0002"]
    write_lines(log, "stdout", lines("b", 200), max_bytes=10_000)  # passes the limit: rotated
    assert rotated(log), "the write should have rotated the log"
    write_lines(log, "stdout", lines("c", 2), max_bytes=10_000)
    got = [t for _, t in reader.read_new()]
    assert got == [*(f"b-{i:04d}" for i in range(200)), "c-0000", "c-0001"]
    assert reader.read_new() == []


def test_remove_logs_deletes_the_rotated_files_too(tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    for batch in range(20):
        write_lines(log, "stdout", lines(f"b{batch}", 20), max_bytes=1024, max_files=4)
    assert len(rotated(log)) == 3
    remove_logs(log)
    assert list(tmp_path.iterdir()) == []
