"""Benchmark the agent: cold apply, no-op pass, idle RSS, idle CPU.

    bench/reconcile.py [--engine containerd|docker|podman] [--count 30] [--idle-seconds 30]
                       [--only apply|idle] [--json]

(a) cold apply of N microservices until all run, against the engine's own CLI
    starting the same containers in a serial shell loop; ratio agent/CLI (goal ≤ 0.6);
(b) a no-op reconcile pass with N running: milliseconds (median of 10) and the
    number of engine write calls (goals < 30 ms and 0);
(c) the idle daemon's RSS with the containerd plugin loaded (goal < 45 MiB);
(d) the idle daemon's CPU over ``--idle-seconds`` (goal < 1 %).
(c) and (d) are measured twice: as the engine is, and with the hand-written HTTP/2
client it had before ``h2`` in place of its own (``bench/hand_written_client.py``).

The image is pulled once beforehand and the microservices use registry ``local``,
so both sides measure starting containers, not pulling. Services come from
``harness.services``. ``--only apply`` runs (a) and (b), ``--only idle`` runs (c) and (d).
Prints a table; with ``--json`` one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import hand_written_client  # noqa: E402

from fogwire.agent import Agent  # noqa: E402
from fogwire.engine import EngineContext, RegistryAuth  # noqa: E402
from fogwire.model.agent_config import Profile  # noqa: E402
from fogwire.paths import Paths  # noqa: E402
from fogwire.plugins import PluginHost  # noqa: E402
from harness import images, services  # noqa: E402

COMMAND = "trap 'exit 0' TERM; sleep 3600 & wait"


def documents(image: str, names: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "iofog.org/v3",
            "kind": "Application",
            "metadata": {"name": "bench"},
            "spec": {
                "microservices": [
                    {
                        "name": n,
                        "images": {"x86": image, "arm": image, "registry": "local"},
                        "container": {"commands": ["sh", "-c", COMMAND]},
                    }
                    for n in names
                ]
            },
        }
    ]


def cli_loop(kind: str, image: str, names: list[str]) -> tuple[str, str]:
    """The serial shell loop that starts ``names`` with the engine's CLI, and its cleanup."""
    cmd = shlex.quote(COMMAND)
    if kind == "docker":
        host = services.start_dockerd().host
        start = f"docker -H {host} run -d --name $n --label fogwire.bench=1 {image} sh -c {cmd} >/dev/null"
        stop = f"docker -H {host} rm -f $n >/dev/null"
    elif kind == "podman":
        args = " ".join(services.start_podman().cli_args)
        start = f"podman {args} run -d --name $n --label fogwire.bench=1 {image} sh -c {cmd} >/dev/null"
        stop = f"podman {args} rm -f -t 0 $n >/dev/null"
    else:
        address = services.start_containerd().address
        ctr = f"ctr -a {address} -n fogwire-bench"
        start = f"{ctr} run -d --label fogwire.bench=1 {image} $n sh -c {cmd} >/dev/null"
        stop = f"{ctr} task kill -s KILL $n >/dev/null 2>&1; sleep 0.2; {ctr} task rm -f $n >/dev/null 2>&1; {ctr} c rm $n >/dev/null"
    loop = " ".join(names)
    return f"for n in {loop}; do {start}; done", f"for n in {loop}; do {stop}; done"


def prepare_cli_image(kind: str, test_images: images.TestImages) -> None:
    creds = f"{test_images.username}:{test_images.password}"
    if kind == "containerd":
        address = services.start_containerd().address
        subprocess.run(
            [
                "ctr",
                "-a",
                address,
                "-n",
                "fogwire-bench",
                "images",
                "pull",
                "--plain-http",
                "--user",
                creds,
                test_images.ref_v1,
            ],
            check=True,
            capture_output=True,
        )


