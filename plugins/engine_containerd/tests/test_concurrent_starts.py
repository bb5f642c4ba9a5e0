"""Concurrent starts: workloads spread over a few runc shims, port rules committed in batches."""

from __future__ import annotations

import asyncio
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
