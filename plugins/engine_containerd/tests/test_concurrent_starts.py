"""Concurrent starts: workloads spread over a few runc shims, port rules committed in batches."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from fogwire_engine_containerd._cni import _GroupCommit
from fogwire_engine_containerd.engine import ContainerdEngine

from fogwire.engine import PortMapping, WorkloadSpec
from fogwire.errors import EngineError
from fogwire.testing import ContractRegistry

HTTPD = ("httpd", "-f", "-p", "8080", "-h", "/")


def test_group_commit_batches_concurrent_changes_and_fails_only_the_bad_one() -> None:
    applied: list[list[str]] = []
    gate = threading.Event()

    def apply(rules: list[str]) -> None:
        gate.wait(5)  # the first commit holds the others back, so they queue up
        if "bad" in rules:
            raise EngineError("iptables-restore: line 2 failed")
        applied.append(list(rules))

    group = _GroupCommit(apply)
    errors: dict[str, BaseException] = {}

    def change(rule: str) -> None:
        try:
            group.commit([rule])
        except EngineError as error:
            errors[rule] = error

    rules = ["first", *(f"r{i}" for i in range(8)), "bad"]
    threads = [threading.Thread(target=change, args=(rules[0],))]
    threads[0].start()
    time.sleep(0.2)
    threads += [threading.Thread(target=change, args=(rule,)) for rule in rules[1:]]
    for thread in threads[1:]:
        thread.start()
    time.sleep(0.2)
    gate.set()
    for thread in threads:
        thread.join(10)

    assert set(errors) == {"bad"}, errors
    assert applied[0] == ["first"]
    every = [rule for batch in applied for rule in batch]
    assert sorted(every) == sorted(rules[:-1]), "each good change applied exactly once"
    # the queued nine: one batch (it failed), then one by one; the eight good ones applied once each
    assert len(applied) == 1 + 8


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2):
            return True
    except OSError as error:
        return "HTTP Error" in str(error)  # httpd answered (a 404 for an index-less /)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _nat_rules() -> str:
    return subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True).stdout


@pytest.fixture
async def two_shim_engine(harness_engine: Callable[..., Any]) -> AsyncIterator[ContainerdEngine]:
    async with harness_engine("shims", shimGroups=2) as engine:
        yield engine


async def test_concurrent_starts_use_the_configured_shims_and_publish_every_port(
    two_shim_engine: ContainerdEngine, fogwire_registry: ContractRegistry
) -> None:
    engine = two_shim_engine
    ports = _free_ports(4)
    names = [f"cs-{engine.context.agent_id}-{i}" for i in range(4)]

    async def start(name: str, port: int) -> None:
        spec = WorkloadSpec(
            name=name,
            image=fogwire_registry.image,
            command=HTTPD,
            ports=(PortMapping(8080, port, "tcp", "127.0.0.1"),),
        )
        await engine.create(spec)
        await engine.start_workload(name)

    await asyncio.gather(*(start(n, p) for n, p in zip(names, ports, strict=True)))

    deadline = time.monotonic() + 30
    while not all(await asyncio.gather(*(asyncio.to_thread(_answers, p) for p in ports))):
        assert time.monotonic() < deadline, "not every workload answered on its published port"
        await asyncio.sleep(0.2)

    infos = {info.name: info for info in await engine.list_managed()}
    shims = set()
    for name in names:
        pid = engine.records.of(name).pid
        assert pid, f"{name} has no task pid"
        shims.add(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])  # the parent: its shim
        assert infos[name].state.value == "running"
    assert len(shims) == 2, f"4 workloads over shim_groups=2 ran under {len(shims)} shims"

    rules = _nat_rules()
    for name in names:
        assert f"fogwire:{engine.namespace}-{name}" in rules

    await asyncio.gather(*(engine.remove(n) for n in names))
    rules = _nat_rules()
    for name in names:
        assert f"fogwire:{engine.namespace}-{name}" not in rules


@pytest.fixture
async def slow_listen_engine(
    harness_engine: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ContainerdEngine]:
    """An embedded containerd whose runc shims pause 0.3 s between binding their socket and listening on it."""
    strace = shutil.which("strace")
    assert strace, "strace is installed by scripts/setup.sh"
    real = shutil.which("containerd-shim-runc-v2")
    assert real
    wrapper = tmp_path / "bin" / "containerd-shim-runc-v2"
    wrapper.parent.mkdir()
    # only `start` is slowed; its threads are traced (-f), the shim daemon it executes is not (-b execve)
    wrapper.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *" start") exec {strace} -f -b execve -qq -o /dev/null '
        f'-e inject=listen:delay_enter=300000 -e inject=unlinkat:delay_exit=600000 {real} "$@";; esac\n'
        f'exec {real} "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}:{os.environ['PATH']}")
    async with harness_engine("slowshim", own_containerd=True, shimGroups=1) as engine:
        yield engine


async def test_concurrent_first_starts_in_one_shim_group_all_start(
    slow_listen_engine: ContainerdEngine, fogwire_registry: ContractRegistry
) -> None:
    """Tasks created at once into a group with no shim yet all start, under one shim.

    Each runc shim start binds the group's socket and then listens on it. A second
    start racing the first sees the address in use, fails to connect (bound, not yet
    listening) and removes the first one's socket, which then fails with "create new
    shim socket: chmod …: no such file or directory". The shims here widen that
    window to 0.3 s, so without the engine's guard (the first create of a group runs
    alone) this fails every time.
    """
    engine = slow_listen_engine
    for round_ in range(2):  # the second round starts the group's shim again after the first one exited
        names = [f"g{round_}-{engine.context.agent_id}-{i}" for i in range(3)]

        async def start(name: str) -> None:
            await engine.create(WorkloadSpec(name=name, image=fogwire_registry.image, command=("sleep", "300")))
            await engine.start_workload(name)

        await asyncio.gather(*(start(n) for n in names))
        pids = [engine.records.of(n).pid for n in names]
        shims = {Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1] for pid in pids}
        assert len(shims) == 1, f"one shim group ran under {len(shims)} shims"
        await asyncio.gather(*(engine.remove(n) for n in names))