async def bench_apply(
    kind: str, count: int, test_images: images.TestImages, work: Path, concurrency: int = 8
) -> dict[str, Any]:
    url = services.engine_url(kind)
    agent_id = f"bench-{uuid.uuid4().hex[:6]}"
    paths = Paths(work / "config.yaml", work / "state", work / "log", work / "run")
    host = PluginHost()
    context = EngineContext(agent_id, paths.state_dir / "engine", paths.run_dir, paths.log_dir, url=url)
    engine = host.engine_factory(kind)(context)
    await engine.start()
    auth = RegistryAuth(test_images.registry, test_images.username, test_images.password, insecure=True)
    await engine.obtain_image(test_images.ref_v1, auth)
    await engine.close()
    prepare_cli_image(kind, test_images)

    prefix = f"b{uuid.uuid4().hex[:4]}"
    cli_names = [f"{prefix}-cli-{i}" for i in range(count)]
    start, stop = cli_loop(kind, test_images.ref_v1, cli_names)
    names = [f"{prefix}-fw-{i}" for i in range(count)]
    await asyncio.sleep(3)
    agent = Agent(
        engine=kind,
        profile=Profile(container_engine_url=url, agent_id=agent_id, pruning_frequency=0, resync_seconds=3600),
        paths=paths,
        plugins=host,
        api_socket=False,
        concurrency=concurrency,
    )
    task = asyncio.create_task(agent.run())
    await agent.started.wait()
    try:
        t0 = time.perf_counter()
        result = await agent.apply(documents(test_images.ref_v1, names))
        while True:
            running = [m for m in (await agent.status())["microservices"] if m["state"] == "running"]
            if len(running) == count:
                break
            await asyncio.sleep(0.05)
        agent_s = time.perf_counter() - t0
        failed = [a for a in result["actions"] if not a["ok"]]
        if failed:
            raise SystemExit(f"apply failed: {failed[:3]}")
        passes = []
        writes = []
        for _ in range(10):
            r = await agent.reconcile_now()
            passes.append(r.duration_s * 1000)
            writes.append(r.engine_writes)
        await agent.apply([])
    finally:
        agent.stop()
        await task
    # The CLI loop second, after the same settling time, so neither side runs
    # while the engine is still cleaning up after the other.
    await asyncio.sleep(3)
    t0 = time.perf_counter()
    subprocess.run(["bash", "-c", start], check=True)
    cli_s = time.perf_counter() - t0
    subprocess.run(["bash", "-c", stop], check=False)
    return {
        "engine": kind,
        "count": count,
        "concurrency": concurrency,
        "cold_apply_agent_s": round(agent_s, 2),
        "cold_apply_cli_s": round(cli_s, 2),
        "cold_apply_ratio": round(agent_s / cli_s, 3),
        "noop_pass_ms": round(statistics.median(passes), 1),
        "noop_pass_ms_max": round(max(passes), 1),
        "noop_engine_writes": max(writes),
    }


DAEMON = """
import runpy, sys
sys.argv[1:1] = ["daemon"]
runpy.run_module("fogwire.cli", run_name="__main__", alter_sys=True)
"""
"""What ``python -m fogwire.cli daemon`` does, as code to follow the client's installation."""


def proc_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_idle(
    idle_seconds: float,
    work: Path,
    profile: dict[str, Any] | None = None,
    extra_packages: tuple[str, ...] = (),
    client: Path | None = None,
) -> dict[str, Any]:
    """The daemon on the containerd plugin (external harness containerd), idle with an empty desired state.

    ``profile`` adds to (or replaces) the agent-config profile's keys, e.g. another
    ``configSource``; the daemon's state dir is ``work / "s"``. ``client`` is a gRPC
    client module the engine uses instead of its own (``bench/hand_written_client.py``).
    """
    url = services.start_containerd().url
    desired = work / "desired.yaml"
    desired.write_text("")
    config = work / "config.yaml"
    settings: dict[str, Any] = {
        "containerEngine": "containerd",
        "containerEngineUrl": url,
        "agentId": f"bench-idle-{uuid.uuid4().hex[:6]}",
        "configSource": {"name": "file", "options": {"path": str(desired)}},
        **(profile or {}),
    }
    config.write_text(json.dumps({"profiles": {"default": settings}}))
    flags = [
        "--config",
        str(config),
        "--state-dir",
        str(work / "s"),
        "--run-dir",
        str(work / "r"),
        "--log-dir",
        str(work / "l"),
    ]
    # Bytecode as an installed package has it: a stale .pyc (a source edited since, and
    # PYTHONDONTWRITEBYTECODE set) is compiled in the daemon on every start, which
    # leaves up to 3 MiB of freed compiler memory in its heap.
    packages = ("fogwire", "fogwire_engine_containerd", *extra_packages)
    find = f"import importlib.util as u; print(*[p for n in {packages!r} for p in u.find_spec(n).submodule_search_locations], sep='\\n')"
    dirs = subprocess.run([sys.executable, "-c", find], check=True, capture_output=True, text=True).stdout.split()
    if client is not None:
        dirs.append(str(client))
    subprocess.run([sys.executable, "-m", "compileall", "-q", *dirs], check=True, stdout=subprocess.DEVNULL)
    # Both clients' daemons start the same way: run as ``python -m fogwire.cli``, after the code that
    # puts the other client in place when there is one.
    launch = (hand_written_client.install_code(client) if client else "") + DAEMON
    proc = subprocess.Popen([sys.executable, "-c", launch, *flags], stderr=subprocess.DEVNULL)
    try:
        sock = work / "r" / "fogwire.sock"
        deadline = time.monotonic() + 60
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the daemon did not start")
            time.sleep(0.1)
        time.sleep(3)
        cpu0, t0 = proc_cpu_s(proc.pid), time.monotonic()
        time.sleep(idle_seconds)
        cpu1, t1 = proc_cpu_s(proc.pid), time.monotonic()
        rss = proc_rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    return {
        "idle_rss_mib": round(rss, 1),
        "idle_cpu_percent": round(100 * (cpu1 - cpu0) / (t1 - t0), 2),
        "idle_seconds": idle_seconds,
    }


