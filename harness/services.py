"""Real services for fogwire's tests and benchmarks: registries, dockerd, podman, containerd.

Every ``start_*`` function is idempotent: if the service's pidfile names a live
process and its socket or port answers, it is reused; otherwise it is started,
detached from the caller (its own session), and waited for. State, logs,
sockets and pidfiles live under ``$FOGWIRE_HARNESS_DIR`` (default
``/tmp/fogwire-harness``). A file lock per service makes concurrent starts from
several pytest processes safe. Nothing here needs a third-party package except
:func:`start_registry`, which hashes its htpasswd with ``bcrypt`` once, and
:func:`start_tls_registry`, which makes its CA with ``cryptography``.

CLI::

    python -m harness.services start [NAME...]   # all when no NAME
    python -m harness.services stop [NAME...]
    python -m harness.services env               # shell export lines
    python -m harness.services images            # build and push the test images
    python -m harness.services status

Quirks of the machine this was built on (Debian 12, cgroup v1, PID 1 is not
an init): orphans are never reaped, so a dead daemon stays a zombie and
"alive" means "in /proc and not in state Z"; podman needs runc (crun fails on
the hybrid cgroups); podman's service does not apply ``default_ulimits``.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import runtimes

HARNESS_DIR_ENV = "FOGWIRE_HARNESS_DIR"
FORBID_ENV = "FOGWIRE_FORBID_SERVICES"
"""Set to ``1`` by the unit layer: any attempt to start or reuse a service fails the test."""
DEFAULT_HARNESS_DIR = "/tmp/fogwire-harness"

REGISTRY_HOST = "127.0.0.1"
REGISTRY_PORT = 5001
REGISTRY_ADDR = f"{REGISTRY_HOST}:{REGISTRY_PORT}"
REGISTRY_USER = "fogwire"
REGISTRY_PASSWORD = "fogwire-test-secret"
#: bcrypt cost of the htpasswd entry: the registry pays it on every request
#: (cost 12 is about 0.25 s a request), so keep it low.
BCRYPT_COST = 4

#: The TLS registry's address: put on ``lo`` by the harness, reachable from this host only.
#: Not in 127.0.0.0/8 on purpose: dockerd takes every loopback registry as insecure (it
#: skips TLS verification there), so a test could not tell a trusted CA from none.
#: 198.18.0.0/15 is the benchmarking range (RFC 2544): never routed anywhere real.
TLS_REGISTRY_HOST = "198.18.77.1"
TLS_REGISTRY_PORT = 5443
TLS_REGISTRY_ADDR = f"{TLS_REGISTRY_HOST}:{TLS_REGISTRY_PORT}"
#: Days the TLS registry's CA and certificate are valid; they are remade a day before they expire.
TLS_VALID_DAYS = 30

#: Every service, in start order.
SERVICES = ("registry", "registry-tls", "dockerd", "podman", "containerd")

START_TIMEOUT = 60.0
#: A service's log is moved to ``NAME.log.1`` when it is started and has grown past this.
LOG_ROTATE_BYTES = 20 * 1024 * 1024
STOP_TIMEOUT = 20.0


class HarnessError(RuntimeError):
    """A harness service could not be started or stopped."""


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Registry:
    """The test registry: htpasswd auth, plain http on loopback, deletes enabled."""

    url: str
    """``host:port`` as used in image references: ``127.0.0.1:5001``."""
    username: str
    password: str
    config: Path
    data_dir: Path
    pid: int

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:5001``, for talking to the registry API directly."""
        return f"http://{self.url}"


@dataclass(frozen=True)
class TlsRegistry:
    """The TLS test registry: htpasswd auth (the same user as :class:`Registry`), a CA of its own."""

    url: str
    """``host:port`` as used in image references: ``198.18.77.1:5443``."""
    username: str
    password: str
    ca_cert: Path
    """The CA that signed the registry's certificate (PEM)."""
    cert_dir: Path
    """A directory holding only ``ca.crt``: skopeo's ``--dest-cert-dir``."""
    config: Path
    data_dir: Path
    pid: int

    @property
    def ca_pem(self) -> str:
        """The CA certificate's PEM text (a Registry document's ``certificate``)."""
        return self.ca_cert.read_text()


