"""Each harness engine really runs the test image on this machine.

These talk to the raw APIs (docker and podman REST over their unix sockets,
``ctr`` for containerd) so they need no SDK; they check the machine and the
harness, not fogwire's engine plugins.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import images, services


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http_get(url: str, timeout: float = 15.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return bytes(resp.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _auth_header(imgs: images.TestImages) -> str:
    auth = {"username": imgs.username, "password": imgs.password, "serveraddress": imgs.registry}
    return base64.urlsafe_b64encode(json.dumps(auth).encode()).decode()


def _api(sock: Path, method: str, path: str, body: object = None, headers: dict[str, str] | None = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    status, raw = services.unix_request(sock, method, path, data, headers, timeout=120)
    assert status < 300, f"{method} {path}: {status} {raw[:500]!r}"
    return json.loads(raw) if raw.strip().startswith((b"{", b"[")) else raw


@pytest.fixture
def name() -> Iterator[str]:
    yield f"fogwire-harness-test-{uuid.uuid4().hex[:8]}"


def test_dockerd_pulls_with_credentials_and_publishes_a_port(
    harness_dockerd: services.Dockerd, harness_images: images.TestImages, name: str
) -> None:
    sock = harness_dockerd.socket
    pull = f"/images/create?fromImage={harness_images.repository}&tag=1"
    status, body = services.unix_request(sock, "POST", pull, timeout=120)
    # without credentials the pull fails (in the stream or with an error status)
    assert status >= 400 or b'"error"' in body
    status, body = services.unix_request(
        sock, "POST", pull, headers={"X-Registry-Auth": _auth_header(harness_images)}, timeout=120
    )
    assert status == 200 and b'"error"' not in body, body[-500:]
    port = _free_port()
    created = _api(
        sock,
        "POST",
        f"/containers/create?name={name}",
        {
            "Image": harness_images.ref_v1,
            "Cmd": ["httpd", "-f", "-p", "8080", "-h", "/www"],
            "ExposedPorts": {"8080/tcp": {}},
            "HostConfig": {"PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}},
        },
    )
    assert isinstance(created, dict)
    try:
        _api(sock, "POST", f"/containers/{name}/start")
        assert b"fogwire busybox" in _http_get(f"http://127.0.0.1:{port}/index.html")
    finally:
        services.unix_request(sock, "DELETE", f"/containers/{name}?force=true")


def test_podman_runs_busybox_httpd(
    harness_podman: services.Podman, harness_images: images.TestImages, name: str
) -> None:
    sock = harness_podman.socket
    _api(
        sock,
        "POST",
        f"/v4.0.0/libpod/images/pull?reference={harness_images.ref_v2}&tlsVerify=false&quiet=true",
        headers={"X-Registry-Auth": _auth_header(harness_images)},
    )
    port = _free_port()
    _api(
        sock,
        "POST",
        "/v4.0.0/libpod/containers/create",
        {
            "name": name,
            "image": harness_images.ref_v2,
            "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
            "portmappings": [{"host_ip": "127.0.0.1", "host_port": port, "container_port": 8080}],
            # podman 4.3's service forces rlimits above this sandbox's hard limits otherwise
            "r_limits": [
                {"type": "nofile", "soft": 1024, "hard": 1024},
                {"type": "nproc", "soft": 4096, "hard": 4096},
            ],
        },
    )
    try:
        _api(sock, "POST", f"/v4.0.0/libpod/containers/{name}/start")
        assert b"marker 2" in _http_get(f"http://127.0.0.1:{port}/index.html")
    finally:
        # busybox httpd as PID 1 ignores SIGTERM: kill it rather than wait out the stop timeout
        services.unix_request(sock, "POST", f"/v4.0.0/libpod/containers/{name}/kill?signal=KILL")
        services.unix_request(sock, "DELETE", f"/v4.0.0/libpod/containers/{name}?force=true&timeout=0")


def test_containerd_pulls_and_runs(
    harness_containerd: services.Containerd, harness_images: images.TestImages, name: str
) -> None:
    ctr = ["ctr", "--address", harness_containerd.address, "--namespace", name]
    creds = f"{harness_images.username}:{harness_images.password}"
    try:
        pull = subprocess.run(
            [*ctr, "images", "pull", "--user", creds, harness_images.ref_v1],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert pull.returncode == 0, pull.stderr
        run = subprocess.run(
            [*ctr, "run", "--rm", harness_images.ref_v1, name, "cat", "/etc/fogwire-image"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout == "fogwire busybox test image\n"
    finally:
        subprocess.run([*ctr, "images", "rm", harness_images.ref_v1], capture_output=True, timeout=60)
        subprocess.run([*ctr, "content", "prune", "references"], capture_output=True, timeout=60)
        subprocess.run(["ctr", "--address", harness_containerd.address, "namespaces", "rm", name], capture_output=True)
