"""Every benchmark in one run, and one table: figure, ours, peer, ratio, goal, met or not.

    python bench/run_all.py              # every benchmark (about 15 minutes on 2 cores)
    python bench/run_all.py --quick      # the fast ones only (cli_startup, containerd_import, router_reload)
    python bench/run_all.py --only reconcile,bundle
    python bench/run_all.py --json       # the table as one JSON object on the last line

Each benchmark runs as its own process with ``--json`` (one JSON object on its last
line); the rows below say which of its figures are shown and against which goal. The
goals are the issues' and the docs' (``docs/agent.md``, ``docs/engines.md``,
``docs/router.md``, ``docs/bundles.md``); this file is the one place that lists
them all. A benchmark that fails is a row saying so, and the run goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Row:
    """One figure of one benchmark: how to read ours (and the peer's) from its JSON, and the goal."""

    figure: str
    ours: Callable[[dict[str, Any]], float | None]
    unit: str
    goal: str
    met: Callable[[dict[str, Any]], bool]
    peer: Callable[[dict[str, Any]], float | None] | None = None
    peer_name: str = ""


def _get(*path: str) -> Callable[[dict[str, Any]], Any]:
    def read(data: dict[str, Any]) -> Any:
        for key in path:
            data = data[key]
        return data

    return read


BENCHMARKS: dict[str, tuple[list[str], list[Row]]] = {
    "cli_startup": (
        [],
        [
            Row(
                "fogwire --help",
                _get("help_ms"),
                "ms",
                "< 120 ms and < 4x python",
                lambda d: d["help_ms"] < 120 and d["ratio"] < 4,
                _get("python_ms"),
                "python -c pass",
            ),
        ],
    ),
    "containerd_import": (
        [],
        [
            Row(
                "containerd engine import",
                _get("engine_import_ms"),
                "ms",
                "< 100 ms",
                lambda d: d["engine_import_ms"] < 100,
                _get("hand_written_engine_import_ms"),
                "hand-written HTTP/2 client",
            ),
            Row(
                "containerd engine import RSS",
                _get("engine_rss_mib"),
                "MiB",
                "< 15 MiB",
                lambda d: d["engine_rss_mib"] < 15,
                _get("hand_written_engine_rss_mib"),
                "hand-written HTTP/2 client",
            ),
        ],
    ),
    "grpc_client": (
        [],
        [
            Row(
                "containerd client CPU per unary call (the worst ratio of 4 calls)",
                _get("cpu_ms_per_call"),
                "ms",
                "ratio ≤ 1.5",
                lambda d: d["ratio"] <= 1.5,
                _get("peer_cpu_ms_per_call"),
                "hand-written HTTP/2",
            ),
        ],
    ),
    "reconcile": (
        ["--engine", "containerd"],
        [
            Row(
                "cold apply of 30 (containerd)",
                _get("cold_apply_agent_s"),
                "s",
                "ratio ≤ 0.6",
                lambda d: d["cold_apply_ratio"] <= 0.6,
                _get("cold_apply_cli_s"),
                "CLI serial loop",
            ),
            Row(
                "no-op pass, 30 running",
                _get("noop_pass_ms"),
                "ms",
                "< 30 ms, 0 writes",
                lambda d: d["noop_pass_ms"] < 30 and d["noop_engine_writes"] == 0,
            ),
            Row(
                "idle daemon RSS",
                _get("idle_rss_mib"),
                "MiB",
                "< 45 MiB",
                lambda d: d["idle_rss_mib"] < 45,
                _get("hand_written_idle_rss_mib"),
                "hand-written HTTP/2 client",
            ),
            Row(
                "idle daemon CPU",
                _get("idle_cpu_percent"),
                "%",
                "< 1 %",
                lambda d: d["idle_cpu_percent"] < 1,
                _get("hand_written_idle_cpu_percent"),
                "hand-written HTTP/2 client",
            ),
        ],
    ),
    "controller": (
        [],
        [
            Row(
                "controller poll answer → first create, 30 new",
                _get("react_ms"),
                "ms",
                "< 100 ms",
                lambda d: d["react_ms"] < 100,
                _get("apply_ms"),
                "Agent.apply → first create",
            ),
            Row(
                "idle daemon RSS, controller source",
                _get("idle_rss_mib"),
                "MiB",
                "< 45 MiB",
                lambda d: d["idle_rss_mib"] < 45,
                _get("file_idle_rss_mib"),
                "file source",
            ),
            Row(
                "idle daemon CPU, controller source (5 s / 5 s)",
                _get("idle_cpu_percent"),
                "%",
                "< 1 %",
                lambda d: d["idle_cpu_percent"] < 1,
                _get("file_idle_cpu_percent"),
                "file source",
            ),
            Row(
                "build + send a status of 100",
                _get("status_ms"),
                "ms",
                "< 10 ms",
                lambda d: d["status_ms"] < 10,
                _get("bare_put_ms"),
                "bare http.client PUT",
            ),
        ],
    ),
    "device_api": (
        [],
        [
            Row(
                "idle daemon RSS with the device API",
                _get("idle_rss_mib"),
                "MiB",
                "< 45 MiB",
                lambda d: d["idle_rss_mib"] < 45,
                _get("without_idle_rss_mib"),
                "the same daemon without it",
            ),
            Row(
                "GET /v1/microservices/config, kept-alive TLS",
                _get("config_get_ms"),
                "ms",
                "< 2 ms",
                lambda d: d["config_get_ms"] < 2,
                _get("aiohttp_config_get_ms"),
                "aiohttp web server",
            ),
        ],
    ),
    "engine_start": (
        ["--engine", "containerd"],
        [
            Row(
                "start 30 httpd (containerd)",
                _get("plugin_start_s"),
                "s",
                "ratio ≤ 0.6",
                lambda d: d["ratio"] <= 0.6,
                _get("cli_start_s"),
                "ctr run loop",
            ),
            Row("list 30 managed", _get("plugin_list_ms"), "ms", "< 50 ms", lambda d: d["plugin_list_ms"] < 50),
        ],
    ),
    "config_latency": (
        ["--changes", "100"],
        [
            Row("pot config change p99", _get("pot", "p99_ms"), "ms", "< 50 ms", lambda d: d["pot"]["p99_ms"] < 50),
            Row(
                "kubernetes change p99 over debounce",
                _get("kubernetes", "p99_over_debounce_ms"),
                "ms",
                "< 20 ms",
                lambda d: d["kubernetes"]["p99_over_debounce_ms"] < 20,
            ),
        ],
    ),
    "router_reload": (
        ["--changes", "100"],
        [
            Row(
                "router one-entity change p99",
                _get("one_entity_change", "p99_ms"),
                "ms",
                "< 50 ms",
                lambda d: d["one_entity_change"]["p99_ms"] < 50,
            ),
        ],
    ),
    "bundle": (
        ["--size-mib", "100"],
        [
            Row(
                "bundle import to a registry",
                _get("registry_import_s"),
                "s",
                "ratio ≤ 1.0",
                lambda d: d["registry_ratio"] <= 1.0,
                _get("skopeo_copy_s"),
                "skopeo copy",
            ),
            Row("bundle re-import (cached)", _get("reimport_s"), "s", "< 1 s", lambda d: d["reimport_s"] < 1),
            Row("bundle import peak RSS", _get("peak_rss_mib"), "MiB", "< 100 MiB", lambda d: d["peak_rss_mib"] < 100),
        ],
    ),
}
"""Benchmark file → (its arguments here, the rows it gives)."""

QUICK = ("cli_startup", "containerd_import", "router_reload")


def run_one(name: str, extra: list[str]) -> tuple[dict[str, Any] | None, str, float]:
    """Run ``bench/NAME.py --json``; its JSON (or ``None``), why not, and how long it took."""
    started = time.monotonic()
    process = subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), "--json", *extra], capture_output=True, text=True, check=False
    )
    took = time.monotonic() - started
    lines = [line for line in process.stdout.splitlines() if line.strip()]
    if process.returncode not in (0, 1) or not lines:
        return None, (process.stderr.strip().splitlines() or ["no output"])[-1], took
    try:
        return json.loads(lines[-1]), "", took
    except json.JSONDecodeError:
        return None, "its last line is not one JSON object", took