@dataclass(frozen=True)
class Dockerd:
    """The harness dockerd (the only one on the machine)."""

    host: str
    """``unix:///…/docker.sock``: a ``DOCKER_HOST`` / ``docker.DockerClient(base_url=…)``."""
    socket: Path
    data_root: Path
    exec_root: Path
    pid: int


@dataclass(frozen=True)
class Podman:
    """``podman system service`` (libpod and compat API) on its own storage."""

    url: str
    """``unix:///…/podman.sock``: ``podman.PodmanClient(base_url=…)``."""
    socket: Path
    root: Path
    runroot: Path
    tmpdir: Path
    pid: int

    @property
    def cli_args(self) -> tuple[str, ...]:
        """Global flags that make the ``podman`` CLI see the service's storage."""
        return podman_cli_args(self.root, self.runroot, self.tmpdir)


@dataclass(frozen=True)
class Containerd:
    """An external containerd with its own root, state and sockets (no CRI)."""

    address: str
    """The gRPC socket path (``ctr -a``, ``CONTAINERD_ADDRESS``)."""
    socket: Path
    ttrpc_address: str
    debug_address: str
    root: Path
    state: Path
    config: Path
    pid: int

    @property
    def url(self) -> str:
        """``unix:///…/containerd.sock`` for ``grpc.insecure_channel``."""
        return f"unix://{self.address}"


# --------------------------------------------------------------------------- paths


def harness_dir() -> Path:
    """``$FOGWIRE_HARNESS_DIR`` or ``/tmp/fogwire-harness``, created if missing."""
    d = Path(os.environ.get(HARNESS_DIR_ENV) or DEFAULT_HARNESS_DIR)
    d.mkdir(parents=True, exist_ok=True)
    return d


def _run_dir() -> Path:
    d = harness_dir() / "run"
    d.mkdir(parents=True, exist_ok=True)
    return d


def pidfile(name: str) -> Path:
    """The harness's pidfile for service ``name``."""
    return _run_dir() / f"{name}.pid"


def logfile(name: str) -> Path:
    """Where service ``name`` writes its stdout and stderr."""
    return _run_dir() / f"{name}.log"


def podman_cli_args(root: Path, runroot: Path, tmpdir: Path) -> tuple[str, ...]:
    return (
        "--root",
        str(root),
        "--runroot",
        str(runroot),
        "--tmpdir",
        str(tmpdir),
        "--runtime",
        "runc",
        "--cgroup-manager",
        "cgroupfs",
        "--events-backend",
        "file",
    )


