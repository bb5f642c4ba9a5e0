"""Benchmark the controller source: reaction time, idle cost, status reports.

    bench/controller.py [--count 30] [--rounds 3] [--idle-seconds 30] [--statuses 100]
                        [--only react|idle|status] [--json]

(a) the agent's own time from the change poll's answer (the stand-in controller's
    ``GET agent/config/changes`` leaving its handler) to the engine's first create
    call, for ``--count`` new microservices (goal < 100 ms; the image is already on
    the node, registry ``from_cache``, so no pull); peer: the same documents given
    to :meth:`Agent.apply` directly, from the call to the first create (the agent's
    floor without a controller);
(b) the idle daemon's RSS with the controller source loaded and polling a stand-in
    (goal < 45 MiB); peer: the same daemon on the file source;
(c) the idle daemon's CPU with ``changeFrequency`` 5 s and ``statusFrequency`` 5 s
    (goal < 1 %); peer: the file-source daemon;
(d) building and sending one status for ``--statuses`` microservices (median of 20;
    goal < 10 ms); peer: the same body, already serialised, sent with bare
    ``http.client`` (the wire's own cost).

The containerd engine (the default) is the one used, on the harness containerd. The
stand-in controller runs in a thread of its own, so its serving is not counted in
the agent's time. Prints a table; with ``--json`` one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fogwire_config_controller import credentials  # noqa: E402
from fogwire_config_controller.client import ControllerClient  # noqa: E402
from fogwire_config_controller.status import DeviceProbe, microservice_entries, status_body  # noqa: E402
from fogwire_config_controller.testing import StandInThread  # noqa: E402
from reconcile import bench_idle  # noqa: E402

from fogwire.agent import Agent  # noqa: E402
from fogwire.engine import EngineContext, RegistryAuth  # noqa: E402
from fogwire.model.agent_config import PluginSelection, Profile  # noqa: E402
from fogwire.paths import Paths  # noqa: E402
from fogwire.plugins import PluginHost  # noqa: E402
from fogwire.reconcile import MicroserviceStatus  # noqa: E402
from harness import images, services  # noqa: E402

COMMAND = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]


class FirstCreate:
    """Records when the engine's ``create`` is first called after :meth:`arm` (instrumentation only)."""

    def __init__(self, engine: Any) -> None:
        self.at: float | None = None
        self.armed = False
        original = engine.create

        async def create(spec: Any) -> Any:
            if self.armed and self.at is None:
                self.at = time.perf_counter()
            return await original(spec)

        engine.create = create

    def arm(self) -> None:
        self.at, self.armed = None, True


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def bench_react(count: int, rounds: int, work: Path, test_images: images.TestImages) -> dict[str, Any]:
    url = services.start_containerd().url
    host = PluginHost()
    agent_id = f"bench-ctl-{uuid.uuid4().hex[:6]}"
    paths = Paths(work / "config.yaml", work / "s", work / "l", work / "r")
    paths.ensure()
    context = EngineContext(agent_id, paths.state_dir / "engine", paths.run_dir, paths.log_dir, url=url)
    engine = host.engine_factory("containerd")(context)
    await engine.start()
    auth = RegistryAuth(test_images.registry, test_images.username, test_images.password, insecure=True)
    await engine.obtain_image(test_images.ref_v1, auth)
    timer = FirstCreate(engine)
    stand_in = StandInThread()
    controller = stand_in.controller
    node = stand_in.provision(paths.state_dir, agent_id)
    profile = Profile(
        container_engine="containerd",
        container_engine_url=url,
        agent_id=agent_id,
        controller_url=stand_in.url,
        config_source=PluginSelection("controller"),
        change_frequency=1,
        status_frequency=5,
    )
    agent = Agent(engine=engine, profile=profile, paths=paths, plugins=host, api_socket=False)
    ours: list[float] = []
    documents: list[Any] = []
    task = asyncio.create_task(agent.run())
    try:
        await agent.started.wait()
        await asyncio.sleep(2)
        for _ in range(rounds):
            timer.arm()
            deployed_at = time.perf_counter()
            uuids = [
                stand_in.call(controller.deploy, node, x86=test_images.ref_v1, registry_id=2, cmd=COMMAND)
                for _ in range(count)
            ]
            await _until(lambda: asyncio.sleep(0, timer.at is not None), "the first create")  # sleep(0, x) returns x
            answer = min(
                t for m, p, t in list(controller.answered) if (m, p) == ("GET", "config/changes") and t > deployed_at
            )
            assert timer.at is not None
            ours.append((timer.at - answer) * 1000)

            async def all_running(names: list[str] = uuids) -> bool:
                return len(
                    [w for w in await engine.list_managed() if w.name in names and w.state.value == "running"]
                ) == len(names)

            await _until(all_running, "every microservice to run")
            documents = list((await agent.running.source.fetch()).payload)  # type: ignore[union-attr]
            for ms in uuids:
                stand_in.call(controller.delete, ms)

            async def none_left() -> bool:
                return not await engine.list_managed()

            await _until(none_left, "every microservice to go")
    finally:
        agent.stop()
        await task
        stand_in.close()
    # the peer: the same documents straight into Agent.apply, on an agent of its own
    peer_paths = Paths(work / "p.yaml", work / "ps", work / "pl", work / "pr")
    peer_context = EngineContext(
        agent_id + "-p", peer_paths.state_dir / "engine", peer_paths.run_dir, peer_paths.log_dir, url=url
    )
    peer_engine = host.engine_factory("containerd")(peer_context)
    peer_timer = FirstCreate(peer_engine)
    peer_profile = Profile(container_engine="containerd", container_engine_url=url, agent_id=agent_id + "-p")
    peer = Agent(engine=peer_engine, profile=peer_profile, paths=peer_paths, plugins=host, api_socket=False)
    peers: list[float] = []
    peer_task = asyncio.create_task(peer.run())
    try:
        await peer.started.wait()
        for _ in range(rounds):
            peer_timer.arm()
            started = time.perf_counter()
            await peer.apply(documents)
            assert peer_timer.at is not None
            peers.append((peer_timer.at - started) * 1000)
            await peer.apply([])
    finally:
        peer.stop()
        await peer_task
    ours_ms, peer_ms = statistics.median(ours), statistics.median(peers)
    return {
        "count": count,
        "react_ms": round(ours_ms, 1),
        "react_ms_max": round(max(ours), 1),
        "apply_ms": round(peer_ms, 1),
        "react_ratio": round(ours_ms / peer_ms, 2),
    }


