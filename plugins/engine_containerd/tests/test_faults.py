"""Faults: the embedded containerd killed under running workloads, and a pull cut mid-blob."""

from __future__ import annotations

import asyncio
import http.client
import http.server
import os
import secrets
import signal
import socket
import tempfile
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fogwire_engine_containerd.engine import ContainerdEngine

from fogwire.engine import EngineContext, PortMapping, RestartPolicy, WorkloadSpec, WorkloadState
from fogwire.errors import EngineError
from fogwire.testing import ContractRegistry
from harness import images


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _until(check, what: str, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def _http(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.read().decode()
    except OSError:
        return None


@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fwf-") as d:
        yield Path(d)


async def _engine(workdir: Path, **options: object) -> ContainerdEngine:
    context = EngineContext(
        agent_id=f"faults-{secrets.token_hex(3)}",
        data_dir=workdir / "data",
        run_dir=workdir / "run",
        log_dir=workdir / "log",
        options=options,
    )
    engine = ContainerdEngine(context)
    await engine.start()
    return engine


@pytest.fixture
async def embedded(harness_engine: Callable[..., Any]) -> AsyncIterator[ContainerdEngine]:
    async with harness_engine("faults", own_containerd=True) as engine:
        yield engine


async def test_embedded_daemon_lives_under_the_agent_dirs_and_stops_on_close(workdir: Path) -> None:
    engine = await _engine(workdir, embedded=True)
    daemon = engine.daemon
    assert daemon is not None and daemon.pid is not None
    assert daemon.socket.is_relative_to(workdir / "run")
    assert daemon.root.is_relative_to(workdir / "data")
    assert daemon.log_file == workdir / "log" / "containerd.log"
    assert engine.client is not None and engine.client.address == f"unix://{daemon.socket}"
    pid = daemon.pid
    await engine.close()
    assert daemon.pid is None
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]
    assert "containerd successfully booted" in daemon.log_file.read_text()


async def test_external_url_starts_no_daemon(workdir: Path, harness_containerd_url: str) -> None:
    context = EngineContext("ext-agent", workdir / "d", workdir / "r", workdir / "l", url=harness_containerd_url)
    engine = ContainerdEngine(context)
    await engine.start()
    try:
        assert engine.daemon is None
        assert engine.client is not None and engine.client.address == harness_containerd_url
        assert await engine.list_managed() == []
    finally:
        await engine.close()


async def test_an_unanswering_url_fails_clearly(workdir: Path) -> None:
    context = EngineContext(
        "bad-agent",
        workdir / "d",
        workdir / "r",
        workdir / "l",
        url=f"unix://{workdir}/nothing.sock",
        options={"startTimeoutS": 1},
    )
    engine = ContainerdEngine(context)
    with pytest.raises(EngineError, match="does not answer"):
        await engine.start()
    await engine.close()


async def test_killed_containerd_is_restarted_and_workloads_come_back(
    embedded: ContainerdEngine, fogwire_registry: ContractRegistry
) -> None:
    engine = embedded
    image = fogwire_registry.image
    port = _free_port()
    serve = "mkdir -p /tmp/w && echo alive > /tmp/w/index.html && exec httpd -f -p 8080 -h /tmp/w"
    await engine.create(
        WorkloadSpec(
            name="keeps", image=image, command=("sh", "-c", "i=0; while true; do echo t$i; i=$((i+1)); sleep 0.1; done")
        )
    )
    await engine.create(
        WorkloadSpec(
            name="web", image=image, command=("sh", "-c", serve), ports=(PortMapping(8080, port, "tcp", "127.0.0.1"),)
        )
    )
    await engine.create(
        WorkloadSpec(name="dies", image=image, command=("sleep", "3600"), restart=RestartPolicy("always"))
    )
    await engine.create(WorkloadSpec(name="stays-dead", image=image, command=("sleep", "3600")))
    for name in ("keeps", "web", "dies", "stays-dead"):
        await engine.start_workload(name)
    assert await _until(lambda: asyncio.to_thread(_http, f"http://127.0.0.1:{port}/"), "web to serve") == "alive\n"
    before = {w.name: w for w in await engine.list_managed()}
    daemon = engine.daemon
    assert daemon is not None
    old_pid = daemon.pid
    assert old_pid is not None

    # kill containerd, and while it is down kill two workloads' processes behind its back
    daemon.kill()
    for name in ("dies", "stays-dead"):
        os.kill(engine.records.of(name).pid, signal.SIGKILL)

    await _until(
        lambda: asyncio.sleep(0, daemon.pid not in (None, old_pid) and daemon.restarts >= 1), "a new containerd"
    )

    async def recovered() -> bool:
        try:
            infos = {w.name: w for w in await engine.list_managed()}
        except EngineError:
            return False
        return (
            infos["keeps"].state is WorkloadState.RUNNING
            and infos["web"].state is WorkloadState.RUNNING
            and infos["dies"].state is WorkloadState.RUNNING
            and infos["dies"].restart_count == 1
            and infos["stays-dead"].state is WorkloadState.EXITED
        )

    await _until(recovered, "the workloads to be recovered / restarted")
    after = {w.name: w for w in await engine.list_managed()}
    # recovered: the same process, never restarted
    for name in ("keeps", "web"):
        assert after[name].restart_count == 0 and after[name].started_at == before[name].started_at
    assert after["stays-dead"].exit_code == 137 and after["stays-dead"].restart_count == 0
    assert await asyncio.to_thread(_http, f"http://127.0.0.1:{port}/") == "alive\n"
    # the log of the recovered workload keeps growing across the restart
    count = len([line async for line in engine.logs("keeps")])
    await asyncio.sleep(0.6)
    assert len([line async for line in engine.logs("keeps")]) > count
    # and the engine still works end to end against the new daemon
    await engine.stop("keeps", timeout_s=1)
    info = await engine.inspect("keeps")
    assert info is not None and info.state is WorkloadState.EXITED


class _CuttingProxy(http.server.ThreadingHTTPServer):
    """A loopback HTTP proxy to the registry that cuts the first download of one blob halfway."""

    def __init__(self, upstream: str, blob: str) -> None:
        self.upstream = upstream
        self.blob = blob
        self.cuts = 0
        self.cut_next = True
        super().__init__(("127.0.0.1", 0), _ProxyHandler)


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _CuttingProxy

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        conn = http.client.HTTPConnection(self.server.upstream, timeout=10)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn.request("GET", self.path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        self.send_response(resp.status)
        for key, value in resp.getheaders():
            if key.lower() not in ("connection", "transfer-encoding", "content-length"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.server.blob in self.path and self.server.cut_next and len(body) > 1024:
            self.server.cut_next = False
            self.server.cuts += 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


async def test_a_pull_cut_mid_blob_leaves_no_image_and_the_next_pull_completes(
    workdir: Path, harness_images: images.TestImages, fogwire_registry: ContractRegistry
) -> None:
    layout_manifest = harness_images.digest_v1
    import json

    from harness.images import _read_blob

    manifest = json.loads(_read_blob(harness_images.layout, layout_manifest))
    layer = manifest["layers"][0]["digest"]
    proxy = _CuttingProxy(harness_images.registry, layer)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    # a namespace of its own, so no blob of an earlier pull is already in the content store
    engine = await _engine(workdir, embedded=True, namespace=f"fwcut{secrets.token_hex(3)}")
    try:
        reference = f"127.0.0.1:{proxy.server_address[1]}/fogwire/busybox:1"
        with pytest.raises(EngineError) as caught:
            await engine.pull(reference, fogwire_registry.auth)
        assert proxy.cuts == 1
        assert fogwire_registry.auth.password not in str(caught.value)
        assert await engine.image_digest(reference) is None
        assert engine.images is not None
        assert await asyncio.to_thread(engine.images.list) == []
        assert not await asyncio.to_thread(engine.images.has_blob, layer), "a partial layer was committed"

        digest = await engine.pull(reference, fogwire_registry.auth)
        assert digest == harness_images.config_digest_v1
        assert await engine.image_digest(reference) == digest
        await engine.create(WorkloadSpec(name="after-cut", image=reference, command=("echo", "pulled-ok")))
        await engine.start_workload("after-cut")

        async def output() -> list[str]:
            return [line.text async for line in engine.logs("after-cut")]

        assert await _until(output, "the workload's output") == ["pulled-ok"]
        await engine.remove("after-cut")
    finally:
        await engine.close()
        proxy.shutdown()
        proxy.server_close()


async def test_auto_mode_uses_a_socket_that_answers_else_embeds(workdir: Path, harness_containerd_url: str) -> None:
    answering = await _engine(workdir / "a", socket=harness_containerd_url.removeprefix("unix://"))
    try:
        assert answering.daemon is None and answering.client is not None
        assert answering.client.address == harness_containerd_url
    finally:
        await answering.close()
    silent = await _engine(workdir / "b", socket=str(workdir / "no-such.sock"))
    try:
        assert silent.daemon is not None and silent.daemon.pid is not None
    finally:
        await silent.close()


async def test_a_new_engine_instance_takes_over_running_workloads(
    workdir: Path, fogwire_registry: ContractRegistry
) -> None:
    """Agent restart in embedded mode: close() stops the daemon, workloads keep running, the next engine adopts them."""
    first = await _engine(workdir, embedded=True)
    agent_id = first.context.agent_id
    await first.pull(fogwire_registry.image, fogwire_registry.auth)
    ticker = "i=0; while true; do echo t$i; i=$((i+1)); sleep 0.1; done"
    await first.create(WorkloadSpec(name="ticks", image=fogwire_registry.image, command=("sh", "-c", ticker)))
    await first.create(
        WorkloadSpec(
            name="again", image=fogwire_registry.image, command=("sleep", "3600"), restart=RestartPolicy("always")
        )
    )
    await first.start_workload("ticks")
    await first.start_workload("again")
    started = (await first.inspect("ticks")).started_at  # type: ignore[union-attr]
    victim = first.records.of("again").pid
    await first.close()
    os.kill(victim, signal.SIGKILL)  # exits while no agent runs

    context = EngineContext(agent_id, workdir / "data", workdir / "run", workdir / "log", options={"embedded": True})
    second = ContainerdEngine(context)
    await second.start()
    try:

        async def adopted() -> bool:
            infos = {w.name: w for w in await second.list_managed()}
            return (
                infos["ticks"].state is WorkloadState.RUNNING
                and infos["again"].state is WorkloadState.RUNNING
                and infos["again"].restart_count == 1
            )

        await _until(adopted, "the second engine to adopt and restart the workloads")
        info = await second.inspect("ticks")
        assert info is not None and info.started_at == started and info.restart_count == 0
        count = len([line async for line in second.logs("ticks")])
        await asyncio.sleep(0.6)
        assert len([line async for line in second.logs("ticks")]) > count
    finally:
        for workload in await second.list_managed():
            await second.remove(workload.name)
        await second.close()


async def test_a_host_port_left_claimed_by_a_gone_workload_is_taken_over(
    embedded: ContainerdEngine, fogwire_registry: ContractRegistry
) -> None:
    """A DNAT rule that a dead containerd's workload left for port P must not shadow the new P's rule."""
    import subprocess

    from fogwire_engine_containerd._cni import HOSTPORT_CHAIN

    port = _free_port()
    subprocess.run(["iptables", "-w", "-t", "nat", "-N", HOSTPORT_CHAIN], capture_output=True, check=False)
    stale = [
        HOSTPORT_CHAIN, "-p", "tcp", "--dport", str(port), "-m", "comment", "--comment", "fogwire:fogwire-long-gone",
        "-j", "DNAT", "--to-destination", "10.71.255.254:8080",
    ]  # fmt: skip
    subprocess.run(["iptables", "-w", "-t", "nat", "-A", *stale], check=True)
    try:
        await embedded.pull(fogwire_registry.image, fogwire_registry.auth)
        serve = "mkdir -p /tmp/w && echo taken > /tmp/w/index.html && exec httpd -f -p 8080 -h /tmp/w"
        spec = WorkloadSpec(
            name="taker",
            image=fogwire_registry.image,
            command=("sh", "-c", serve),
            ports=(PortMapping(8080, port, "tcp", "127.0.0.1"),),
        )
        await embedded.create(spec)
        await embedded.start_workload("taker")

        async def answers() -> bool:
            return _http(f"http://127.0.0.1:{port}/index.html") == "taken\n"

        await _until(answers, "the port to reach the new workload")
        rules = subprocess.run(
            ["iptables", "-w", "-t", "nat", "-S", HOSTPORT_CHAIN], capture_output=True, text=True, check=True
        ).stdout
        assert "fogwire-long-gone" not in rules
    finally:
        subprocess.run(["iptables", "-w", "-t", "nat", "-D", *stale], capture_output=True, check=False)
        await embedded.remove("taker")


async def test_a_start_whose_record_was_never_saved_gets_the_process_start_time(
    workdir: Path, fogwire_registry: ContractRegistry
) -> None:
    """An agent killed between a task's start and its record's save: adopters report the same start time."""
    import json as json_module

    from fogwire_engine_containerd.engine import process_started

    first = await _engine(workdir, embedded=True)
    agent_id = first.context.agent_id
    await first.pull(fogwire_registry.image, fogwire_registry.auth)
    await first.create(WorkloadSpec(name="unsaved", image=fogwire_registry.image, command=("sleep", "3600")))
    await first.start_workload("unsaved")
    pid = first.records.of("unsaved").pid
    expected = process_started(pid)
    assert expected is not None
    await first.close()
    record_files = [p for p in (workdir / "data").rglob("*.json") if "unsaved" in p.name]
    assert record_files, list((workdir / "data").rglob("*"))
    for path in record_files:  # what a kill -9 before the save leaves: no start time
        data = json_module.loads(path.read_text())
        data["started_at"] = None
        data["running"] = False
        path.write_text(json_module.dumps(data))
    context = EngineContext(agent_id, workdir / "data", workdir / "run", workdir / "log", options={"embedded": True})
    seen = []
    for _ in range(2):
        engine = ContainerdEngine(context)
        await engine.start()
        try:
            info = await engine.inspect("unsaved")
            assert info is not None and info.state is WorkloadState.RUNNING
            seen.append(info.started_at)
            if len(seen) == 2:
                await engine.remove("unsaved")
        finally:
            await engine.close()
        await asyncio.sleep(1.1)
    assert seen[0] == seen[1] == expected


async def test_annotations_and_devices_reach_the_runtime_spec(
    embedded: ContainerdEngine, fogwire_registry: ContractRegistry
) -> None:
    """The OCI bundle containerd hands runc carries the annotations, the device node and its cgroup rule."""
    import json as json_module

    from fogwire.engine import DeviceMapping

    await embedded.pull(fogwire_registry.image, fogwire_registry.auth)
    spec = WorkloadSpec(
        name="annotated",
        image=fogwire_registry.image,
        command=("sleep", "3600"),
        annotations={"io.fogwire.test/role": "sensor"},
        devices=(DeviceMapping("/dev/null", "/dev/fogwire-null", "rw"),),
        pid_mode="host",
    )
    await embedded.create(spec)
    await embedded.start_workload("annotated")
    try:
        roots = {embedded.context.run_dir, embedded.context.data_dir}
        bundles = [p for root in roots for p in Path(root).rglob("annotated/config.json")]
        assert bundles, roots
        oci = json_module.loads(bundles[0].read_text())
        assert oci["annotations"]["io.fogwire.test/role"] == "sensor"
        assert {"path": "/dev/fogwire-null", "type": "c", "major": 1, "minor": 3}.items() <= oci["linux"]["devices"][
            0
        ].items()
        assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"} in oci["linux"]["resources"][
            "devices"
        ]
        assert "pid" not in {n["type"] for n in oci["linux"]["namespaces"]}
    finally:
        await embedded.remove("annotated")