# --------------------------------------------------------------------------- process helpers


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie (PID 1 here does not reap orphans)."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def read_pid(name: str) -> int:
    """The pid in service ``name``'s pidfile, or 0."""
    try:
        return int(pidfile(name).read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def _service_pid(name: str, exe: str) -> int:
    """The live pid of service ``name`` if its pidfile names a process running ``exe``."""
    pid = read_pid(name)
    if pid and pid_alive(pid):
        argv = _cmdline(pid)
        if argv and os.path.basename(argv[0]) == exe:
            return pid
    return 0


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    with open(_run_dir() / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _spawn(name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Start ``argv`` detached (own session, reparented away from us); return its pid.

    ``setsid --fork`` leaves no child of ours behind, so a pytest process that
    starts a daemon has no un-waited ``Popen`` (a ResourceWarning under ``-W error``).
    """
    pf = pidfile(name)
    pf.unlink(missing_ok=True)
    log = logfile(name)
    with contextlib.suppress(OSError):
        if log.stat().st_size > LOG_ROTATE_BYTES:
            log.replace(log.with_suffix(".log.1"))
    with open(log, "ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {shlex.join(argv)}\n".encode())
        out.flush()
        subprocess.run(
            ["setsid", "--fork", "sh", "-c", 'echo $$ > "$0"; exec "$@"', str(pf), *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=env,
            # Daemons write files into their working directory (podman's conmon leaves an
            # `oom` file there after an OOM kill): never the directory the caller runs in.
            cwd=log.parent,
            check=True,
            timeout=30,
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            text = pf.read_text()
            if text.endswith("\n"):
                return int(text)
        time.sleep(0.01)
    raise HarnessError(f"{name}: no pid written to {pf}")


def _log_tail(name: str, lines: int = 30) -> str:
    try:
        return "\n".join(logfile(name).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_ready(name: str, pid: int, ready: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if not pid_alive(pid):
            raise HarnessError(f"{name} (pid {pid}) exited while starting; log {logfile(name)}:\n{_log_tail(name)}")
        time.sleep(0.05)
    raise HarnessError(f"{name} (pid {pid}) not ready after {timeout:.0f} s; log {logfile(name)}:\n{_log_tail(name)}")


def _ensure(
    name: str,
    exe: str,
    argv: Sequence[str],
    ready: Callable[[], bool],
    *,
    stale: Sequence[Path] = (),
    env: dict[str, str] | None = None,
    timeout: float = START_TIMEOUT,
) -> int:
    """Reuse service ``name`` if alive and ready, else (re)start it. Returns its pid."""
    if os.environ.get(FORBID_ENV) == "1":
        raise HarnessError(
            f"{name}: {FORBID_ENV}=1 (the unit layer, `make test-fast`): a test that needs {name} "
            "is not a unit test; it is marked `services` by using a harness fixture, or mark it explicitly"
        )
    with _locked(name):
        pid = _service_pid(name, exe)
        if pid:
            try:
                _wait_ready(name, pid, ready, 10)
                return pid
            except HarnessError:
                _terminate(name, pid)
        elif ready():
            raise HarnessError(
                f"{name}: something not started by this harness already answers at its address; "
                f"stop it or set {HARNESS_DIR_ENV} (pidfile {pidfile(name)})"
            )
        for path in stale:
            path.unlink(missing_ok=True)  # sockets and pidfiles of a dead run
        if shutil.which(exe) is None:
            raise HarnessError(f"{name}: {exe} is not installed; run `make setup`")
        pid = _spawn(name, argv, env)
        try:
            _wait_ready(name, pid, ready, timeout)
        except HarnessError:
            _terminate(name, pid)
            raise
        return pid


def _terminate(name: str, pid: int, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM ``pid``, then SIGKILL after ``timeout``; wait until it is gone."""
    if not pid_alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.05)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.05)
    if pid_alive(pid):
        raise HarnessError(f"{name} (pid {pid}) survived SIGKILL")


def _unmount_under(path: Path) -> list[str]:
    """Unmount every mount point at or below ``path``, deepest first; return failures."""
    prefix = str(path.resolve())
    points: list[str] = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == prefix or mp.startswith(prefix + "/"):
                points.append(mp)
    failed: list[str] = []
    for mp in sorted(set(points), key=len, reverse=True):
        r = subprocess.run(["umount", mp], capture_output=True, timeout=30)
        if r.returncode != 0:
            r = subprocess.run(["umount", "-l", mp], capture_output=True, timeout=30)
            if r.returncode != 0:
                failed.append(mp)
    return failed


# --------------------------------------------------------------------------- probes


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self._path)
        except OSError:
            s.close()
            raise
        self.sock = s


def unix_request(
    sock: str | os.PathLike[str],
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, bytes]:
    """One HTTP request over a unix socket (docker/podman API); ``(status, body)``."""
    conn = _UnixHTTPConnection(os.fspath(sock), timeout)
    try:
        hdrs = dict(headers or {})
        if body is not None:
            hdrs.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _ping_unix(sock: Path) -> bool:
    try:
        status, body = unix_request(sock, "GET", "/_ping", timeout=2)
    except OSError:
        return False
    return status == 200 and body.strip() == b"OK"


