"""Benchmark: what loading the containerd engine costs, and proof that other commands pay nothing.

Measured in fresh processes (median over N runs, after one warm-up run that also
writes the ``.pyc`` files an installed agent has), each with ``asyncio``,
``logging``, ``fogwire.engine`` and the plugin's entry-point module already
imported (what the agent holds before it selects an engine):

* ``engine module``: ``import fogwire_engine_containerd.engine`` (the plugin's
  gRPC client on ``h2``, protobuf and the generated stubs): wall time and RSS added (VmRSS before/after).
  Goals: under 100 ms and under 15 MiB.
* the same with the hand-written HTTP/2 client the plugin had before ``h2`` (commit
  452b9f1, read from git history: ``bench/hand_written_client.py``) in place of
  today's: the engine import as it cost before, measured in the same run.
* ``h2 alone`` and ``h2 + protobuf runtime``, for reference: the floor of
  the plugin's own gRPC client.
* ``grpcio`` (``import grpc``), the C-core client the plugin used before, when it
  is installed (it is not a dependency; ``pip install grpcio`` to compare).
* ``fogwire --help`` and ``fogwire plugins --json`` run in-process in a subprocess
  that then lists ``sys.modules``: neither may import a gRPC client,
  ``google.protobuf`` or the engine module.

Usage: python bench/containerd_import.py [--runs 15] [--json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import hand_written_client

MEASURE = r"""
import json, sys, time
import asyncio, logging, fogwire.engine, fogwire_engine_containerd.plugin
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
before = rss()
start, cpu = time.perf_counter(), time.process_time()
{prelude}
import {module}
elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({{"ms": elapsed * 1000, "cpu_ms": cpu * 1000, "rss_kib": rss() - before}}))
"""

CLI_MODULES = r"""
import contextlib, io, json, sys
from fogwire.cli.main import main
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
    try:
        main({argv})
    except SystemExit:
        pass
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("grpc", "h2", "hpack", "hyperframe") or m.startswith(("google.protobuf", "fogwire_engine_containerd.engine", "fogwire_engine_containerd._")))
print(json.dumps({{"heavy": heavy, "output_bytes": len(out.getvalue())}}))
"""


def _env() -> dict[str, str]:
    """The environment without ``PYTHONDONTWRITEBYTECODE``: an installed agent has its ``.pyc`` files."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _sample(module: str, prelude: str) -> tuple[float, float, float]:
    """One fresh process: import wall time (ms), CPU time (ms) and RSS added (MiB) of ``module`` after ``prelude``."""
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE.format(module=module, prelude=prelude)],
        check=True,
        capture_output=True,
        text=True,
        env=_env(),
    )
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    return doc["ms"], doc["cpu_ms"], doc["rss_kib"] / 1024


def measure_alternating(variants: list[tuple[str, str]], runs: int) -> list[tuple[float, float, float]]:
    """Per ``(module, prelude)`` variant: median import wall time (ms), CPU time (ms) and RSS added (MiB).

    Each variant runs once to warm the page cache and write its ``.pyc`` files
    (dropped), then ``runs`` times, the variants taking turns, so a change in the
    machine's load falls on all of them. CPU time is what the import itself
    costs; wall time also counts waiting for a CPU, which dominates on a busy
    machine. ``prelude`` runs just before the import and is counted with it.
    """
    for module, prelude in variants:
        _sample(module, prelude)
    samples: list[list[tuple[float, float, float]]] = [[] for _ in variants]
    for _ in range(runs):
        for got, (module, prelude) in zip(samples, variants, strict=True):
            got.append(_sample(module, prelude))
    return [
        (
            statistics.median(s[0] for s in got),
            statistics.median(s[1] for s in got),
            statistics.median(s[2] for s in got),
        )
        for got in samples
    ]


def measure(module: str, runs: int) -> tuple[float, float, float]:
    """:func:`measure_alternating` of ``module`` alone."""
    return measure_alternating([(module, "")], runs)[0]


def heavy_modules(argv: list[str]) -> list[str]:
    """The gRPC/protobuf/engine modules a CLI command imported (should be none)."""
    proc = subprocess.run(
        [sys.executable, "-c", CLI_MODULES.format(argv=repr(argv))], check=True, capture_output=True, text=True
    )
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    if not doc["output_bytes"]:
        raise RuntimeError(f"fogwire {' '.join(argv)} printed nothing; is the CLI broken?")
    return list(doc["heavy"])


