"""Benchmark: the containerd client's cost per call, on ``h2`` against the hand-written HTTP/2 it replaced.

Both clients run in fresh processes against the harness containerd (started as the
tests start it) and make the same unary calls, each ``--calls`` times after a
warm-up; the figure is the client's CPU time per call (``time.process_time``:
what the calling thread spends, not containerd's time) and the memory the client
module adds when imported. The previous client is read from this repository's history
(``bench/hand_written_client.py``: its final form, before the move to ``h2``), so
both are measured in the same run.

The calls: ``Version`` (no metadata, a 34-byte reply: the smallest call there is,
where fixed per-call costs weigh most), and three calls the engine makes on every
reconcile pass or inspection, with the ``containerd-namespace`` header, in a
namespace of their own where the benchmark creates 30 container records with
specs of the size fogwire writes (about 2.6 KB each; removed afterwards):
``Tasks.List`` (empty reply), ``Containers.Get`` (one record) and
``Containers.List`` (all 30, about 78 KB in five DATA frames).
A third client runs the same calls on ``h2`` with no gRPC layer at all (no
status, deadline, cancellation or pool; header blocks cached and received frames
not formatted, as ours): the floor of a client on ``h2`` driven as ours drives it,
so the table shows how much of the cost is our gRPC layer.
Goal (issue: client CPU per call within 1.5x of the hand-written client's), on
every call.

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
from typing import Any

import hand_written_client

ROOT = hand_written_client.ROOT
MODULE = hand_written_client.MODULE
"""The client module, today's in this tree and the hand-written one in git history."""
OLD_COMMIT = hand_written_client.COMMIT

H2_FLOOR = r"""
'''The same unary call on h2 with nothing of gRPC around it: the floor of a client on h2 driven as ours drives it.'''
import select, socket, struct
import h2.config, h2.events, h2.settings
from fogwire_engine_containerd._h2_connection import new_connection

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
        self.h2 = new_connection(CONFIG)  # trace-free, as ours
        # a stream window for the largest reply measured (no window updates are sent)
        self.h2.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1}
        )
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
        headers += [(name.encode(), value.encode()) for name, value in metadata]
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
figures = {{}}
for name, method, request, metadata, calls in {calls!r}:
    for _ in range(max(20, calls // 10)):
        channel.unary(method, request, metadata, 10)
    cpu = time.process_time()
    for _ in range(calls):
        channel.unary(method, request, metadata, 10)
    figures[name] = (time.process_time() - cpu) * 1000 / calls
channel.close()
print(json.dumps({{"cpu_ms_per_call": figures, "import_rss_kib": added}}))
"""

NAMESPACE = "fogwire-bench-grpc"
RECORDS = 30
SPEC = {
    "ociVersion": "1.1.0",
    "process": {
        "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=bench"],
        "cwd": "/",
        "capabilities": {
            kind: [
                "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
                "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
            ]
            for kind in ("bounding", "effective", "permitted")
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    },
    "root": {"path": "rootfs"},
    "hostname": "bench",
    "mounts": [
        {"destination": target, "type": kind, "source": kind, "options": ["nosuid", "noexec", "nodev"]}
        for target, kind in [
            ("/proc", "proc"), ("/dev", "tmpfs"), ("/dev/pts", "devpts"), ("/dev/shm", "tmpfs"),
            ("/dev/mqueue", "mqueue"), ("/sys", "sysfs"), ("/run", "tmpfs"),
        ]
    ],
    "linux": {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "cgroupsPath": "/fogwire/bench",
        "namespaces": [{"type": kind} for kind in ("pid", "ipc", "uts", "mount", "network")],
        "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    },
}  # fmt: skip
"""A runtime spec of the size fogwire's engine writes for a plain workload."""


def container_records(socket: str, create: bool) -> None:
    """Remove the benchmark namespace's container records; with ``create``, then make ``RECORDS`` of them."""
    from fogwire_engine_containerd._grpc import Channel
    from fogwire_engine_containerd._proto import containers_pb2
    from google.protobuf import any_pb2

    channel = Channel(socket)
    metadata = [("containerd-namespace", NAMESPACE)]
    service = "/containerd.services.containers.v1.Containers/"
    try:
        listed = containers_pb2.ListContainersResponse.FromString(channel.unary(service + "List", b"", metadata, 30))
        for old in listed.containers:
            request = containers_pb2.DeleteContainerRequest(id=old.id)
            channel.unary(service + "Delete", request.SerializeToString(), metadata, 30)
        for index in range(RECORDS if create else 0):
            name = f"bench-{index:02d}"
            container = containers_pb2.Container(
                id=name,
                labels={"io.fogwire.managed": "true", "io.fogwire.name": name, "io.fogwire.image": "busybox:1"},
                image="127.0.0.1:5000/fogwire/busybox:1",
                runtime=containers_pb2.Container.Runtime(name="io.containerd.runc.v2"),
                spec=any_pb2.Any(
                    type_url="types.containerd.io/opencontainers/runtime-spec/1/Spec", value=json.dumps(SPEC).encode()
                ),
            )
            request = containers_pb2.CreateContainerRequest(container=container)
            channel.unary(service + "Create", request.SerializeToString(), metadata, 30)
    finally:
        channel.close()


def calls_measured(calls: int) -> list[tuple[str, str, bytes, list[tuple[str, str]], int]]:
    """(name, method, request, metadata, how many times) of each call the benchmark times."""
    from fogwire_engine_containerd._proto import containers_pb2

    metadata = [("containerd-namespace", NAMESPACE)]
    get = containers_pb2.GetContainerRequest(id="bench-00").SerializeToString()
    return [
        ("Version", "/containerd.services.version.v1.Version/Version", b"", [], calls),
        ("Tasks.List", "/containerd.services.tasks.v1.Tasks/List", b"", metadata, calls),
        ("Containers.Get", "/containerd.services.containers.v1.Containers/Get", get, metadata, calls),
        ("Containers.List (30)", "/containerd.services.containers.v1.Containers/List", b"", metadata, calls // 5),
    ]


def measure_once(path: Path, socket: str, calls: list[Any]) -> tuple[dict[str, float], float]:
    """CPU ms per call of each call, and MiB the module adds, in a fresh process."""
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE.format(path=str(path), socket=socket, calls=calls)],
        check=True,
        capture_output=True,
        text=True,
    )
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    return doc["cpu_ms_per_call"], doc["import_rss_kib"] / 1024