def _socket_accepts(sock: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect(str(sock))
    except OSError:
        return False
    finally:
        s.close()
    return True


def _v2_answers(conn: http.client.HTTPConnection) -> bool:
    """Whether a registry answers ``GET /v2/`` on ``conn`` (200, or 401 asking for credentials); closes it."""
    try:
        conn.request("GET", "/v2/")
        resp = conn.getresponse()
        resp.read()
        return resp.status in (200, 401)
    except OSError:
        return False
    finally:
        conn.close()


def _registry_answers() -> bool:
    return _v2_answers(http.client.HTTPConnection(REGISTRY_HOST, REGISTRY_PORT, timeout=2))


# --------------------------------------------------------------------------- services


def _registry_paths() -> tuple[Path, Path, Path]:
    d = harness_dir() / "registry"
    return d, d / "config.yml", d / "data"


def _ensure_htpasswd(htpasswd: Path) -> None:
    """Write ``htpasswd`` with the test user unless it exists."""
    if not htpasswd.exists():
        import bcrypt  # dev dependency; only needed the first time

        hashed = bcrypt.hashpw(REGISTRY_PASSWORD.encode(), bcrypt.gensalt(rounds=BCRYPT_COST)).decode()
        tmp = htpasswd.with_suffix(".tmp")
        tmp.write_text(f"{REGISTRY_USER}:{hashed}\n")
        tmp.replace(htpasswd)


def _registry_config(data: Path, addr: str, htpasswd: Path, tls: tuple[Path, Path] | None = None) -> str:
    """A ``docker-registry`` config: storage under ``data``, htpasswd auth, HTTPS with ``tls`` (cert, key) if given."""
    tls_text = (
        f"""
  tls:
    certificate: {tls[0]}
    key: {tls[1]}"""
        if tls is not None
        else ""
    )
    return f"""\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {data}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {addr}
  secret: fogwire-harness-not-a-secret{tls_text}
auth:
  htpasswd:
    realm: fogwire-test
    path: {htpasswd}
"""


def start_registry() -> Registry:
    """Debian's ``docker-registry`` on 127.0.0.1:5001 with htpasswd auth (bcrypt, low cost)."""
    d, config, data = _registry_paths()
    data.mkdir(parents=True, exist_ok=True)
    htpasswd = d / "htpasswd"
    _ensure_htpasswd(htpasswd)
    config_text = _registry_config(data, REGISTRY_ADDR, htpasswd)
    if not config.exists() or config.read_text() != config_text:
        config.write_text(config_text)
    pid = _ensure("registry", "docker-registry", ["docker-registry", "serve", str(config)], _registry_answers)
    return Registry(REGISTRY_ADDR, REGISTRY_USER, REGISTRY_PASSWORD, config, data, pid)


def ensure_lo_address(address: str) -> None:
    """Put ``address``/32 on ``lo`` unless it is there (needs root; the address stays until reboot)."""
    shown = subprocess.run(["ip", "-o", "addr", "show", "dev", "lo"], capture_output=True, text=True, check=True)
    if f" {address}/" in shown.stdout:
        return
    added = subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], capture_output=True, text=True)
    if added.returncode != 0 and "File exists" not in added.stderr:
        raise HarnessError(f"cannot put {address} on lo (root is needed): {added.stderr.strip()}")


def _tls_registry_paths() -> dict[str, Path]:
    d = harness_dir() / "registry-tls"
    return {"dir": d, "config": d / "config.yml", "data": d / "data", "pki": d / "pki", "ca": d / "ca"}


def _tls_cert_fresh(cert: Path) -> bool:
    """True if ``cert`` exists and stays valid for at least another day."""
    import datetime

    from cryptography import x509

    try:
        loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    except (OSError, ValueError):
        return False
    return loaded.not_valid_after_utc > datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)


def _tls_registry_answers(ca_cert: Path) -> bool:
    import ssl

    try:
        context = ssl.create_default_context(cafile=str(ca_cert))
    except (OSError, ssl.SSLError):
        return False
    return _v2_answers(http.client.HTTPSConnection(TLS_REGISTRY_HOST, TLS_REGISTRY_PORT, timeout=2, context=context))


