"""Benchmark: router config changes through the ``skrouter`` sink against the management test peer.

The peer (``plugins/sink_skrouter/tests/mgmt_peer.py``) runs as a fake ``skrouterd``
in its own process, as the real router would.

* **one-entity change**: the clock starts when a config source signals a change
  (an in-process source set off by an event) and stops when the management reply
  for the change has come back (the consumer: notice → ``fetch()`` → validate with
  the router model → ``sink.apply``). Changes alternately add and remove one
  tcpListener (one CREATE or DELETE each). Median and p99 over N changes (goal: p99
  under 50 ms), and the wrapper process's own CPU time per change (what the load of
  the machine does not change much).
* **diff and plan** of a 5,000-entity config against a copy with 10 changes
  (goal: under 50 ms), and, for scale, validating that config from its file form.
* **bulk apply**: 500 new tcpListener/tcpConnector pairs in one apply; entities per second.

Usage: python bench/router_reload.py [--changes 200] [--pairs 500] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fogwire_router.model import router_config_from_payload, router_converter, structure_skrouterd_list

from fogwire.sinks import SinkContext
from fogwire.sources import ChangeNotice, ConfigSnapshot, ConfigSource, SourceContext

CONVERTER = router_converter()
PEER = Path(__file__).resolve().parents[1] / "plugins" / "sink_skrouter" / "tests" / "mgmt_peer.py"


def percentile(samples: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``samples``."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SignalledSource(ConfigSource):
    """A config source whose content and change signal the benchmark controls."""

    name = "bench"

    def __init__(self, payload: list[Any]) -> None:
        super().__init__(SourceContext(Path("."), Path(".")))
        self.payload = payload
        self.signal = asyncio.Event()
        self.signalled_at = 0.0

    def change(self, payload: list[Any]) -> None:
        self.payload = payload
        self.signalled_at = time.perf_counter()
        self.signal.set()

    async def fetch(self) -> ConfigSnapshot:
        return ConfigSnapshot("bench", self.payload, "")

    async def changes(self) -> AsyncIterator[ChangeNotice]:
        while True:
            await self.signal.wait()
            self.signal.clear()
            yield ChangeNotice("bench")


def base_sections(port: int) -> list[Any]:
    return [
        ["router", {"id": "bench", "mode": "edge"}],
        ["listener", {"name": "amqp", "host": "127.0.0.1", "port": str(port), "role": "normal"}],
        [
            "tcpConnector",
            {"name": "svc-connector", "host": "127.0.0.1", "port": "8080", "address": "svc", "siteId": "s"},
        ],
    ]


def big_sections(count: int) -> list[Any]:
    sections: list[Any] = [["router", {"id": "bench", "mode": "interior"}]]
    sections += [["sslProfile", {"name": f"p{i}", "caCertFile": f"/c/{i}/ca.crt"}] for i in range(10)]
    per = (count - 11) // 2
    for i in range(per):
        sections.append(
            [
                "tcpConnector",
                {
                    "name": f"c{i}",
                    "host": "10.0.0.1",
                    "port": str(10000 + i),
                    "address": f"a{i}",
                    "siteId": "s",
                    "processId": f"p{i}",
                },
            ]
        )
        sections.append(
            [
                "tcpListener",
                {
                    "name": f"l{i}",
                    "port": str(20000 + i),
                    "address": f"a{i}",
                    "siteId": "s",
                    "sslProfile": f"p{i % 10}",
                },
            ]
        )
    return sections


async def one_entity_changes(port: int, changes: int) -> dict[str, float]:
    from fogwire_sink_skrouter.sink import SkrouterSink

    sink = SkrouterSink(SinkContext(Path("."), Path("."), options={"url": f"amqp://127.0.0.1:{port}"}))
    sections = base_sections(port)
    source = SignalledSource(sections)
    last = router_config_from_payload(sections, "bench", CONVERTER)
    await sink.apply(last, None)
    samples: list[float] = []
    done = asyncio.Event()

    async def consumer() -> None:
        nonlocal last
        async for _ in source.changes():
            snapshot = await source.fetch()
            desired = router_config_from_payload(snapshot.payload, snapshot.origin, CONVERTER)
            report = await sink.apply(desired, last)
            assert report.ok, report
            samples.append((time.perf_counter() - source.signalled_at) * 1000)
            last = desired
            done.set()

    task = asyncio.create_task(consumer())
    extra = ["tcpListener", {"name": "svc-extra", "port": "30000", "address": "svc"}]
    cpu = time.process_time()
    for i in range(changes):
        done.clear()
        source.change(sections + [extra] if i % 2 == 0 else sections)
        await done.wait()
    cpu_ms = (time.process_time() - cpu) * 1000 / changes
    task.cancel()
    await sink.close()
    return {
        "median_ms": statistics.median(samples),
        "p99_ms": percentile(samples, 0.99),
        "max_ms": max(samples),
        "wrapper_cpu_ms_per_change": cpu_ms,
    }


def plan_5000() -> dict[str, float]:
    from fogwire_sink_skrouter.plan import plan_changes

    converter = CONVERTER
    sections = big_sections(5000)
    started = time.perf_counter()
    base = structure_skrouterd_list(sections, "bench", CONVERTER)
    validate_ms = (time.perf_counter() - started) * 1000
    changed = [list(s) for s in sections]
    for i in range(1, 11):
        kind, attrs = changed[-i]
        changed[-i] = [kind, dict(attrs, port=str(40000 + i))]
    desired = structure_skrouterd_list(changed, "bench", CONVERTER)
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        plan = plan_changes(converter, base, desired)
        timings.append((time.perf_counter() - started) * 1000)
    assert len(plan.ops) == 20, len(plan.ops)
    return {"entities": len(sections), "plan_ms": statistics.median(timings), "validate_ms": validate_ms}


async def bulk(port: int, pairs: int) -> dict[str, float]:
    from fogwire_sink_skrouter.sink import SkrouterSink

    sink = SkrouterSink(SinkContext(Path("."), Path("."), options={"url": f"amqp://127.0.0.1:{port}"}))
    base_list = base_sections(port)
    base = router_config_from_payload(base_list, "bench", CONVERTER)
    await sink.apply(base, None)
    extra: list[Any] = []
    for i in range(pairs):
        extra.append(
            ["tcpConnector", {"name": f"bc{i}", "host": "127.0.0.1", "port": str(50000 + i), "address": f"b{i}"}]
        )
        extra.append(["tcpListener", {"name": f"bl{i}", "port": str(40000 + i), "address": f"b{i}"}])
    desired = router_config_from_payload(base_list + extra, "bench", CONVERTER)
    started = time.perf_counter()
    report = await sink.apply(desired, base)
    elapsed = time.perf_counter() - started
    assert report.ok and len(report.items) == 2 * pairs, report.items[:3]
    await sink.close()
    return {"entities": 2 * pairs, "seconds": elapsed, "entities_per_second": 2 * pairs / elapsed}


def start_peer(directory: Path, sections: list[Any]) -> subprocess.Popen[bytes]:
    conf = directory / "skrouterd.json"
    conf.write_text(json.dumps(sections))
    process = subprocess.Popen(
        [sys.executable, str(PEER), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    port = int(sections[1][1]["port"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.05)
    process.kill()
    raise SystemExit("the management peer did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {"load_average": os.getloadavg()[0], "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as directory:
        for name, run in (
            ("one_entity_change", lambda p: one_entity_changes(p, args.changes)),
            ("bulk_apply", lambda p: bulk(p, args.pairs)),
        ):
            port = free_port()
            peer = start_peer(Path(directory), base_sections(port))
            try:
                results[name] = asyncio.run(run(port))
            finally:
                peer.terminate()
                peer.wait(10)
    results["plan_5000"] = plan_5000()
    if args.json:
        print(json.dumps(results))
        return
    one, plan, bulk_result = results["one_entity_change"], results["plan_5000"], results["bulk_apply"]
    print(f"load average {results['load_average']:.2f} on {results['cpus']} CPUs")
    print(
        f"one-entity change, signal → management reply ({args.changes} changes): median {one['median_ms']:.2f} ms, p99 {one['p99_ms']:.2f} ms, max {one['max_ms']:.2f} ms (goal p99 < 50 ms); "
        f"wrapper CPU {one['wrapper_cpu_ms_per_change']:.2f} ms per change"
    )
    print(
        f"diff+plan of {plan['entities']} entities with 10 changes: {plan['plan_ms']:.1f} ms (goal < 50 ms); validating them: {plan['validate_ms']:.1f} ms"
    )
    print(
        f"bulk apply of {bulk_result['entities']} tcpListener/tcpConnector entities: {bulk_result['seconds']:.2f} s, {bulk_result['entities_per_second']:.0f} entities/s"
    )


if __name__ == "__main__":
    main()