def ratio(result: dict[str, Any]) -> float:
    """The idle daemon's RSS over the same daemon's with the hand-written client."""
    return float(result["idle_rss_mib"]) / float(result["hand_written_idle_rss_mib"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", default="containerd", choices=("containerd", "docker", "podman"))
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=8, help="the agent's concurrent actions (default 8)")
    parser.add_argument("--only", choices=("apply", "idle"), help="run only (a)+(b) or only (c)+(d)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="fogwire-bench-") as tmp:
        work = Path(tmp)
        (work / "a").mkdir()
        (work / "i").mkdir()
        (work / "h").mkdir()
        if args.only != "idle":
            test_images = images.ensure_test_images(services.start_registry())
            result.update(asyncio.run(bench_apply(args.engine, args.count, test_images, work / "a", args.concurrency)))
        if args.only != "apply":
            result.update(bench_idle(args.idle_seconds, work / "i"))
            # the same daemon with the hand-written HTTP/2 client the engine had before h2
            client = hand_written_client.write_module(work)
            if client is not None:
                before = bench_idle(args.idle_seconds, work / "h", client=client)
                result.update({f"hand_written_{key}": value for key, value in before.items() if key != "idle_seconds"})
    goals = []
    if "cold_apply_agent_s" in result:
        goals += [
            ("(a) cold apply, agent", f"{result['cold_apply_agent_s']} s", ""),
            ("(a) cold apply, CLI serial loop", f"{result['cold_apply_cli_s']} s", ""),
            ("(a) ratio agent/CLI", f"{result['cold_apply_ratio']}", "≤ 0.6"),
            (
                "(b) no-op pass (median of 10)",
                f"{result['noop_pass_ms']} ms (max {result['noop_pass_ms_max']})",
                "< 30 ms",
            ),
            ("(b) engine writes in a no-op pass", f"{result['noop_engine_writes']}", "0"),
        ]
    if "idle_rss_mib" in result:
        goals += [
            ("(c) idle daemon RSS (containerd plugin)", f"{result['idle_rss_mib']} MiB", "< 45 MiB"),
            ("(d) idle daemon CPU", f"{result['idle_cpu_percent']} % over {result['idle_seconds']:g} s", "< 1 %"),
        ]
        if "hand_written_idle_rss_mib" in result:
            beside = f"    with the hand-written client ({hand_written_client.COMMIT})"
            goals[-1:-1] = [(beside, f"{result['hand_written_idle_rss_mib']} MiB (ratio {ratio(result):.3f})", "")]
            goals.append((beside, f"{result['hand_written_idle_cpu_percent']} %", ""))
        else:
            goals.append(
                (f"    (no git history of {hand_written_client.COMMIT}: the hand-written client left out)", "", "")
            )
    print(f"fogwire reconcile benchmark: engine {args.engine}, {args.count} microservices")
    width = max(len(g[0]) for g in goals)
    for name, value, goal in goals:
        print(f"  {name.ljust(width)}  {value:32} {('goal ' + goal) if goal else ''}")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