def start_tls_registry() -> TlsRegistry:
    """A second ``docker-registry`` on 198.18.77.1:5443 (on ``lo``), HTTPS with a certificate of a CA made here.

    The CA and certificate are remade when they are about to expire; a registry
    still serving the old certificate then fails its readiness check and is restarted.
    """
    from fogwire.testing.pki import make_pki

    p = _tls_registry_paths()
    ensure_lo_address(TLS_REGISTRY_HOST)
    with _locked("registry-tls-setup"):
        p["data"].mkdir(parents=True, exist_ok=True)
        htpasswd = p["dir"] / "htpasswd"
        _ensure_htpasswd(htpasswd)
        pki = p["pki"]
        if not _tls_cert_fresh(pki / "tls.crt"):
            made = make_pki(pki, names=("localhost",), ips=(TLS_REGISTRY_HOST,), valid_days=TLS_VALID_DAYS)
            p["ca"].mkdir(exist_ok=True)
            shutil.copyfile(made.ca_cert, p["ca"] / "ca.crt")
        config_text = _registry_config(p["data"], TLS_REGISTRY_ADDR, htpasswd, tls=(pki / "tls.crt", pki / "tls.key"))
        if not p["config"].exists() or p["config"].read_text() != config_text:
            p["config"].write_text(config_text)
    ca_cert = p["ca"] / "ca.crt"
    argv = ["docker-registry", "serve", str(p["config"])]
    pid = _ensure("registry-tls", "docker-registry", argv, lambda: _tls_registry_answers(ca_cert))
    return TlsRegistry(
        TLS_REGISTRY_ADDR, REGISTRY_USER, REGISTRY_PASSWORD, ca_cert, p["ca"], p["config"], p["data"], pid
    )


def _dockerd_paths() -> tuple[Path, Path, Path, Path]:
    h = harness_dir()
    d = h / "docker"
    return d, h / "docker.sock", d / "data", d / "exec"


def start_dockerd() -> Dockerd:
    """Debian's dockerd with its own data root, exec root, pidfile and socket."""
    d, sock, data_root, exec_root = _dockerd_paths()
    for p in (data_root, exec_root):
        p.mkdir(parents=True, exist_ok=True)
    daemon_json = d / "daemon.json"  # not /etc/docker/daemon.json
    wanted = json.dumps({"runtimes": {runtimes.NAME: {"path": str(runtimes.ensure_wrapper())}}}, indent=2) + "\n"
    changed = not daemon_json.exists() or daemon_json.read_text() != wanted
    if changed:
        daemon_json.write_text(wanted)
    argv = [
        "dockerd",
        "--config-file",
        str(daemon_json),
        "--data-root",
        str(data_root),
        "--exec-root",
        str(exec_root),
        "--pidfile",
        str(d / "dockerd.pid"),
        "--host",
        f"unix://{sock}",
        "--shutdown-timeout",
        "5",
    ]
    pid = _ensure("dockerd", "dockerd", argv, lambda: _ping_unix(sock), stale=[sock, d / "dockerd.pid"])
    if changed:  # a running dockerd reloads its runtimes on SIGHUP
        os.kill(pid, signal.SIGHUP)
        _wait_ready("dockerd", pid, lambda: runtimes.NAME in _docker_runtimes(sock), timeout=30)
    return Dockerd(f"unix://{sock}", sock, data_root, exec_root, pid)


def _docker_runtimes(sock: Path) -> set[str]:
    try:
        status, body = unix_request(sock, "GET", "/info", timeout=5)
    except OSError:
        return set()
    return set((json.loads(body).get("Runtimes") or {}).keys()) if status == 200 else set()


def _podman_paths() -> tuple[Path, Path, Path, Path, Path]:
    h = harness_dir()
    d = h / "podman"
    return d, h / "podman.sock", d / "root", d / "runroot", d / "tmp"


def start_podman() -> Podman:
    """``podman system service --time=0`` on ``$HARNESS/podman.sock`` with its own storage."""
    _, sock, root, runroot, tmpdir = _podman_paths()
    for p in (root, runroot, tmpdir):
        p.mkdir(parents=True, exist_ok=True)
    argv = ["podman", *podman_cli_args(root, runroot, tmpdir), "system", "service", "--time=0", f"unix://{sock}"]
    runtimes.ensure_wrapper()  # first: podman leaves out a runtime whose binary is missing when it starts
    read_config = _run_dir() / "podman.config"  # what the running service read: its containers.conf files
    with _locked("podman-config"):
        config = podman_config()
        pid = _service_pid("podman", "podman")
        stale_config = not read_config.is_file() or read_config.read_text() != config
        if pid and stale_config and os.environ.get(FORBID_ENV) != "1":
            _terminate("podman", pid)  # podman reads its runtimes only when it starts
        pid = _ensure("podman", "podman", argv, lambda: _ping_unix(sock), stale=[sock])
        if stale_config:
            read_config.write_text(config)
    return Podman(f"unix://{sock}", sock, root, runroot, tmpdir, pid)


