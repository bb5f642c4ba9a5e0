"""``fogwire router`` as real processes (cross-package: core's supervisor, the skrouter sink, the pot source): the supervisor runs a fake ``skrouterd`` (the management test peer).

The fake is ``plugins/sink_skrouter/tests/mgmt_peer.py`` run as ``skrouterd -c FILE``:
it loads the file like the router, serves ``$management`` on the file's listener and
can be told to crash, so restarts, backoff, signals and convergence are all real.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fogwire_sink_skrouter.management as management
import pytest
import yaml

PEER = Path(__file__).resolve().parents[1] / "plugins" / "sink_skrouter" / "tests" / "mgmt_peer.py"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except Exception:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


class Wrapper:
    """``python -m fogwire_router.command`` with a fake skrouterd, its log in a file."""

    def __init__(self, tmp: Path, args: list[str], env: dict[str, str]) -> None:
        self.tmp = tmp
        self.starts = tmp / "starts"
        fake = tmp / "skrouterd"
        fake.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{PEER}" "$@"\n')
        fake.chmod(0o755)
        self.log_path = tmp / "wrapper.log"
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("MGMT_PEER_", "SKUPPER_", "QDROUTERD_"))}
        environ.update(
            SKROUTERD_BIN=str(fake),
            SSL_PROFILE_PATH=str(tmp / "certs"),
            MGMT_PEER_STARTS=str(self.starts),
            QDROUTERD_HOME=str(tmp / "home"),
        )
        environ.update(env)
        self.log_file = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fogwire_router.command", "--poll-interval", "0.1", *args],
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            env=environ,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def start_times(self) -> list[float]:
        if not self.starts.exists():
            return []
        return [float(line.split()[1]) for line in self.starts.read_text().splitlines() if line.strip()]

    def router_pids(self) -> list[int]:
        return [int(line.split()[0]) for line in self.starts.read_text().splitlines() if line.strip()]

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        finally:
            self.log_file.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        for pid in self.router_pids() if self.starts.exists() else []:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log_file.close()


class Router:
    """A management client to whatever router process listens on ``port`` now."""

    def __init__(self, port: int) -> None:
        self.client = management.ManagementClient(f"amqp://127.0.0.1:{port}", timeout=2)

    def names(self, type_name: str) -> set[str]:
        return {row["name"] for row in self.client.query(type_name)}

    def entity(self, type_name: str, name: str) -> dict[str, Any]:
        return next(row for row in self.client.query(type_name) if row["name"] == name)

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def wrappers() -> Iterator[list[Wrapper]]:
    made: list[Wrapper] = []
    yield made
    for wrapper in made:
        wrapper.kill()


def controller_config(port: int, mode: str = "edge", tcp: dict[str, Any] | None = None) -> dict[str, Any]:
    listeners = tcp if tcp is not None else {"a-listener": {"port": "9100", "address": "a", "siteId": "s1"}}
    return {
        "metadata": {"id": "r1", "mode": mode, "helloMaxAgeSeconds": "3"},
        "listeners": {"amqp": {"host": "127.0.0.1", "port": port, "role": "normal"}},
        "bridges": {
            "tcpListeners": listeners,
            "tcpConnectors": {"a-connector": {"host": "127.0.0.1", "port": "8100", "address": "a", "siteId": "s1"}},
        },
    }


def test_pot_mode_writes_the_file_applies_live_rejects_invalid_and_restarts_only_when_needed(
    tmp_path: Path, wrappers: list[Wrapper]
) -> None:
    port = free_port()
    source = tmp_path / "config.yaml"
    source.write_text(yaml.safe_dump(controller_config(port)))
    conf = tmp_path / "skrouterd.json"
    wrapper = Wrapper(
        tmp_path,
        ["--source", "file", "--source-option", f"path={source}"],
        {"SKUPPER_PLATFORM": "pot", "QDROUTERD_CONF": str(conf)},
    )
    wrappers.append(wrapper)
    router = Router(port)
    try:
        wait_for(lambda: router.names("tcpListener") == {"a-listener"}, "the router from the written file")
        written = json.loads(conf.read_text())
        assert [t for t, _ in written] == ["router", "listener", "tcpListener", "tcpConnector"]
        assert written[2][1] == {"name": "a-listener", "address": "a", "port": "9100", "siteId": "s1"}
        wait_for(lambda: "router converged" in wrapper.log, "the converge after start")
        assert "fogwire.router.skrouterd: ROUTER (info) Router started" in wrapper.log

        two = {
            "a-listener": {"port": "9100", "address": "a", "siteId": "s1"},
            "b-listener": {"port": "9101", "address": "a"},
        }
        write_atomically(source, yaml.safe_dump(controller_config(port, tcp=two)))
        wait_for(lambda: router.names("tcpListener") == {"a-listener", "b-listener"}, "the live CREATE")
        wait_for(lambda: "b-listener" in conf.read_text(), "the file rewritten after the apply")
        assert len(wrapper.start_times()) == 1

        before = conf.read_text()
        bad = controller_config(port, tcp={"c-listener": {"port": "9102", "address": "a", "siteID": "typo"}})
        write_atomically(source, yaml.safe_dump(bad))
        wait_for(lambda: "siteID: unknown field" in wrapper.log, "the validation error")
        time.sleep(0.5)
        assert conf.read_text() == before
        assert router.names("tcpListener") == {"a-listener", "b-listener"}

        write_atomically(source, yaml.safe_dump(controller_config(port, mode="interior", tcp=two)))
        wait_for(lambda: len(wrapper.start_times()) == 2, "the restart for the router mode change")
        wait_for(
            lambda: router.entity("router", "router/r1")["mode"] == "interior", "the restarted router in interior mode"
        )
        assert json.loads(conf.read_text())[0] == ["router", {"id": "r1", "mode": "interior", "helloMaxAgeSeconds": 3}]
        assert router.names("tcpListener") == {"a-listener", "b-listener"}
        assert "restarting skrouterd for changes it can't take live: router/router" in wrapper.log
    finally:
        router.close()
    assert wrapper.stop() == 0


def test_crash_restarts_with_backoff_reports_the_loop_and_exit_code_follows_skrouterd(
    tmp_path: Path, wrappers: list[Wrapper]
) -> None:
    port = free_port()
    source = tmp_path / "config.yaml"
    source.write_text(yaml.safe_dump(controller_config(port)))
    crash = tmp_path / "crash"
    crash.touch()
    wrapper = Wrapper(
        tmp_path,
        [
            "--source",
            "file",
            "--source-option",
            f"path={source}",
            "--backoff-initial",
            "0.3",
            "--crash-loop-count",
            "3",
        ],
        {
            "QDROUTERD_CONF": str(tmp_path / "skrouterd.json"),
            "MGMT_PEER_EXIT_AFTER": "0.1",
            "MGMT_PEER_EXIT_CODE": "3",
            "MGMT_PEER_CRASH_IF_EXISTS": str(crash),
            "MGMT_PEER_TERM_CODE": "7",
        },
    )
    wrappers.append(wrapper)
    wait_for(lambda: len(wrapper.start_times()) >= 4, "four starts", timeout=40)
    crash.unlink()
    delays = restart_delays(wrapper.log)[:3]
    assert [announced for announced, _ in delays] == [0.3, 0.6, 1.2], delays
    for announced, waited in delays:
        assert announced <= waited < announced + 0.5, delays
    assert "skrouterd exited with code 3" in wrapper.log
    assert "skrouterd crash loop: 3 exits" in wrapper.log
    router = Router(port)
    try:
        wait_for(lambda: router.names("tcpListener") == {"a-listener"}, "a router that stays up")
    finally:
        router.close()
    assert wrapper.stop() == 7
    assert "Shut down on signal 15" in wrapper.log
    assert "skrouterd exited with code 7 after signal 15" in wrapper.log


def restart_delays(log: str) -> list[tuple[float, float]]:
    """``(announced delay, measured delay)`` of each crash restart, from the wrapper's own log times."""
    import datetime
    import re

    stamp = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
    found: list[tuple[float, float]] = []
    pending: tuple[float, float] | None = None
    for line in log.splitlines():
        match = stamp.match(line)
        if not match:
            continue
        when = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        announced = re.search(r"exited with code \d+ after .* restarting in ([\d.]+) s", line)
        if announced:
            pending = (float(announced.group(1)), when)
        elif "started skrouterd" in line and pending is not None:
            found.append((pending[0], when - pending[1]))
            pending = None
    return found