def main() -> int:
    """Run the benchmark; print a table (and one JSON object as the last line with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args()
    engine = "fogwire_engine_containerd.engine"
    with tempfile.TemporaryDirectory(prefix="fogwire-bench-") as tmp:
        client = hand_written_client.write_module(Path(tmp))
        if client is None:
            print(f"(no git history of {hand_written_client.COMMIT}: the hand-written client is left out)")
            (engine_ms, engine_cpu, engine_mib), old = measure(engine, args.runs), None
        else:
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(client)], check=True, env=_env())
            variants = [(engine, ""), (engine, hand_written_client.install_code(client))]
            (engine_ms, engine_cpu, engine_mib), old = measure_alternating(variants, args.runs)
    grpc_ms, grpc_cpu, grpc_mib = measure("h2.connection", args.runs)
    floor_ms, floor_cpu, floor_mib = measure(
        "h2.connection, google.protobuf.any_pb2, google.protobuf.timestamp_pb2", args.runs
    )
    grpcio = measure("grpc", args.runs) if importlib.util.find_spec("grpc") else None
    help_heavy = heavy_modules(["--help"])
    plugins_heavy = heavy_modules(["plugins", "--json"])
    result = {
        "runs": args.runs,
        "engine_import_ms": round(engine_ms, 1),
        "engine_import_cpu_ms": round(engine_cpu, 1),
        "engine_rss_mib": round(engine_mib, 1),
        "hand_written_engine_import_ms": round(old[0], 1) if old else None,
        "hand_written_engine_import_cpu_ms": round(old[1], 1) if old else None,
        "hand_written_engine_rss_mib": round(old[2], 1) if old else None,
        "h2_import_cpu_ms": round(grpc_cpu, 1),
        "h2_protobuf_import_cpu_ms": round(floor_cpu, 1),
        "load_average_1m": os.getloadavg()[0],
        "h2_import_ms": round(grpc_ms, 1),
        "h2_rss_mib": round(grpc_mib, 1),
        "h2_protobuf_import_ms": round(floor_ms, 1),
        "h2_protobuf_rss_mib": round(floor_mib, 1),
        "grpcio_import_ms": round(grpcio[0], 1) if grpcio else None,
        "grpcio_rss_mib": round(grpcio[2], 1) if grpcio else None,
        "help_heavy_modules": help_heavy,
        "plugins_heavy_modules": plugins_heavy,
        "goal_import_ms": 100,
        "goal_rss_mib": 15,
        "import_ok": engine_ms < 100,
        "rss_ok": engine_mib < 15,
        "help_clean": not help_heavy,
        "plugins_clean": not plugins_heavy,
    }
    rows = [
        (
            "import fogwire_engine_containerd.engine",
            f"{engine_ms:.1f} ms",
            f"cpu {engine_cpu:.1f} ms, {engine_mib:.1f} MiB",
            "< 100 ms, < 15 MiB",
        ),
        (
            f"  the same, hand-written client ({hand_written_client.COMMIT})",
            f"{old[0]:.1f} ms" if old else "-",
            f"cpu {old[1]:.1f} ms, {old[2]:.1f} MiB" if old else "no git history",
            "",
        ),
        ("import h2 (reference)", f"{grpc_ms:.1f} ms", f"cpu {grpc_cpu:.1f} ms, {grpc_mib:.1f} MiB", ""),
        (
            "import h2 + protobuf runtime",
            f"{floor_ms:.1f} ms",
            f"cpu {floor_cpu:.1f} ms, {floor_mib:.1f} MiB",
            "",
        ),
        (
            "import grpc (grpcio, the former client)",
            f"{grpcio[0]:.1f} ms" if grpcio else "-",
            f"cpu {grpcio[1]:.1f} ms, {grpcio[2]:.1f} MiB" if grpcio else "not installed",
            "",
        ),
        ("fogwire --help: heavy modules", str(len(help_heavy)), ", ".join(help_heavy) or "-", "0"),
        ("fogwire plugins --json: heavy modules", str(len(plugins_heavy)), ", ".join(plugins_heavy) or "-", "0"),
    ]
    print(f"load average (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'what':42} {'value':>10}  {'detail':28} goal")
    for what, value, detail, goal in rows:
        print(f"{what:42} {value:>10}  {detail:28} {goal}")
    if args.json:
        print(json.dumps(result))
    ok = result["import_ok"] and result["rss_ok"] and result["help_clean"] and result["plugins_clean"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