def podman_config() -> str:
    """The containers.conf files podman reads (their paths and text), as one text to compare."""
    etc = Path("/etc/containers")
    paths = [Path("/usr/share/containers/containers.conf"), etc / "containers.conf"]
    paths += sorted((etc / "containers.conf.d").glob("*.conf"))
    return "".join(f"--- {p}\n{p.read_text()}" for p in paths if p.is_file())


def _containerd_paths() -> dict[str, Path]:
    d = harness_dir() / "containerd"
    return {
        "dir": d,
        "config": d / "config.toml",
        "root": d / "root",
        "state": d / "state",
        "socket": d / "containerd.sock",
        "ttrpc": d / "containerd.sock.ttrpc",
        "debug": d / "debug.sock",
        "opt": d / "opt",
    }


def engine_url(kind: str) -> str:
    """The URL an engine plugin (``docker``, ``podman`` or ``containerd``) uses for the harness engine of ``kind``."""
    if kind == "docker":
        return start_dockerd().host
    if kind == "containerd":
        return start_containerd().url
    if kind == "podman":
        return start_podman().url
    raise ValueError(f"the harness runs no engine {kind!r}")


def start_containerd() -> Containerd:
    """An external containerd with a config.toml of its own and no CRI plugin."""
    p = _containerd_paths()
    for k in ("root", "state", "opt"):
        p[k].mkdir(parents=True, exist_ok=True)
    config_text = f"""\
version = 2
root = "{p["root"]}"
state = "{p["state"]}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{p["socket"]}"

[ttrpc]
  address = "{p["ttrpc"]}"

[debug]
  address = "{p["debug"]}"
  level = "warn"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{p["opt"]}"
"""
    if not p["config"].exists() or p["config"].read_text() != config_text:
        p["config"].write_text(config_text)
    argv = ["containerd", "--config", str(p["config"])]
    pid = _ensure(
        "containerd",
        "containerd",
        argv,
        lambda: _socket_accepts(p["socket"]),
        stale=[p["socket"], p["ttrpc"], p["debug"]],
    )
    return Containerd(
        str(p["socket"]),
        p["socket"],
        str(p["ttrpc"]),
        str(p["debug"]),
        p["root"],
        p["state"],
        p["config"],
        pid,
    )


_STARTERS: dict[str, Callable[[], object]] = {
    "registry": start_registry,
    "registry-tls": start_tls_registry,
    "dockerd": start_dockerd,
    "podman": start_podman,
    "containerd": start_containerd,
}
_EXES = {
    "registry": "docker-registry",
    "registry-tls": "docker-registry",
    "dockerd": "dockerd",
    "podman": "podman",
    "containerd": "containerd",
}


def start(names: Sequence[str] = ()) -> dict[str, object]:
    """Start the named services (all when empty); return name → its dataclass."""
    return {n: _STARTERS[n]() for n in _check_names(names)}


def _check_names(names: Sequence[str]) -> list[str]:
    bad = [n for n in names if n not in _STARTERS]
    if bad:
        raise HarnessError(f"unknown service(s) {', '.join(bad)}; known: {', '.join(SERVICES)}")
    return list(names) or list(SERVICES)


def is_running(name: str) -> bool:
    """True if the harness's service ``name`` is alive (not checking readiness)."""
    return bool(_service_pid(name, _EXES[name]))


