"""Benchmark: the containerd client's cost per call, on ``h2`` against the hand-written HTTP/2 it replaced.

Both clients run in fresh processes against the harness containerd (started as the
tests start it) and make the same unary call (``Version``) ``--calls`` times after
a warm-up; the figure is the client's CPU time per call (``time.process_time``:
what the calling thread spends, not containerd's time) and the memory the client
module adds when imported. The previous client is read from this repository's
history (``git show OLD:plugins/engine_containerd/src/fogwire_engine_containerd/_grpc.py``,
the last commit before the move to ``h2``), so both are measured in the same run.
A third row runs the same call on ``h2`` with no gRPC layer at all (no
status, deadline, cancellation or pool; header blocks cached as ours are): the
floor of any client on ``h2``, so the table shows how much of the cost is ours.
Goal (issue: client CPU per call within 1.5x of the hand-written client's).

Usage: python bench/grpc_client.py [--calls 2000] [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULE = "plugins/engine_containerd/src/fogwire_engine_containerd/_grpc.py"
OLD_COMMIT = "452b9f1"
"""The last commit with the hand-written HTTP/2 client."""

H2_FLOOR = r"""
'''The same unary call on h2 with nothing of gRPC around it: the floor of any client on h2.'''
import select, socket, struct
import h2.config, h2.connection, h2.events

CONFIG = h2.config.H2Configuration(
    client_side=True, header_encoding=None, validate_outbound_headers=False, normalize_outbound_headers=False,
    validate_inbound_headers=False, normalize_inbound_headers=False,
)


class Channel:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.setblocking(False)
        self.poll = select.poll()
        self.poll.register(self.sock, select.POLLIN)
        self.h2 = h2.connection.H2Connection(CONFIG)
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(2**31 - 1 - 65535)
        encode, blocks = self.h2.encoder.encode, {}

        def encode_once(headers, huffman=True):
            key = tuple(headers)
            if key not in blocks:
                blocks[key] = encode([(n, v, True) for n, v in key], huffman=False)
            return blocks[key]

        self.h2.encoder.encode = encode_once
        self.sock.send(self.h2.data_to_send())

    def unary(self, path, request, metadata, timeout):
        headers = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", path.encode()),
                   (b":authority", b"localhost"), (b"te", b"trailers"), (b"content-type", b"application/grpc"),
                   (b"grpc-timeout", b"%dm" % (timeout * 1000))]
        stream = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream, headers)
        self.h2.send_data(stream, struct.pack(">?I", False, len(request)) + request, end_stream=True)
        self.sock.send(self.h2.data_to_send())
        reply = b""
        while True:
            self.poll.poll(timeout * 1000)
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                continue
            for event in self.h2.receive_data(data):
                if isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
                    reply += event.data
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                    return reply[5:]

    def close(self):
        self.sock.close()
"""

MEASURE = r"""
import importlib.util, json, sys, time
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
before = rss()
spec = importlib.util.spec_from_file_location("grpc_under_test", {path!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
added = rss() - before
channel = module.Channel({socket!r})
method = "/containerd.services.version.v1.Version/Version"
for _ in range(200):
    channel.unary(method, b"", [], 10)
cpu = time.process_time()
for _ in range({calls}):
    channel.unary(method, b"", [], 10)
cpu = time.process_time() - cpu
channel.close()
print(json.dumps({{"cpu_ms_per_call": cpu * 1000 / {calls}, "import_rss_kib": added}}))
"""


def measure_once(path: Path, socket: str, calls: int) -> tuple[float, float]:
    """CPU ms per call and MiB the module adds, in a fresh process."""
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE.format(path=str(path), socket=socket, calls=calls)],
        check=True,
        capture_output=True,
        text=True,
    )
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    return doc["cpu_ms_per_call"], doc["import_rss_kib"] / 1024


def measure(paths: dict[str, Path], socket: str, calls: int, runs: int) -> dict[str, tuple[float, float]]:
    """Median CPU ms per call and median MiB added, per client, over ``runs`` fresh processes each.

    The clients take turns run by run, so a change in the machine's load falls on both.
    """
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in paths}
    for _ in range(runs):
        for name, path in paths.items():
            samples[name].append(measure_once(path, socket, calls))
    return {
        name: (statistics.median(s[0] for s in got), statistics.median(s[1] for s in got))
        for name, got in samples.items()
    }


def main() -> int:
    """Run the benchmark; print a table (and one JSON object as the last line with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from harness import services

    socket = str(services.start_containerd().socket)
    old_source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{OLD_COMMIT}:{MODULE}"], check=True, capture_output=True, text=True
    ).stdout
    with tempfile.TemporaryDirectory(prefix="fwgrpc-") as tmp:
        old_path = Path(tmp) / "old_grpc.py"
        old_path.write_text(old_source)
        floor_path = Path(tmp) / "h2_floor.py"
        floor_path.write_text(H2_FLOOR)
        paths = {"ours": ROOT / MODULE, "old": old_path, "floor": floor_path}
        figures = measure(paths, socket, args.calls, args.runs)
        (ours_cpu, ours_mib), (old_cpu, old_mib) = figures["ours"], figures["old"]
        floor_cpu, floor_mib = figures["floor"]
    ratio = ours_cpu / old_cpu
    result = {
        "benchmark": "grpc_client",
        "calls": args.calls,
        "runs": args.runs,
        "cpu_ms_per_call": ours_cpu,
        "peer_cpu_ms_per_call": old_cpu,
        "ratio": ratio,
        "import_mib": ours_mib,
        "h2_floor_cpu_ms_per_call": floor_cpu,
        "h2_floor_ratio": floor_cpu / old_cpu,
        "peer_import_mib": old_mib,
        "goal_ratio": 1.5,
        "ok": ratio <= 1.5,
    }
    print(f"load average (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'client':36} {'CPU per unary call':>20} {'import adds':>12}")
    print(f"{'ours (h2)':36} {ours_cpu:>17.3f} ms {ours_mib:>8.2f} MiB")
    print(f"{'hand-written HTTP/2 (' + OLD_COMMIT + ')':36} {old_cpu:>17.3f} ms {old_mib:>8.2f} MiB")
    print(f"{'h2 alone, no gRPC layer (the floor)':36} {floor_cpu:>17.3f} ms {floor_mib:>8.2f} MiB")
    print(f"ratio {ratio:.2f} (goal <= 1.5); h2 alone {floor_cpu / old_cpu:.2f}")
    if args.json:
        print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
