"""A registry's CA in a daemon's certs.d: written for a pull, shared by pulls, removed after, ours only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fogwire.certdirs import MARKER, RegistryCertDirs, registry_host
from fogwire.errors import EngineError
from fogwire.testing.pki import make_pki

HOST = "reg.example:5000"


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    one = make_pki(tmp_path_factory.mktemp("one")).ca_cert.read_text()
    two = make_pki(tmp_path_factory.mktemp("two")).ca_cert.read_text()
    return one, two


def crt_texts(directory: Path) -> list[str]:
    return sorted(p.read_text() for p in directory.glob("*.crt"))


def test_the_ca_is_there_for_the_pull_and_gone_after(tmp_path: Path, cas: tuple[str, str]) -> None:
    dirs = RegistryCertDirs(tmp_path / "certs.d", daemon="dockerd")
    with dirs.trusting(HOST, cas[0]) as directory:
        assert directory == tmp_path / "certs.d" / HOST
        assert crt_texts(directory) == [cas[0].strip() + "\n"]
        assert (directory / MARKER).is_file()
        assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")], "a temporary file is left"
    assert list((tmp_path / "certs.d").iterdir()) == []


def test_pulls_sharing_a_registry_keep_it_until_the_last_one_ends(tmp_path: Path, cas: tuple[str, str]) -> None:
    dirs = RegistryCertDirs(tmp_path, daemon="dockerd")
    with dirs.trusting(HOST, cas[0]) as first:
        assert first is not None
        with dirs.trusting(HOST, cas[0]), dirs.trusting(HOST, cas[1]):
            assert crt_texts(first) == sorted(ca.strip() + "\n" for ca in cas)
        assert crt_texts(first) == [cas[0].strip() + "\n"], "the CA no pull needs is not removed"
    assert not (tmp_path / HOST).exists()


def test_many_threads_at_once(tmp_path: Path, cas: tuple[str, str]) -> None:
    dirs = RegistryCertDirs(tmp_path, daemon="podman")
    seen: list[bool] = []
    barrier = threading.Barrier(8)

    def pull(index: int) -> None:
        with dirs.trusting(HOST, cas[index % 2]) as directory:
            barrier.wait(timeout=10)
            seen.append(directory is not None and len(crt_texts(directory)) == 2)
            barrier.wait(timeout=10)

    threads = [threading.Thread(target=pull, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert seen == [True] * 8
    assert not (tmp_path / HOST).exists()


def test_an_operators_directory_is_used_as_it_is_and_never_touched(tmp_path: Path, cas: tuple[str, str]) -> None:
    theirs = tmp_path / HOST
    theirs.mkdir()
    (theirs / "ca.crt").write_text(cas[1])
    dirs = RegistryCertDirs(tmp_path, daemon="dockerd")
    with dirs.trusting(HOST, cas[0]) as directory:
        assert directory is None
        assert [p.name for p in theirs.iterdir()] == ["ca.crt"]
    dirs.sweep()
    assert [p.name for p in theirs.iterdir()] == ["ca.crt"] and (theirs / "ca.crt").read_text() == cas[1]


def test_files_an_operator_adds_to_our_directory_are_left(tmp_path: Path, cas: tuple[str, str]) -> None:
    dirs = RegistryCertDirs(tmp_path, daemon="dockerd")
    with dirs.trusting(HOST, cas[0]) as directory:
        assert directory is not None
        (directory / "client.cert").write_text("theirs")
    assert [p.name for p in (tmp_path / HOST).iterdir()] == ["client.cert"]
    with dirs.trusting(HOST, cas[0]) as again:
        assert again is None, "without our marker the directory is the operator's now"


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from fogwire.certdirs import RegistryCertDirs
    with RegistryCertDirs(Path(sys.argv[1]), daemon="dockerd").trusting(sys.argv[2], sys.stdin.read()):
        print("holding", flush=True)
        time.sleep(float(sys.argv[3]))
    """
)


@pytest.fixture
def holder(tmp_path: Path, cas: tuple[str, str]) -> Iterator[subprocess.Popen[str]]:
    """Another process (another agent) pulling from HOST with the second CA until it is stopped."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path), HOST, "60"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(cas[1])
    process.stdin.close()
    assert process.stdout.readline() == "holding\n"
    yield process
    process.kill()
    process.wait(timeout=10)
    process.stdout.close()


def test_another_process_pulling_keeps_its_ca(
    tmp_path: Path, cas: tuple[str, str], holder: subprocess.Popen[str]
) -> None:
    dirs = RegistryCertDirs(tmp_path, daemon="dockerd")
    with dirs.trusting(HOST, cas[0]) as directory:
        assert directory is not None and len(crt_texts(directory)) == 2
    assert crt_texts(tmp_path / HOST) == [cas[1].strip() + "\n"]
    dirs.sweep()
    assert crt_texts(tmp_path / HOST) == [cas[1].strip() + "\n"], "a live pull's CA is not swept"


def test_what_a_killed_process_left_is_swept(
    tmp_path: Path, cas: tuple[str, str], holder: subprocess.Popen[str]
) -> None:
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)
    assert (tmp_path / HOST).is_dir()
    RegistryCertDirs(tmp_path, daemon="dockerd").sweep()
    assert list(tmp_path.iterdir()) == []


def test_a_host_that_is_not_a_directory_name_is_refused(tmp_path: Path, cas: tuple[str, str]) -> None:
    dirs = RegistryCertDirs(tmp_path / "certs.d", daemon="dockerd")
    for bad in ("../etc", "reg/x", "", ".hidden:5000"):
        with pytest.raises(EngineError, match="host\\[:port\\]"), dirs.trusting(bad, cas[0]):
            pass
    assert not (tmp_path / "etc").exists()


def test_a_root_that_cannot_be_made_says_what_to_do(tmp_path: Path, cas: tuple[str, str]) -> None:
    (tmp_path / "file").write_text("")
    dirs = RegistryCertDirs(tmp_path / "file" / "certs.d", daemon="dockerd")
    with pytest.raises(EngineError, match="cannot put a registry CA where dockerd reads it.*registryCertsDir"):
        with dirs.trusting(HOST, cas[0]):
            pass
    dirs.sweep()  # never raises


@pytest.mark.parametrize(
    ("reference", "host"),
    [
        ("reg.example:5000/app:1", "reg.example:5000"),
        ("198.18.77.1:5443/fogwire/busybox:1", "198.18.77.1:5443"),
        ("localhost/app", "localhost"),
        ("library/busybox:1", "docker.io"),
        ("busybox", "docker.io"),
    ],
)
def test_registry_host(reference: str, host: str) -> None:
    assert registry_host(reference) == host