def _ctr(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ctr", "--address", address, *args], capture_output=True, text=True, timeout=30)


def _before_stop_containerd() -> None:
    """Kill every task of the harness containerd so its shims exit and unmount."""
    address = str(_containerd_paths()["socket"])
    namespaces = _ctr(address, "namespaces", "list", "--quiet")
    for ns in namespaces.stdout.split():
        tasks = _ctr(address, "--namespace", ns, "tasks", "list", "--quiet")
        for task in tasks.stdout.split():
            _ctr(address, "--namespace", ns, "tasks", "kill", "--signal", "SIGKILL", task)
        for task in tasks.stdout.split():
            for _ in range(50):
                if _ctr(address, "--namespace", ns, "tasks", "delete", "--force", task).returncode == 0:
                    break
                time.sleep(0.1)


def _orphan_shims(address: str) -> list[int]:
    """containerd-shim processes serving ``address`` (left over after containerd died)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            argv = _cmdline(int(entry))
            if argv and os.path.basename(argv[0]).startswith("containerd-shim") and address in argv:
                pids.append(int(entry))
    return pids


def stop_service(name: str) -> None:
    """Stop service ``name`` (SIGTERM, then SIGKILL) and unmount what it left."""
    with _locked(name):
        pid = _service_pid(name, _EXES[name])
        if name == "containerd" and pid:
            _before_stop_containerd()
        if name == "podman" and pid:
            _, _, root, runroot, tmpdir = _podman_paths()
            base = ["podman", *podman_cli_args(root, runroot, tmpdir)]
            subprocess.run([*base, "stop", "--all", "--time", "2"], capture_output=True, timeout=120)
        if pid:
            _terminate(name, pid)
        pidfile(name).unlink(missing_ok=True)
        failed: list[str] = []
        if name == "containerd":
            address = str(_containerd_paths()["socket"])
            for shim in _orphan_shims(address):
                _terminate("containerd-shim", shim, timeout=5)
            failed = _unmount_under(_containerd_paths()["dir"])
        elif name == "dockerd":
            d, _, _, _ = _dockerd_paths()
            failed = _unmount_under(d)
        elif name == "podman":
            d, *_ = _podman_paths()
            failed = _unmount_under(d)
        if failed:
            print(f"harness: {name}: could not unmount {', '.join(failed)}", file=sys.stderr)


def stop(names: Sequence[str] = ()) -> None:
    """Stop the named services (all when empty), in reverse start order."""
    for n in reversed(_check_names(names)):
        stop_service(n)


def env_lines() -> list[str]:
    """Shell ``export`` lines with every service's address (whether running or not)."""
    h = harness_dir()
    _, dsock, _, _ = _dockerd_paths()
    _, psock, *_ = _podman_paths()
    csock = _containerd_paths()["socket"]
    repo = f"{REGISTRY_ADDR}/fogwire/busybox"
    values = {
        HARNESS_DIR_ENV: str(h),
        "FOGWIRE_TEST_REGISTRY": REGISTRY_ADDR,
        "FOGWIRE_TEST_REGISTRY_USER": REGISTRY_USER,
        "FOGWIRE_TEST_REGISTRY_PASSWORD": REGISTRY_PASSWORD,
        "FOGWIRE_TEST_IMAGE_V1": f"{repo}:1",
        "FOGWIRE_TEST_IMAGE_V2": f"{repo}:2",
        "FOGWIRE_TEST_DOCKER_HOST": f"unix://{dsock}",
        "DOCKER_HOST": f"unix://{dsock}",
        "FOGWIRE_TEST_PODMAN_URL": f"unix://{psock}",
        "FOGWIRE_TEST_CONTAINERD_ADDRESS": str(csock),
        "CONTAINERD_ADDRESS": str(csock),
    }
    return [f"export {k}={shlex.quote(v)}" for k, v in values.items()]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harness.services start|stop|env|images|status [NAME...]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    cmd, names = args[0], args[1:]
    try:
        if cmd == "start":
            for name, value in start(names).items():
                print(f"{name}: pid {getattr(value, 'pid', '?')}", file=sys.stderr)
        elif cmd == "stop":
            stop(names)
        elif cmd == "env":
            print("\n".join(env_lines()))
        elif cmd == "status":
            for n in _check_names(names):
                print(f"{n}: {'running pid ' + str(read_pid(n)) if is_running(n) else 'stopped'}")
        elif cmd == "images":
            from harness.images import ensure_test_images, ensure_tls_test_image

            imgs = ensure_test_images(start_registry())
            for k, v in vars(imgs).items():
                if k != "password":
                    print(f"{k}: {v}")
            tls = ensure_tls_test_image(start_tls_registry(), imgs)
            print(f"tls_reference: {tls.reference}")
        else:
            print(f"unknown command {cmd!r}; use start, stop, env, status or images", file=sys.stderr)
            return 2
    except HarnessError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
