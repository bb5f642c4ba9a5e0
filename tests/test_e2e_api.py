"""``fogwire daemon``'s agent API on its unix socket, end to end on the docker engine.

A real daemon (the ``file`` config source, resync every second) serves the API on
``<run dir>/fogwire.sock`` with its admin token in ``<config dir>/api-token``. The
CLI (status, apply, plan, delete, logs, prune, ms start|stop|restart) goes through
it; raw HTTP (``http.client`` over AF_UNIX) shows the public probes and metrics,
the token check and the envelope. An operator's stop holds a workload stopped
across resync passes and a daemon restart until ``fogwire ms start``. Exit codes:
4 not found, 3 a wrong token, 10 no daemon. A second daemon on the same run
directory refuses to start and leaves the first serving.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from fogwire.engine import EngineContext, RegistryAuth, WorkloadInfo, WorkloadState
from fogwire.plugins import PluginHost
from harness import images, services
from harness.cli import Cli, app

T = TypeVar("T")


class UnixHTTPConnection(http.client.HTTPConnection):
    """``http.client`` over a unix socket."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.socket_path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


def call(sock: Path, method: str, path: str, token: str | None = None) -> tuple[int, str, bytes]:
    """One request: (status, content type, body)."""
    connection = UnixHTTPConnection(sock)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheader("content-type") or "", response.read()
    finally:
        connection.close()


SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 when absent)."""
    for line in text.splitlines():
        found = SAMPLE.match(line)
        if not found or found[1] != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', found[2] or ""))
        if have == labels:
            return float(found[3])
    return 0.0


def metric_sum(text: str, name: str) -> float:
    return sum(float(m[3]) for line in text.splitlines() if (m := SAMPLE.match(line)) and m[1] == name)


def test_daemon_api_ms_control_and_exit_codes(tmp_path: Path, harness_images: images.TestImages) -> None:
    url = services.start_dockerd().host
    prefix = f"api{uuid.uuid4().hex[:5]}"
    agent_id = f"t7-{prefix}"
    a, b = f"{prefix}-a", f"{prefix}-b"
    desired_file = tmp_path / "desired.yaml"
    config = {
        "profiles": {
            "default": {
                "containerEngine": "docker",
                "containerEngineUrl": url,
                "agentId": agent_id,
                "resyncSeconds": 1,
                "configSource": {"name": "file", "options": {"path": str(desired_file)}},
            }
        }
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    cli = Cli(tmp_path)
    sock = tmp_path / "run" / "fogwire.sock"
    token_file = tmp_path / "api-token"
    log = (tmp_path / "daemon.log").open("ab")
    daemons: list[subprocess.Popen[bytes]] = []

    def start_daemon() -> subprocess.Popen[bytes]:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "fogwire.cli", "daemon", "--rollback-grace", "1", *cli.flags],
            env={**os.environ, "PYTHONFAULTHANDLER": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        daemons.append(daemon)
        return daemon

    def wait_ready(daemon: subprocess.Popen[bytes]) -> None:
        """Until GET /health/ready answers 200: the socket is served and a pass has finished."""
        deadline = time.monotonic() + 60
        while True:
            assert daemon.poll() is None, f"the daemon exited {daemon.returncode}: {daemon_log()}"
            try:
                if call(sock, "GET", "/health/ready")[0] == 200:
                    return
            except OSError:
                pass
            assert time.monotonic() < deadline, f"the daemon never got ready: {daemon_log()}"
            time.sleep(0.1)

    def stop_daemon(daemon: subprocess.Popen[bytes]) -> None:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0

    def daemon_log() -> str:
        return (tmp_path / "daemon.log").read_text(errors="replace")[-4000:]

    def metrics_text() -> str:
        status, content_type, body = call(sock, "GET", "/metrics")
        assert status == 200
        assert content_type.startswith("text/plain; version=0.0.4")
        return body.decode()

    def wait_passes(count: int) -> None:
        """Until the daemon's reconcile pass counter (since it started) reaches ``count``."""
        deadline = time.monotonic() + 20
        while metric_sum(metrics_text(), "fogwire_reconcile_passes_total") < count:
            assert time.monotonic() < deadline, "no resync pass ran"
            time.sleep(0.2)

    def engine_call(work: Callable[[Any], Awaitable[T]]) -> T:
        async def run() -> T:
            context = EngineContext(
                agent_id, tmp_path / "state" / "engine", tmp_path / "run", tmp_path / "log", url=url
            )
            engine = PluginHost().engine_factory("docker")(context)
            await engine.start()
            try:
                return await work(engine)
            finally:
                await engine.close()

        return asyncio.run(run())

    def workload(name: str) -> WorkloadInfo | None:
        return engine_call(lambda engine: engine.inspect(name))

    def state(name: str) -> WorkloadState | None:
        info = workload(name)
        return info.state if info is not None else None

    def wait_state(name: str, wanted: WorkloadState) -> WorkloadInfo:
        deadline = time.monotonic() + 20
        while (info := workload(name)) is None or info.state is not wanted:
            assert time.monotonic() < deadline, f"{name} is {info and info.state}, not {wanted}"
            time.sleep(0.2)
        return info

    def ms_status() -> dict[str, dict[str, Any]]:
        return {m["name"]: m for m in cli.json("status")["microservices"]}

    daemon = start_daemon()
    try:
        wait_ready(daemon)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 32

        # -- the CLI through the API: plan, apply, plan again, status --------------------
        good = cli.write("good.yaml", app(harness_images, [a, b], application="api"))
        plan = cli.json("plan", "-f", good)
        assert sorted((x["action"], x["name"]) for x in plan["actions"]) == [("create", a), ("create", b)]
        applied = cli.json("apply", "-f", good)
        assert sorted((x["action"], x["name"], x["ok"]) for x in applied["actions"]) == [
            ("create", a, True),
            ("create", b, True),
        ]
        assert list(yaml.safe_load_all(desired_file.read_text())) == list(yaml.safe_load_all(Path(good).read_text()))
        plan = cli.json("plan", "-f", good)
        assert plan["actions"] == [] and sorted(plan["unchanged"]) == [a, b]
        status = cli.json("status")
        assert status["daemon"] == "running"
        assert {m["name"]: (m["status"], m["state"]) for m in status["microservices"]} == {
            a: ("running", "running"),
            b: ("running", "running"),
        }

        # -- raw HTTP: public probes and metrics, the token on admin routes ---------------
        code, content_type, body = call(sock, "GET", "/health/live")
        assert (code, json.loads(body)) == (200, {"success": True, "data": {"status": "live"}})
        assert content_type == "application/json"
        assert call(sock, "GET", "/health/ready")[0] == 200
        text = metrics_text()
        for family, kind in (
            ("fogwire_reconcile_passes_total", "counter"),
            ("fogwire_reconcile_pass_seconds", "histogram"),
            ("fogwire_reconcile_actions_total", "counter"),
            ("fogwire_workloads", "gauge"),
            ("fogwire_api_requests_total", "counter"),
        ):
            assert f"# TYPE {family} {kind}\n" in text, family
        assert metric_sum(text, "fogwire_reconcile_passes_total") >= 1
        assert metric(text, "fogwire_reconcile_pass_seconds_bucket", le="+Inf") >= 1
        assert metric(text, "fogwire_reconcile_pass_seconds_count") == metric(
            text, "fogwire_reconcile_pass_seconds_bucket", le="+Inf"
        )
        assert metric(text, "fogwire_reconcile_actions_total", kind="create", result="ok") == 2
        assert metric(text, "fogwire_workloads", state="running") == 2
        # the CLI's calls so far: two plans and an apply on the deploy route, a status
        route = "/v1/deploy/microservices:apply"
        assert metric(text, "fogwire_api_requests_total", route=route, code="200") == 3
        assert metric(text, "fogwire_api_requests_total", route="/v1/system/status", code="200") >= 1

        code, _, body = call(sock, "GET", "/v1/ms")
        assert code == 401
        reply = json.loads(body)
        assert reply["success"] is False and reply["error"]["code"] == "UNAUTHORIZED"
        code, _, body = call(sock, "GET", "/v1/ms", token="not-the-token")
        assert (code, json.loads(body)["error"]["code"]) == (401, "UNAUTHORIZED")
        code, _, body = call(sock, "GET", "/v1/ms", token=token)
        assert code == 200
        listed = json.loads(body)
        assert listed["success"] is True
        assert {m["name"]: m["state"] for m in listed["data"]["microservices"]} == {a: "running", b: "running"}
        code, _, body = call(sock, "GET", f"/v1/ms/{a}", token=token)
        assert code == 200 and json.loads(body)["data"]["status"]["name"] == a
        code, _, body = call(sock, "POST", f"/v1/ms/{a}:kill", token=token)
        assert (code, json.loads(body)["error"]["code"]) == (501, "NOT_IMPLEMENTED")
        assert metric(metrics_text(), "fogwire_api_requests_total", route="/v1/ms", code="401") == 2

        # -- logs through the API -----------------------------------------------------------
        deadline = time.monotonic() + 15
        while f"started {a}-1" not in (out := cli("logs", a, "--tail", "5").stdout):
            assert time.monotonic() < deadline, out
            time.sleep(0.3)
        assert f"{b}-1" not in out

        # -- ms stop: held stopped across resync passes -------------------------------------
        out = cli("ms", "stop", a).stdout
        assert out.strip() == f"{a}: stopped (held stopped until 'fogwire ms start')"
        assert state(a) is WorkloadState.EXITED
        assert state(b) is WorkloadState.RUNNING
        assert ms_status()[a]["status"] == "held"
        passes = metric_sum(metrics_text(), "fogwire_reconcile_passes_total")
        wait_passes(passes + 2)  # two resync passes later
        assert state(a) is WorkloadState.EXITED
        assert (ms_status()[a]["status"], ms_status()[a]["state"]) == ("held", "exited")
        plan = cli.json("plan", "-f", good)
        assert plan["actions"] == []
        assert "stopped by an operator" in plan["deferred"][a]
        # stopping again is harmless
        assert cli.json("ms", "stop", a) == {"name": a, "state": "stopped", "held": True}

        # -- ... and across a daemon restart ------------------------------------------------
        stop_daemon(daemon)
        assert not sock.exists()
        proc = cli("ms", "start", a, ok=False)
        assert proc.returncode == 10, proc
        assert "needs the daemon" in proc.stderr
        offline = cli.json("status")  # no daemon: read from the store and the engine
        assert offline["daemon"] == "not running"
        assert {m["name"]: m["status"] for m in offline["microservices"]}[a] == "held"

        daemon = start_daemon()
        wait_ready(daemon)
        wait_passes(3)
        assert state(a) is WorkloadState.EXITED
        assert ms_status()[a]["status"] == "held"
        assert state(b) is WorkloadState.RUNNING

        # -- ms start, ms restart -----------------------------------------------------------
        out = cli("ms", "start", a).stdout
        assert out.strip() == f"{a}: running"
        before = wait_state(a, WorkloadState.RUNNING)  # docker's list has no times: the engine's inspect does
        assert before.started_at is not None
        assert (ms_status()[a]["status"], ms_status()[a]["state"]) == ("running", "running")
        wait_passes(metric_sum(metrics_text(), "fogwire_reconcile_passes_total") + 1)
        assert state(a) is WorkloadState.RUNNING  # no longer held: a pass keeps it running

        assert cli.json("ms", "restart", a) == {"name": a, "state": "running", "held": False}
        after = wait_state(a, WorkloadState.RUNNING)
        assert after.started_at is not None and after.started_at > before.started_at
        assert ms_status()[a]["status"] == "running"
        assert state(b) is WorkloadState.RUNNING

        # -- exit codes -----------------------------------------------------------------------
        proc = cli("ms", "stop", "nosuch", ok=False)
        assert proc.returncode == 4, proc
        assert "nosuch" in proc.stderr
        proc = cli("delete", "nosuch", ok=False)
        assert proc.returncode == 4, proc
        proc = cli("logs", "nosuch", ok=False)
        assert proc.returncode == 4, proc

        token_file.write_text("wrong-token\n")
        try:
            proc = cli("status", ok=False)
            assert proc.returncode == 3, proc
            assert "not valid" in proc.stderr
            proc = cli("ms", "stop", a, ok=False)
            assert proc.returncode == 3, proc
        finally:
            token_file.write_text(token + "\n")
        assert state(a) is WorkloadState.RUNNING  # the refused stop did nothing
        assert cli.json("status")["daemon"] == "running"

        # -- prune: an image no container uses goes, the running ones' stays ----------------
        auth = RegistryAuth(harness_images.registry, harness_images.username, harness_images.password, insecure=True)
        engine_call(lambda engine: engine.pull(harness_images.ref_v2, auth))
        pruned = cli.json("prune")
        assert isinstance(pruned["removed"], list)
        assert harness_images.ref_v2 in pruned["removed"]
        assert harness_images.ref_v1 not in pruned["removed"]
        assert state(a) is WorkloadState.RUNNING and state(b) is WorkloadState.RUNNING

        # -- delete through the API ---------------------------------------------------------
        deleted = cli.json("delete", b)
        assert [(x["action"], x["name"], x["ok"]) for x in deleted["actions"]] == [("remove", b, True)]
        assert workload(b) is None

        # -- a second daemon on the same run directory fails; the first keeps serving -------
        events_before = cli.json("status")["events"]
        second = start_daemon()
        assert second.wait(60) != 0
        assert cli.json("status")["events"] == events_before  # the loser touched nothing of the first's state
        tail = daemon_log()
        assert "another fogwire daemon is serving" in tail and str(sock) in tail
        assert daemon.poll() is None
        assert sock.exists()
        assert call(sock, "GET", "/health/live")[0] == 200
        assert set(ms_status()) == {a}
        assert cli("ms", "stop", a).returncode == 0  # the first daemon still acts
        assert state(a) is WorkloadState.EXITED
    finally:
        for running in daemons:
            if running.poll() is None:
                running.send_signal(signal.SIGTERM)
                try:
                    running.wait(30)
                except subprocess.TimeoutExpired:
                    running.kill()
                    running.wait()
        log.close()

        async def remove_all(engine: Any) -> None:
            for w in await engine.list_managed():
                await engine.remove(w.name)

        engine_call(remove_all)
