"""Start 30 busybox httpd workloads through an engine plugin, and the same with the engine's CLI.

    python bench/engine_start.py [--engine docker|podman|containerd] [--count 30] [--rounds N] [--json]

Both runs publish each workload on its own host port (127.0.0.1) and end when
every one answers HTTP; the workloads are then removed. The plugin run uses the
concurrency the plugin chooses (all workloads requested at once; the engine
bounds them with its worker pool); the CLI run is a serial shell loop of
``docker run -d …`` / ``podman run -d …``. Also timed: listing the managed
workloads while all of them exist (median of 5).

The services come from the harness (``harness.services``), like the tests.
Output: a table for people; with ``--json`` one JSON object as the last line.
Goals: plugin/CLI ratio ≤ 0.6, list < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fogwire.engine import Engine, EngineContext, PortMapping, RegistryAuth, WorkloadSpec
from fogwire.plugins import PluginHost
from harness import images, services

HTTPD = ("httpd", "-f", "-p", "8080", "-h", "/www")
RATIO_GOAL = 0.6
LIST_GOAL_MS = 50.0


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now."""
    holders = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        holders.append(s)
    ports = [s.getsockname()[1] for s in holders]
    for s in holders:
        s.close()
    return ports


def answers(port: int) -> bool:
    """True if an HTTP server answers on 127.0.0.1:``port``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


async def wait_http(ports: list[int], timeout: float = 120.0) -> None:
    """Wait until every port answers HTTP."""
    deadline = time.monotonic() + timeout
    pending = set(ports)
    while pending:
        if time.monotonic() > deadline:
            raise SystemExit(f"ports never answered: {sorted(pending)}")
        results = await asyncio.gather(*(asyncio.to_thread(answers, p) for p in pending))
        pending = {p for p, ok in zip(list(pending), results, strict=True) if not ok}
        if pending:
            await asyncio.sleep(0.05)


def engine_setup(name: str) -> tuple[str, list[str]]:
    """Start the engine's harness service; return its URL and the CLI prefix."""
    if name == "docker":
        d = services.start_dockerd()
        return d.host, ["docker", "--host", d.host]
    if name == "podman":
        p = services.start_podman()
        return p.url, ["podman", *p.cli_args]
    if name == "containerd":
        c = services.start_containerd()
        return c.url, ["ctr", "--address", c.address]
    raise SystemExit(f"unknown engine {name!r}")


async def plugin_run(engine_name: str, url: str, image: str, auth: RegistryAuth, count: int) -> dict[str, float]:
    """Start ``count`` workloads through the plugin; time start-to-HTTP, list and remove."""
    with tempfile.TemporaryDirectory(prefix="fwbench-") as tmp:
        base = Path(tmp)
        context = EngineContext(
            agent_id=f"bench-{secrets.token_hex(3)}",
            data_dir=base,
            run_dir=base,
            log_dir=base,
            url=url,
        )
        engine: Engine = PluginHost().engine_factory(engine_name)(context)
        await engine.start()
        try:
            await engine.obtain_image(image, auth)
            ports = free_ports(count)
            names = [f"fwbench-{context.agent_id}-{i}" for i in range(count)]

            async def start_one(name: str, port: int) -> None:
                spec = WorkloadSpec(
                    name=name, image=image, command=HTTPD, ports=(PortMapping(8080, port, "tcp", "127.0.0.1"),)
                )
                await engine.create(spec)
                await engine.start_workload(name)

            t0 = time.perf_counter()
            await asyncio.gather(*(start_one(n, p) for n, p in zip(names, ports, strict=True)))
            await wait_http(ports)
            start_s = time.perf_counter() - t0
            list_times = []
            for _ in range(5):
                t = time.perf_counter()
                listed = await engine.list_managed()
                list_times.append(time.perf_counter() - t)
            assert len(listed) == count, f"listed {len(listed)} of {count}"
            t0 = time.perf_counter()
            await asyncio.gather(*(engine.remove(n) for n in names))
            remove_s = time.perf_counter() - t0
        finally:
            for w in await engine.list_managed():
                await engine.remove(w.name)
            await engine.close()
    return {"start_s": start_s, "list_ms": statistics.median(list_times) * 1000, "remove_s": remove_s}


def cli_run(cli: list[str], image: str, count: int) -> dict[str, float]:
    """The same with the engine's CLI in a serial shell loop."""
    ports = free_ports(count)
    tag = secrets.token_hex(3)
    names = [f"fwbench-cli-{tag}-{i}" for i in range(count)]
    prefix = shlex.join(cli)
    runs = "\n".join(
        f"{prefix} run -d --name {n} -p 127.0.0.1:{p}:8080 {image} {shlex.join(HTTPD)} >/dev/null"
        for n, p in zip(names, ports, strict=True)
    )
    t0 = time.perf_counter()
    subprocess.run(["sh", "-ec", runs], check=True, timeout=600)
    asyncio.run(wait_http(ports))
    start_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    kill_now = " --time 0" if cli[0] == "podman" else ""  # podman's rm -f waits the stop timeout first
    removes = "\n".join(f"{prefix} rm -f{kill_now} {n} >/dev/null" for n in names)
    subprocess.run(["sh", "-ec", removes], check=True, timeout=600)
    remove_s = time.perf_counter() - t0
    return {"start_s": start_s, "remove_s": remove_s}