def bench_status(count: int, work: Path) -> dict[str, Any]:
    stand_in = StandInThread()
    try:
        stand_in.provision(work, "bench-status")
        stored = credentials.load(work)
        assert stored is not None
        client = ControllerClient(stand_in.url, authorization=stored.authorization)
        names = [uuid.uuid4().hex for _ in range(count)]
        statuses = [
            MicroserviceStatus(n, True, "running", "running", "none", 0, None, "img", "h", f"c{n}", time.time() - 60)
            for n in names
        ]
        probe = DeviceProbe(str(work), "dynamic", (client.host, client.port))
        ours, peers = [], []
        body = b""
        for _ in range(20):
            t0 = time.perf_counter()
            now = time.time()
            document = status_body(
                entries=microservice_entries(statuses, names, {}, now),
                device=probe.read(),
                started_at=now - 600,
                version="x",
            )
            client.call("PUT", "agent/status", document)
            ours.append((time.perf_counter() - t0) * 1000)
            body = json.dumps(document).encode()
        for _ in range(20):
            t0 = time.perf_counter()
            connection = http.client.HTTPConnection(client.host, client.port, timeout=10)
            headers = {"Content-Type": "application/json", "Authorization": stored.authorization()}
            connection.request("PUT", client.path + "agent/status", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            connection.close()
            if response.status != 204:
                raise SystemExit(f"the bare PUT got {response.status}")
            peers.append((time.perf_counter() - t0) * 1000)
    finally:
        stand_in.close()
    ours_ms, peer_ms = statistics.median(ours), statistics.median(peers)
    return {
        "statuses": count,
        "status_ms": round(ours_ms, 2),
        "bare_put_ms": round(peer_ms, 2),
        "status_ratio": round(ours_ms / peer_ms, 2),
    }


def bench_idle_controller(idle_seconds: float, work: Path) -> dict[str, Any]:
    stand_in = StandInThread()
    try:
        (work / "ctl").mkdir()
        stand_in.provision(work / "ctl" / "s", "bench-idle")
        profile = {
            "configSource": {"name": "controller"},
            "controllerUrl": stand_in.url,
            "changeFrequency": 5,
            "statusFrequency": 5,
        }
        ours = bench_idle(idle_seconds, work / "ctl", profile, ("fogwire_config_controller", "nacl"))
        polls = stand_in.controller.requests.count(("GET", "config/changes"))
        reports = stand_in.controller.requests.count(("PUT", "status"))
    finally:
        stand_in.close()
    (work / "file").mkdir()
    peer = bench_idle(idle_seconds, work / "file")
    if polls < 2 or reports < 2:
        raise SystemExit(f"the daemon did not poll and report while idle ({polls} polls, {reports} reports)")
    return {
        "idle_rss_mib": ours["idle_rss_mib"],
        "idle_cpu_percent": ours["idle_cpu_percent"],
        "file_idle_rss_mib": peer["idle_rss_mib"],
        "file_idle_cpu_percent": peer["idle_cpu_percent"],
        "idle_rss_ratio": round(ours["idle_rss_mib"] / peer["idle_rss_mib"], 3),
        "idle_seconds": idle_seconds,
        "idle_polls": polls,
        "idle_reports": reports,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--statuses", type=int, default=100)
    parser.add_argument("--only", choices=("react", "idle", "status"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="fogwire-bench-ctl-") as tmp:
        work = Path(tmp)
        for part in ("react", "idle", "status"):
            (work / part).mkdir()
        if args.only in (None, "react"):
            test_images = images.ensure_test_images(services.start_registry())
            result.update(asyncio.run(bench_react(args.count, args.rounds, work / "react", test_images)))
        if args.only in (None, "status"):
            result.update(bench_status(args.statuses, work / "status"))
        if args.only in (None, "idle"):
            result.update(bench_idle_controller(args.idle_seconds, work / "idle"))
    rows = []
    if "react_ms" in result:
        rows += [
            (
                f"(a) poll answer → first create, {result['count']} new",
                f"{result['react_ms']} ms (max {result['react_ms_max']})",
                "< 100 ms",
            ),
            ("(a) peer: Agent.apply → first create", f"{result['apply_ms']} ms", ""),
            ("(a) ratio", f"{result['react_ratio']}", ""),
        ]
    if "status_ms" in result:
        rows += [
            (f"(d) build + send a status of {result['statuses']}", f"{result['status_ms']} ms", "< 10 ms"),
            ("(d) peer: the same body, bare http.client PUT", f"{result['bare_put_ms']} ms", ""),
            ("(d) ratio", f"{result['status_ratio']}", ""),
        ]
    if "idle_rss_mib" in result:
        rows += [
            ("(b) idle daemon RSS, controller source", f"{result['idle_rss_mib']} MiB", "< 45 MiB"),
            ("(b) peer: file source", f"{result['file_idle_rss_mib']} MiB", ""),
            ("(b) ratio", f"{result['idle_rss_ratio']}", ""),
            ("(c) idle CPU, change/status every 5 s", f"{result['idle_cpu_percent']} %", "< 1 %"),
            ("(c) peer: file source", f"{result['file_idle_cpu_percent']} %", ""),
        ]
    print("fogwire controller benchmark (containerd engine, stand-in controller)")
    width = max(len(r[0]) for r in rows)
    for name, value, goal in rows:
        print(f"  {name.ljust(width)}  {value:28} {('goal ' + goal) if goal else ''}")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
