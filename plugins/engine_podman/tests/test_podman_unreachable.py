"""A podman service that does not answer: clear errors, and no socket left for the garbage collector.

podman-py's ``UDSConnection.connect`` (5.8) creates a ``UDSSocket`` and, when
connecting fails, neither closes it nor keeps it on the connection, so
``conn.close()`` cannot reach it. The socket then lives on in the exception's
traceback, in a reference cycle, until some later garbage collection finalises
it with a ``ResourceWarning``: in the test suite, inside whatever test runs
then. The supervision test hit this about once in ten runs (the event watch
reconnecting while the killed service was being restarted), and the warning
failed the next test, ``test_options_are_checked``. These tests fail on every
run without the plugin's connection class that closes such a socket
(:mod:`fogwire_engine_podman.transport`).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fogwire_engine_podman.engine import PodmanEngine
from fogwire_engine_podman.streaming import DedicatedStream

from fogwire.engine import EngineContext
from fogwire.errors import EngineError


@pytest.fixture(params=["missing", "refused"])
def dead_socket(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A unix socket path nobody answers on: absent, or bound but not listening (connection refused)."""
    path = tmp_path / "podman.sock"
    if request.param == "missing":
        yield path
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bound:
        bound.bind(str(path))
        yield path


async def test_start_on_a_dead_socket_fails_clearly_and_leaks_nothing(
    tmp_path: Path, dead_socket: Path, unclosed_after_gc: Callable[[], list[str]]
) -> None:
    context = EngineContext(
        agent_id="unreachable",
        data_dir=tmp_path,
        run_dir=tmp_path,
        log_dir=tmp_path,
        url=f"unix://{dead_socket}",
        options={"oomWatch": "off"},
    )
    engine = PodmanEngine(context)
    try:
        with pytest.raises(EngineError, match=f"cannot connect to the podman service at unix://{dead_socket}"):
            await engine.start()
        with pytest.raises(EngineError, match="not started"):  # a failed start keeps no client
            _ = engine.client
        with pytest.raises(EngineError, match="cannot connect"):
            await engine.start()
    finally:
        await engine.close()
    assert unclosed_after_gc() == []


def test_a_stream_on_a_dead_socket_fails_clearly_and_leaks_nothing(
    dead_socket: Path, unclosed_after_gc: Callable[[], list[str]]
) -> None:
    released: list[DedicatedStream] = []
    stream = DedicatedStream(f"unix://{dead_socket}", 2.0, released.append)
    with pytest.raises(EngineError, match=f"cannot reach the podman service at unix://{dead_socket}"):
        stream.open("/events", {"stream": True})
    assert released == [stream]
    assert unclosed_after_gc() == []


def test_podman_internals_are_as_the_transport_expects() -> None:
    """The podman-py internals the closing connection subclasses are there, as verified on 5.x.

    A podman-py release that moves them fails here, loudly, before a user's daemon
    quietly loses the fix (it would log a warning and leave podman-py unpatched).
    """
    import importlib.metadata

    from fogwire_engine_podman.transport import internals_changed

    version = importlib.metadata.version("podman")
    assert internals_changed() is None, (
        f"podman-py {version} changed what fogwire_engine_podman.transport relies on: {internals_changed()}; "
        "review the subclass and the version bound in plugins/engine_podman/pyproject.toml"
    )
    assert version.split(".")[0] == "5", f"podman-py {version} is outside the bound the transport was verified for"


def test_changed_internals_leave_podman_py_unpatched_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import podman.api
    import podman.api.uds
    from fogwire_engine_podman import transport

    monkeypatch.setattr(transport, "internals_changed", lambda: "UDSSocket.connect is gone")
    client = podman.api.APIClient(base_url="http+unix:///nonexistent/podman.sock")
    try:
        transport.close_failed_connects(client)
        managers = [a.poolmanager for a in client.adapters.values() if hasattr(a, "poolmanager")]
        pools = {cls for m in managers for cls in m.pool_classes_by_scheme.values()}
        assert transport.ClosingUDSConnectionPool not in pools
        assert podman.api.uds.UDSConnectionPool in pools
        assert "UDSSocket.connect is gone" in caplog.text and "left unpatched" in caplog.text
    finally:
        client.close()