def make_certs(directory: Path, names: list[str]) -> dict[str, tuple[Path, Path]]:
    """A CA (``ca.crt``) and one signed leaf certificate/key pair per name."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    directory.mkdir(parents=True, exist_ok=True)
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *curve, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=test-ca")
    pairs = {}
    for name in names:
        run("req", *curve, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        run(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.crt",
            "-days",
            "1",
        )
        pairs[name] = (directory / f"{name}.crt", directory / f"{name}.key")
    return pairs


def install(profile: Path, crt: Path | None, key: Path | None) -> None:
    for source, target in ((crt, "tls.crt"), (key, "tls.key")):
        if source is not None:
            write_atomically(profile / target, source.read_text())


def test_kubernetes_mode_rotates_certificates_live_and_converges_after_a_router_crash(
    tmp_path: Path, wrappers: list[Wrapper]
) -> None:
    port = free_port()
    pairs = make_certs(tmp_path / "pki", ["one", "two", "three"])
    profile = tmp_path / "certs" / "p1"
    profile.mkdir(parents=True)
    (profile / "ca.crt").write_text((tmp_path / "pki" / "ca.crt").read_text())
    install(profile, *pairs["one"])
    conf = tmp_path / "operator" / "skrouterd.json"
    conf.parent.mkdir()
    sections = [
        ["router", {"id": "r1", "mode": "edge"}],
        ["listener", {"name": "amqp", "host": "127.0.0.1", "port": str(port), "role": "normal"}],
        ["tcpConnector", {"name": "a-connector", "host": "127.0.0.1", "port": "8100", "address": "a"}],
    ]
    conf.write_text(json.dumps(sections))
    wrapper = Wrapper(
        tmp_path,
        ["--backoff-initial", "0.2"],
        {"SKUPPER_PLATFORM": "kubernetes", "QDROUTERD_CONF": str(conf)},
    )
    wrappers.append(wrapper)
    router = Router(port)
    try:
        p1 = wait_for(lambda: router.entity("sslProfile", "p1"), "the disk profile created live")
        assert p1["certFile"] == str(profile / "tls.crt") and p1["ordinal"] is None

        install(profile, *pairs["two"])
        p1 = wait_for(
            lambda: (e := router.entity("sslProfile", "p1"))["ordinal"] == 1 and e, "ordinal 1 after rotation"
        )
        assert p1["oldestValidOrdinal"] == 0

        install(profile, None, pairs["three"][1])  # key of another certificate: refused
        wait_for(lambda: "don't parse or don't belong together" in wrapper.log, "the mismatch error")
        time.sleep(0.5)
        assert router.entity("sslProfile", "p1")["ordinal"] == 1

        install(profile, pairs["three"][0], None)  # now the pair matches again
        p1 = wait_for(lambda: (e := router.entity("sslProfile", "p1"))["ordinal"] == 2 and e, "ordinal 2")
        assert p1["oldestValidOrdinal"] == 1

        sections.append(["tcpListener", {"name": "a-listener", "port": "9100", "address": "a", "siteId": "s1"}])
        write_atomically(conf, json.dumps(sections))
        wait_for(lambda: router.names("tcpListener") == {"a-listener"}, "the operator's change applied live")
        assert json.loads(conf.read_text()) == sections, "the operator's file is never written"

        os.kill(wrapper.router_pids()[-1], signal.SIGKILL)
        wait_for(lambda: len(wrapper.start_times()) == 2, "the restart after the crash")
        p1 = wait_for(
            lambda: (e := router.entity("sslProfile", "p1"))["ordinal"] == 2 and e, "p1 converged onto the new router"
        )
        assert p1["oldestValidOrdinal"] == 1
        assert router.names("tcpListener") == {"a-listener"}
        assert json.loads(conf.read_text()) == sections
    finally:
        router.close()
    assert wrapper.stop() == 0


async def test_iofog_mode_follows_the_local_api_and_its_control_signal(tmp_path: Path, wrappers: list[Wrapper]) -> None:
    import asyncio

    import fogwire_config_pot.testing as testing

    port = free_port()
    api = testing.LocalApiServer(identity="router-ms", protocols=("v2",), config=controller_config(port))
    api_port = await api.start()
    wrapper = Wrapper(
        tmp_path,
        ["--source-option", "api=v2"],
        {
            "SKUPPER_PLATFORM": "iofog",
            "QDROUTERD_CONF": str(tmp_path / "skrouterd.json"),
            "EDGELET_MICROSERVICE_UID": "router-ms",
            "EDGELET_API_HOST": "127.0.0.1",
            "EDGELET_API_PORT": str(api_port),
            "SSL": "false",
        },
    )
    wrappers.append(wrapper)
    router = Router(port)

    async def until(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if await asyncio.to_thread(condition):
                    return
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.05)

    try:
        await until(lambda: router.names("tcpListener") == {"a-listener"}, "the router from the local API config")
        await api.wait_connected()
        two = {
            "a-listener": {"port": "9100", "address": "a", "siteId": "s1"},
            "b-listener": {"port": "9101", "address": "a"},
        }
        api.config = controller_config(port, tcp=two)
        assert await api.signal(0x0C) == 1
        await until(lambda: router.names("tcpListener") == {"a-listener", "b-listener"}, "the change applied live")
        assert len(wrapper.start_times()) == 1
        # The file is rewritten right after the live apply succeeds, so it may lag the router by a moment.
        await until(lambda: "b-listener" in (tmp_path / "skrouterd.json").read_text(), "the file rewritten")
    finally:
        await asyncio.to_thread(router.close)
        code = await asyncio.to_thread(wrapper.stop)
        await api.stop()
    assert code == 0