def _number(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:.3g} {unit}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument("--only", help="comma-separated benchmark names")
    parser.add_argument("--json", action="store_true", help="end with the table as one JSON object")
    args = parser.parse_args(argv)
    names = list(BENCHMARKS)
    if args.quick:
        names = list(QUICK)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
    table: list[dict[str, Any]] = []
    load = os.getloadavg()[0]
    for name in names:
        extra, rows = BENCHMARKS[name]
        print(f"running bench/{name}.py …", file=sys.stderr, flush=True)
        data, why, took = run_one(name, extra)
        for row in rows:
            entry: dict[str, Any] = {"benchmark": name, "figure": row.figure, "goal": row.goal, "seconds": round(took)}
            if data is None:
                entry.update(ours=None, peer=None, ratio=None, met=None, error=why)
            else:
                try:
                    ours = row.ours(data)
                    peer = row.peer(data) if row.peer else None
                    entry.update(
                        ours=ours,
                        unit=row.unit,
                        peer=peer,
                        peer_name=row.peer_name,
                        ratio=round(ours / peer, 3) if ours is not None and peer else None,
                        met=row.met(data),
                    )
                except (KeyError, TypeError) as error:
                    entry.update(ours=None, peer=None, ratio=None, met=None, error=f"figure missing: {error}")
            table.append(entry)
    header = ("benchmark", "figure", "ours", "peer", "ratio", "goal", "met")
    cells = [header]
    for e in table:
        unit = e.get("unit", "")
        peer = f"{_number(e['peer'], unit)} ({e['peer_name']})" if e.get("peer") is not None else "-"
        met = "ERROR: " + e["error"] if e.get("error") else ("yes" if e["met"] else "NO")
        cells.append(
            (e["benchmark"], e["figure"], _number(e["ours"], unit), peer, str(e["ratio"] or "-"), e["goal"], met)
        )
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    print(f"load average (1 min) at the start: {load:.2f} on {os.cpu_count()} CPUs")
    if args.json:
        print(json.dumps({"load_average": load, "rows": table}))
    return 0 if all(e.get("met") for e in table) else 1


if __name__ == "__main__":
    raise SystemExit(main())