def measure(
    paths: dict[str, Path], socket: str, calls: list[Any], runs: int
) -> dict[str, tuple[dict[str, float], float]]:
    """Per client: the median CPU ms of each call and the median MiB added, over ``runs`` fresh processes.

    The clients take turns run by run, so a change in the machine's load falls on all of them.
    """
    samples: dict[str, list[tuple[dict[str, float], float]]] = {name: [] for name in paths}
    for _ in range(runs):
        for name, path in paths.items():
            samples[name].append(measure_once(path, socket, calls))
    return {
        name: (
            {call[0]: statistics.median(s[0][call[0]] for s in got) for call in calls},
            statistics.median(s[1] for s in got),
        )
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
    calls = calls_measured(args.calls)
    container_records(socket, create=True)
    try:
        with tempfile.TemporaryDirectory(prefix="fwgrpc-") as tmp:
            old_path = hand_written_client.write_module(Path(tmp))
            if old_path is None:
                raise SystemExit(f"no git history of {OLD_COMMIT}: the hand-written client to compare with is missing")
            floor_path = Path(tmp) / "h2_floor.py"
            floor_path.write_text(H2_FLOOR)
            paths = {"ours": ROOT / MODULE, "old": old_path, "floor": floor_path}
            figures = measure(paths, socket, calls, args.runs)
    finally:
        container_records(socket, create=False)
    (ours, ours_mib), (old, old_mib), (floor, floor_mib) = figures["ours"], figures["old"], figures["floor"]
    ratios = {name: ours[name] / old[name] for name in ours}
    worst = max(ratios, key=ratios.__getitem__)
    result = {
        "benchmark": "grpc_client",
        "calls": args.calls,
        "runs": args.runs,
        "cpu_ms_per_call": ours[worst],
        "peer_cpu_ms_per_call": old[worst],
        "ratio": ratios[worst],
        "worst_call": worst,
        "per_call": {
            name: {"ours_ms": ours[name], "peer_ms": old[name], "ratio": ratios[name], "h2_floor_ms": floor[name]}
            for name in ours
        },
        "import_mib": ours_mib,
        "peer_import_mib": old_mib,
        "h2_floor_import_mib": floor_mib,
        "goal_ratio": 1.5,
        "ok": ratios[worst] <= 1.5,
    }
    print(f"load average (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"CPU per unary call, ms: ours (h2) / hand-written HTTP/2 ({OLD_COMMIT}) / h2 alone, no gRPC layer")
    print(f"{'call':22} {'ours':>8} {'hand-written':>13} {'ratio':>6} {'h2 alone':>9} {'ratio':>6}")
    for name in ours:
        print(
            f"{name:22} {ours[name]:>8.3f} {old[name]:>13.3f} {ratios[name]:>6.2f}"
            f" {floor[name]:>9.3f} {floor[name] / old[name]:>6.2f}"
        )
    print(f"import adds: ours {ours_mib:.2f} MiB, hand-written {old_mib:.2f} MiB, h2 alone {floor_mib:.2f} MiB")
    print(f"worst ratio {ratios[worst]:.2f} ({worst}; goal <= 1.5 on every call)")
    if args.json:
        print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
