"""A registry that serves its blobs from "a CDN": the harness registry behind a redirecting front.

Docker Hub, GHCR and Quay answer a blob ``GET`` with a redirect to a storage host
that must not be sent the registry's credentials. :func:`redirecting_registry`
builds that out of the real harness registry:

* the **front** (``front.address``) relays every request (any method, its body,
  its ``Authorization`` as given, so the harness's htpasswd challenge reaches the
  client) to the harness registry and rewrites ``Location`` back to itself; a blob
  ``GET`` is first checked upstream with the client's ``Authorization`` (``HEAD``)
  and, if allowed, answered ``307`` with an absolute URL on the CDN;
* the **CDN** (``cdn.address``, another port: another origin) answers that URL with
  a ``302`` to a *relative* ``Location``, then serves the blob's bytes, fetched from
  the harness registry with the harness's own credentials. A request reaching the
  CDN with an ``Authorization`` header is recorded and refused (``400``).

Both bind to ``host`` (default 127.0.0.1; a test of proxies binds them to an address
that is not loopback, since loopback is never proxied).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import http.server
import re
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field

from harness import services

_BLOB = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})$")
_HOP_HEADERS = frozenset({"connection", "transfer-encoding", "keep-alive", "date", "server"})


@dataclass
class Traffic:
    """What a server saw: request lines and the ``Authorization`` headers that reached it."""

    requests: list[str] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, upstream: services.Registry) -> None:
        super().__init__((host, 0), _Handler)
        self.upstream = upstream
        self.traffic = Traffic()
        self.cdn: _Server | None = None
        """Set on the front: where blob GETs are redirected; ``None`` on the CDN itself."""

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"{self.server_address[0]}:{self.server_address[1]}"

    def upstream_basic(self) -> str:
        pair = f"{self.upstream.username}:{self.upstream.password}".encode()
        return "Basic " + base64.b64encode(pair).decode()


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A test server's HTTP/1.1 handler that logs nothing and replies with a whole body in one call."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        """Log nothing: a test's servers would flood pytest's captured output."""

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _Handler(QuietHandler):
    server: _Server

    def _upstream(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.server.upstream.url, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()

    def _handle(self) -> None:
        traffic = self.server.traffic
        traffic.requests.append(f"{self.command} {self.path}")
        if self.headers.get("Authorization"):
            traffic.authorizations.append(self.headers["Authorization"])
        if self.server.cdn is None:
            self._cdn()
        else:
            self._front(self.server.cdn)

    def _cdn(self) -> None:
        if self.headers.get("Authorization"):
            self._reply(400, b"the CDN was sent the registry's Authorization header")
            return
        parts = urllib.parse.urlsplit(self.path)
        if parts.path.startswith("/cdn/"):
            self._reply(302, headers={"Location": f"/data/{parts.path[len('/cdn/') :]}?{parts.query}"})
            return
        if not parts.path.startswith("/data/") or "sig=fogwire" not in parts.query:
            self._reply(404)
            return
        name, _, digest = parts.path[len("/data/") :].rpartition("/")
        headers = {"Authorization": self.server.upstream_basic()}
        status, _, body = self._upstream("GET", f"/v2/{name}/blobs/{digest}", headers, None)
        self._reply(status, body, {"Content-Type": "application/octet-stream"})

    def _front(self, cdn: _Server) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        blob = _BLOB.match(urllib.parse.urlsplit(self.path).path)
        if blob and self.command == "GET":
            status, _, _ = self._upstream("HEAD", self.path, headers, None)
            if status == 200:
                location = f"http://{cdn.address}/cdn/{blob['name']}/{blob['digest']}?sig=fogwire"
                self._reply(307, headers={"Location": location})
                return
        status, answer, data = self._upstream(self.command, self.path, headers, body)
        self._relay(status, answer, data)

    def _relay(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
        upstream = f"http://{self.server.upstream.url}"
        self.send_response(status)
        length = str(len(data))
        for key, value in headers:
            if key.lower() in _HOP_HEADERS:
                continue
            if key.lower() == "content-length":
                length = value
                continue
            if key.lower() == "location":
                value = value.replace(upstream, f"http://{self.server.address}")
            self.send_header(key, value)
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


@dataclass(frozen=True)
class RedirectingRegistry:
    """The front (the registry clients talk to) and the CDN it redirects blob GETs to."""

    front: _Server
    cdn: _Server


@contextlib.contextmanager
def redirecting_registry(upstream: services.Registry, host: str = "127.0.0.1") -> Iterator[RedirectingRegistry]:
    """Run a front and a CDN on ``host`` (two free ports) before ``upstream``; stop both on exit."""
    cdn = _Server(host, upstream)
    front = _Server(host, upstream)
    front.cdn = cdn
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (cdn, front)]
    for thread in threads:
        thread.start()
    try:
        yield RedirectingRegistry(front, cdn)
    finally:
        for server in (front, cdn):
            server.shutdown()
            server.server_close()
        for thread in threads:
            thread.join(10)