def ctr_run(cli: list[str], image: str, auth: RegistryAuth, count: int) -> dict[str, float]:
    """The containerd peer: a serial shell loop of ``ctr run -d``, in a namespace of its own.

    ``ctr`` has no port publishing (no CNI of its own), so each workload shares the
    host network and busybox httpd listens on its host port directly; ``ctr`` thus
    skips the network setup the plugin does. The image is pulled into the
    namespace first (not timed).
    """
    ports = free_ports(count)
    tag = secrets.token_hex(3)
    ctr = [*cli, "--namespace", f"fwbench-{tag}"]
    prefix = shlex.join(ctr)
    subprocess.run(
        [*ctr, "images", "pull", "--plain-http", "--user", f"{auth.username}:{auth.password}", image],
        check=True,
        capture_output=True,
        timeout=300,
    )
    names = [f"fwbench-ctr-{tag}-{i}" for i in range(count)]
    runs = "\n".join(
        f"{prefix} run -d --net-host {image} {n} {shlex.join((*HTTPD[:2], '-p', str(p), *HTTPD[4:]))} >/dev/null"
        for n, p in zip(names, ports, strict=True)
    )
    try:
        t0 = time.perf_counter()
        subprocess.run(["sh", "-ec", runs], check=True, timeout=600)
        asyncio.run(wait_http(ports))
        start_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        removes = "\n".join(f"{prefix} task rm -f {n} >/dev/null && {prefix} container rm {n}" for n in names)
        subprocess.run(["sh", "-ec", removes], check=True, timeout=600)
        remove_s = time.perf_counter() - t0
    finally:
        leftovers = "\n".join(f"{prefix} task rm -f {n}; {prefix} container rm {n}" for n in names)
        subprocess.run(["sh", "-c", leftovers], capture_output=True, timeout=600)
        subprocess.run([*ctr, "images", "rm", "--sync", image], capture_output=True, timeout=120)
        subprocess.run([*cli, "namespaces", "rm", f"fwbench-{tag}"], capture_output=True, timeout=60)
    return {"start_s": start_s, "remove_s": remove_s}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table (and JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="docker", choices=["docker", "podman", "containerd"])
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=1, help="alternate plugin and CLI runs N times; report medians")
    parser.add_argument("--json", action="store_true", help="end with one JSON object on the last line")
    args = parser.parse_args(argv)

    registry = services.start_registry()
    test_images = images.ensure_test_images(registry)
    auth = RegistryAuth(registry.url, registry.username, registry.password, insecure=True)
    url, cli = engine_setup(args.engine)
    result: dict[str, Any] = {"engine": args.engine, "count": args.count, "rounds": max(1, args.rounds)}
    plugin_rounds: list[dict[str, float]] = []
    cli_rounds: list[dict[str, float]] = []
    for _ in range(max(1, args.rounds)):  # alternating, so a noisy machine hits both sides alike
        plugin_rounds.append(asyncio.run(plugin_run(args.engine, url, test_images.ref_v1, auth, args.count)))
        if args.engine == "containerd":
            cli_rounds.append(ctr_run(cli, test_images.ref_v1, auth, args.count))
        else:
            cli_rounds.append(cli_run(cli, test_images.ref_v1, args.count))
    plugin = {k: statistics.median(r[k] for r in plugin_rounds) for k in plugin_rounds[0]}
    cli_result = {k: statistics.median(r[k] for r in cli_rounds) for k in cli_rounds[0]}
    result.update({f"plugin_{k}": round(v, 4) for k, v in plugin.items()})
    result.update({f"cli_{k}": round(v, 4) for k, v in cli_result.items()})
    result["ratio"] = round(plugin["start_s"] / cli_result["start_s"], 3)
    result["ratio_per_round"] = [
        round(p["start_s"] / c["start_s"], 3) for p, c in zip(plugin_rounds, cli_rounds, strict=True)
    ]
    if args.engine == "containerd":
        result["cli"] = "ctr run -d --net-host (ctr cannot publish ports: httpd listens on the host port itself)"
    result["ratio_goal"] = RATIO_GOAL
    result["list_goal_ms"] = LIST_GOAL_MS

    def fmt(v: Any, unit: str = "s") -> str:
        return "TODO (containerd: ctr run -d)" if v is None else f"{v:.3f} {unit}"

    rows = [
        (f"start {args.count} + wait HTTP, plugin", fmt(result["plugin_start_s"])),
        (f"start {args.count} + wait HTTP, CLI loop", fmt(result.get("cli_start_s"))),
        ("ratio plugin/CLI (goal <= 0.6)", "TODO" if result["ratio"] is None else f"{result['ratio']:.2f}"),
        (f"list {args.count} managed (median of 5, goal < 50 ms)", f"{result['plugin_list_ms']:.1f} ms"),
        (f"remove {args.count}, plugin", fmt(result["plugin_remove_s"])),
        (f"remove {args.count}, CLI loop", fmt(result.get("cli_remove_s"))),
    ]
    width = max(len(r[0]) for r in rows)
    rounds = f", median of {args.rounds} alternating rounds" if args.rounds > 1 else ""
    print(f"engine_start: {args.engine}, {args.count} busybox httpd workloads{rounds}")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
