"""What the device API costs: the idle daemon's memory with it, and a request's latency.

    python bench/device_api.py [--idle-seconds 30] [--requests 2000] [--json]

(a) The idle daemon's RSS with the ``device-api`` service selected (HTTPS on a port,
    its certificates, the token key, wsproto and PyNaCl loaded) against the same
    daemon without it (the file source, nothing else), on the harness containerd.
    The goal is the agent's budget: under 45 MiB.
(b) The latency of one ``GET /v1/microservices/config`` with a workload's token,
    over one kept-alive TLS connection (the SDKs keep theirs), on fogwire's server
    (h11 on asyncio, the route table, the token check) against aiohttp's web server
    answering the same body from the same certificate: both served from a thread of
    this process, measured by the same blocking ``http.client`` client.

With ``--json`` the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from reconcile import bench_idle


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bench_idle_device_api(idle_seconds: float, work: Path) -> dict[str, Any]:
    (work / "api").mkdir()
    profile = {"services": [{"name": "device-api", "options": {"port": _free_port()}}]}
    ours = bench_idle(idle_seconds, work / "api", profile, ("fogwire_device_api", "nacl", "wsproto", "h11"))
    (work / "file").mkdir()
    peer = bench_idle(idle_seconds, work / "file")
    return {
        "idle_rss_mib": ours["idle_rss_mib"],
        "idle_cpu_percent": ours["idle_cpu_percent"],
        "without_idle_rss_mib": peer["idle_rss_mib"],
        "idle_rss_ratio": round(ours["idle_rss_mib"] / peer["idle_rss_mib"], 3),
    }


class _LoopThread:
    """An event loop in a thread, for a server the blocking client measures."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _latency(port: int, context: ssl.SSLContext, headers: dict[str, str], count: int) -> tuple[float, bytes]:
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    try:
        body = b""
        for _ in range(50):  # warm: the handshake and first requests are not what is measured
            connection.request("GET", "/v1/microservices/config", headers=headers)
            body = connection.getresponse().read()
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            connection.request("GET", "/v1/microservices/config", headers=headers)
            response = connection.getresponse()
            response.read()
            samples.append(time.perf_counter() - started)
            if response.status != 200:
                raise SystemExit(f"the server answered {response.status}")
        return statistics.median(samples) * 1000, body
    finally:
        connection.close()


def bench_latency(requests: int, work: Path) -> dict[str, Any]:
    from aiohttp import web
    from fogwire_device_api import certs
    from fogwire_device_api.identity import TokenIssuer

    from fogwire.api.app import ApiApp, Caller
    from fogwire.api.server import HttpServer, Request

    files = certs.ensure(work / "tls", ["127.0.0.1"])
    issuer = TokenIssuer(work / "key", issuer="fogwire://device-api")
    token = issuer.mint("ms-1")
    config = {"greeting": "hello", "listeners": [{"host": "0.0.0.0", "port": 5672}]}
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(files.server_cert, files.server_key)
    client_tls = ssl.create_default_context(cafile=str(files.ca_cert))
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    async def own_config(request: Request, params: Any, caller: Caller) -> Any:
        return {"config": config}

    async def authenticate(presented: str) -> str:
        return issuer.verify(presented)

    app = ApiApp(lambda: "admin-token")
    app.workload_authenticator = authenticate
    app.add("GET", "/v1/microservices/config", own_config, access="workload")
    loop_thread = _LoopThread()
    try:
        ours_port, peer_port = _free_port(), _free_port()
        server = HttpServer(app, body_limit=app.body_limit)
        loop_thread.run(server.listen_tcp("127.0.0.1", ours_port, server_tls))

        async def peer_config(request: web.Request) -> web.Response:
            issuer.verify(request.headers["Authorization"].removeprefix("Bearer "))
            return web.json_response({"success": True, "data": {"config": config}})

        peer_app = web.Application()
        peer_app.router.add_get("/v1/microservices/config", peer_config)
        runner = web.AppRunner(peer_app, access_log=None)

        async def start_peer() -> None:
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", peer_port, ssl_context=server_tls).start()

        loop_thread.run(start_peer())
        measure: Callable[[int], tuple[float, bytes]] = lambda port: _latency(port, client_tls, headers, requests)  # noqa: E731
        ours_ms, ours_body = measure(ours_port)
        peer_ms, peer_body = measure(peer_port)
        if json.loads(ours_body) != json.loads(peer_body):
            raise SystemExit(f"the two servers answered differently: {ours_body!r} / {peer_body!r}")
        loop_thread.run(server.close())
        loop_thread.run(runner.cleanup())
    finally:
        loop_thread.close()
    return {
        "requests": requests,
        "config_get_ms": round(ours_ms, 3),
        "aiohttp_config_get_ms": round(peer_ms, 3),
        "config_get_ratio": round(ours_ms / peer_ms, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--only", choices=("idle", "latency"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="fogwire-bench-api-") as tmp:
        work = Path(tmp)
        if args.only in (None, "latency"):
            (work / "latency").mkdir()
            result.update(bench_latency(args.requests, work / "latency"))
        if args.only in (None, "idle"):
            (work / "idle").mkdir()
            result.update(bench_idle_device_api(args.idle_seconds, work / "idle"))
    rows = []
    if "config_get_ms" in result:
        rows += [
            ("(b) GET /v1/microservices/config, kept-alive TLS", f"{result['config_get_ms']} ms (median)", ""),
            ("(b) peer: aiohttp web server, same body and cert", f"{result['aiohttp_config_get_ms']} ms", ""),
            ("(b) ratio", f"{result['config_get_ratio']}", ""),
        ]
    if "idle_rss_mib" in result:
        rows += [
            ("(a) idle daemon RSS with the device API", f"{result['idle_rss_mib']} MiB", "< 45 MiB"),
            ("(a) peer: the same daemon without it", f"{result['without_idle_rss_mib']} MiB", ""),
            ("(a) ratio", f"{result['idle_rss_ratio']}", ""),
            ("(a) idle CPU with the device API", f"{result['idle_cpu_percent']} %", ""),
        ]
    print("fogwire device API benchmark")
    width = max(len(r[0]) for r in rows)
    for name, value, goal in rows:
        print(f"  {name.ljust(width)}  {value:24} {('goal ' + goal) if goal else ''}")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
