"""EdgeletAPI v1 against a real HTTPS + websocket server with a CA made here."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

import pytest
from fogwire_config_pot.source import LocalApiError
from fogwire_config_pot.testing import Fault, LocalApiServer, Pki
from fogwire_config_pot.validate import InvalidConfigError
from potlib import IDENTITY, SourceMaker, write_atomically

from fogwire.sources import ChangeNotice

ROUTER_CONFIG = {
    "listeners": {"ms-amqp": {"name": "ms-amqp", "host": "0.0.0.0", "port": 5672, "role": "normal"}},
    "connectors": {"up": {"name": "up", "role": "edge", "host": "hub", "port": "45671", "sslProfile": "p"}},
    "sslProfiles": {"p": {"name": "p", "caCertFile": "/etc/skupper-router-certs/p/ca.crt"}},
    "bridges": {
        "tcpConnectors": {},
        "tcpListeners": {"svc-listener": {"name": "svc-listener", "port": "6000", "address": "svc", "siteId": "f"}},
    },
    "metadata": {"id": "r1", "mode": "edge", "helloMaxAgeSeconds": "3"},
}


async def next_notice(changes: object, timeout: float = 5.0) -> ChangeNotice:
    """The next notice from a ``changes()`` iterator, or fail after ``timeout``."""
    async with asyncio.timeout(timeout):
        return await anext(changes)  # type: ignore[call-overload,no-any-return]


async def test_fetch_sends_bearer_token_over_verified_tls_via_fallback_host(
    tls_server: LocalApiServer, make_source: SourceMaker
) -> None:
    tls_server.config = ROUTER_CONFIG
    source = make_source(tls_server)  # default host: edgelet.default.svc.bridge.local, unresolvable here
    snapshot = await source.fetch()
    assert snapshot.payload == ROUTER_CONFIG
    assert source.api == "v1"
    (request,) = tls_server.requests
    assert request.method == "GET"
    assert request.path == "/v1/microservices/config"
    assert request.headers["Authorization"] == "Bearer token-one"
    assert request.headers["Accept"] == "application/json"
    # reached through the 127.0.0.1 fallback, still addressed (and TLS-verified) as the documented name
    assert request.headers["Host"] == f"edgelet.default.svc.bridge.local:{tls_server.port}"
    assert snapshot.origin == f"https://edgelet.default.svc.bridge.local:{tls_server.port}/v1/microservices/config"


async def test_config_as_json_string_is_accepted(tls_server: LocalApiServer, make_source: SourceMaker) -> None:
    tls_server.config = ROUTER_CONFIG
    tls_server.v1_config_as_string = True
    snapshot = await make_source(tls_server).fetch()
    assert snapshot.payload == ROUTER_CONFIG


async def test_token_is_reread_after_rotation(
    tls_server: LocalApiServer, make_source: SourceMaker, serviceaccount: Path
) -> None:
    source = make_source(tls_server)
    await source.fetch()
    write_atomically(serviceaccount / "token", "token-two\n")
    tls_server.token = "token-two"
    await source.fetch()
    assert [r.headers["Authorization"] for r in tls_server.requests] == ["Bearer token-one", "Bearer token-two"]


async def test_server_certificate_from_another_ca_is_refused(
    tls_server: LocalApiServer, make_source: SourceMaker, serviceaccount: Path, other_pki: Pki
) -> None:
    (serviceaccount / "ca.crt").write_bytes(other_pki.ca_cert.read_bytes())
    source = make_source(tls_server, api="v1", startup_timeout=30)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(LocalApiError, match=r"TLS verification .* failed") as caught:
        await source.fetch()
    assert str(serviceaccount / "ca.crt") in str(caught.value)
    assert loop.time() - started < 5, "a wrong CA must fail at once, not wait out the start-up timeout"
    assert tls_server.requests == []


async def test_error_envelope_is_surfaced_with_code_and_status(
    tls_server: LocalApiServer, make_source: SourceMaker
) -> None:
    tls_server.config_faults.append(
        Fault(403, {"success": False, "error": {"code": "FORBIDDEN", "message": "rbac denies get", "details": {}}})
    )
    with pytest.raises(LocalApiError) as caught:
        await make_source(tls_server).fetch()
    assert caught.value.status == 403
    assert caught.value.code == "FORBIDDEN"
    assert "HTTP 403 FORBIDDEN: rbac denies get" in str(caught.value)
    assert len(tls_server.requests) == 1, "a 403 is not retried"


async def test_401_is_a_clear_error_without_retries_and_without_the_token(
    tls_server: LocalApiServer, make_source: SourceMaker, serviceaccount: Path
) -> None:
    tls_server.token = "the-server-wants-another"
    source = make_source(tls_server, startup_timeout=30)
    with pytest.raises(LocalApiError) as caught:
        await source.fetch()
    message = str(caught.value)
    assert caught.value.status == 401 and caught.value.code == "UNAUTHORIZED"
    assert str(serviceaccount / "token") in message
    assert "token-one" not in message and "the-server-wants-another" not in message
    assert len(tls_server.requests) == 1
    assert source.degraded == message


async def test_500_is_retried_then_succeeds(tls_server: LocalApiServer, make_source: SourceMaker) -> None:
    source = make_source(tls_server)
    await source.fetch()
    tls_server.config = ROUTER_CONFIG
    tls_server.config_faults.append(Fault(500, {"success": False, "error": {"code": "INTERNAL", "message": "boom"}}))
    snapshot = await source.fetch()
    assert snapshot.payload == ROUTER_CONFIG
    assert len(tls_server.requests) == 3


async def test_refresh_failure_is_an_error_to_the_caller_after_bounded_retries(
    tls_server: LocalApiServer, make_source: SourceMaker
) -> None:
    source = make_source(tls_server, attempts=3)
    await source.fetch()
    for _ in range(5):
        tls_server.config_faults.append(Fault(500, {"success": False, "error": {"code": "INTERNAL", "message": "x"}}))
    with pytest.raises(LocalApiError, match="INTERNAL") as caught:
        await source.fetch()
    assert caught.value.retryable
    assert len(tls_server.requests) == 1 + 3
    assert source.degraded is not None and "INTERNAL" in source.degraded


async def test_slow_reply_times_out(tls_server: LocalApiServer, make_source: SourceMaker) -> None:
    source = make_source(tls_server, request_timeout=0.2, attempts=1)
    await source.fetch()
    tls_server.delay = 1.0
    with pytest.raises(LocalApiError, match=r"no reply .* within 0.2s"):
        await source.fetch()


async def test_invalid_json_config_is_refused_with_its_path_and_degrades(
    tls_server: LocalApiServer, make_source: SourceMaker
) -> None:
    source = make_source(tls_server)
    tls_server.raw_config = b'{"listeners": {'
    with pytest.raises(InvalidConfigError) as caught:
        await source.fetch()
    assert "data.config: not valid JSON" in str(caught.value)
    assert source.degraded is not None and "data.config" in source.degraded
    tls_server.raw_config = None
    tls_server.config = ROUTER_CONFIG
    assert (await source.fetch()).payload == ROUTER_CONFIG
    assert source.degraded is None


async def test_invalid_router_config_names_the_field(tls_server: LocalApiServer, make_source: SourceMaker) -> None:
    tls_server.config = {
        **ROUTER_CONFIG,
        "listeners": {"a": {"name": "a", "port": 70000}},
        "connectors": {"up": {"name": "up", "host": "hub", "port": "45671", "sslProfile": "missing"}},
        "metadata": [],
    }
    with pytest.raises(InvalidConfigError) as caught:
        await make_source(tls_server).fetch()
    message = str(caught.value)
    assert "listeners.a.port: expected a port 0-65535, got 70000" in message
    assert "metadata: expected a mapping of attributes, got list" in message
    assert "connector[up].sslProfile: no sslProfile named 'missing' in this config" in message


async def test_start_waits_for_the_api_then_succeeds(pki: Pki, make_source: SourceMaker) -> None:
    server = LocalApiServer(identity=IDENTITY, ssl_context=pki.server_context())
    port = await server.start()
    await server.stop()  # the port is known, nothing listens yet
    source = make_source(port=port, api="v1", startup_timeout=10)
    fetching = asyncio.create_task(source.fetch())
    async with asyncio.timeout(5):
        while source.degraded is None:  # the first attempt has failed: it is waiting now
            await asyncio.sleep(0.01)
    assert "cannot connect" in source.degraded
    assert not fetching.done()
    await server.start(port)
    try:
        snapshot = await asyncio.wait_for(fetching, 5)
        assert snapshot.payload == server.config
    finally:
        await server.stop()


async def test_start_gives_up_after_the_startup_timeout(make_source: SourceMaker, pki: Pki) -> None:
    server = LocalApiServer(ssl_context=pki.server_context())
    port = await server.start()
    await server.stop()
    source = make_source(port=port, api="v1", startup_timeout=0.3)
    with pytest.raises(LocalApiError, match=r"gave up after 0.3s waiting for the local API: cannot connect"):
        await source.fetch()


async def test_update_signal_is_acked_with_0x0b_and_notified(
    tls_server: LocalApiServer, make_source: SourceMaker
) -> None:
    source = make_source(tls_server)
    changes = source.changes()
    try:
        assert (await next_notice(changes)).reason == "control socket connected"
        (_, upgrade) = tls_server.control_connects[0]
        assert upgrade.path == "/v1/microservices/control"
        assert upgrade.headers["Authorization"] == "Bearer token-one"
        assert upgrade.headers["Upgrade"].lower() == "websocket"
        assert await tls_server.signal(0x0F) == 1  # resource signal: ignored, no ack
        assert await tls_server.signal(0x0C) == 1
        notice = await next_notice(changes)
        assert notice.reason == "update signal 0x0C"
        await tls_server.wait_received(1)
        assert tls_server.received == [b"\x0b"]
    finally:
        await changes.aclose()


async def test_refetch_on_every_reconnect_sees_an_update_made_while_disconnected(
    tls_server: LocalApiServer, make_source: SourceMaker
) -> None:
    source = make_source(tls_server)
    first = await source.fetch()
    changes = source.changes()
    try:
        await next_notice(changes)
        # the agent goes away; while it is away the config changes and a signal is sent to nobody
        tls_server.control_faults.extend([Fault(503, b"restarting"), Fault(503, b"restarting")])
        await tls_server.drop_sockets()
        tls_server.config = ROUTER_CONFIG
        assert await tls_server.signal(0x0C) == 0
        notice = await next_notice(changes)
        assert notice.reason == "control socket reconnected"
        assert len(tls_server.control_attempts) == 4  # connect, 2 refused, reconnect
        latest = await source.fetch()
        assert latest.payload == ROUTER_CONFIG and latest.digest != first.digest
    finally:
        await changes.aclose()


async def test_websocket_closed_mid_stream_between_signals(
    tls_server: LocalApiServer, make_source: SourceMaker
) -> None:
    source = make_source(tls_server)
    changes = source.changes()
    try:
        await next_notice(changes)
        await tls_server.signal(0x0C)
        assert (await next_notice(changes)).reason == "update signal 0x0C"
        await tls_server.wait_received(1)  # else closing the socket may discard the unread ack
        await tls_server.drop_sockets()
        assert (await next_notice(changes)).reason == "control socket reconnected"
        await tls_server.wait_connected(2)
        await tls_server.signal(0x0C)
        assert (await next_notice(changes)).reason == "update signal 0x0C"
        await tls_server.wait_received(2)
        assert tls_server.received == [b"\x0b", b"\x0b"]
    finally:
        await changes.aclose()


async def test_reconnect_backoff_doubles_and_is_capped(tls_server: LocalApiServer, make_source: SourceMaker) -> None:
    source = make_source(tls_server, backoff_initial=0.05, backoff_max=0.2, backoff_jitter=0.1)
    tls_server.control_faults.extend(Fault(503, b"busy") for _ in range(6))
    changes = source.changes()
    try:
        await next_notice(changes, timeout=10)
    finally:
        await changes.aclose()
    attempts = tls_server.control_attempts
    assert len(attempts) == 7
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    ceilings = [0.05, 0.1, 0.2, 0.2, 0.2, 0.2]
    for gap, ceiling in zip(gaps, ceilings, strict=True):
        # never shorter than the jittered ceiling; longer only by the time a connect attempt takes
        assert ceiling * 0.9 - 0.01 <= gap <= ceiling + 0.2, (gaps, ceilings)
    assert max(gaps[-2:]) < 0.5, "uncapped, these would be 0.8 s and 1.6 s"


async def test_rejected_control_socket_401_backs_off_instead_of_storming(
    tls_server: LocalApiServer, make_source: SourceMaker
) -> None:
    tls_server.token = "rotated-server-side"
    # No jitter: the delays are exactly 0.05, 0.1, 0.2, 0.4, 0.4 … (jitter may shorten each by
    # a fifth, which fits a sixth attempt into the second and made this test flaky).
    source = make_source(tls_server, api="v1", backoff_initial=0.05, backoff_max=0.4, backoff_jitter=0.0)
    changes = source.changes()
    pending = asyncio.ensure_future(anext(changes))
    await asyncio.sleep(1.0)
    assert not pending.done()
    pending.cancel()
    await asyncio.gather(pending, return_exceptions=True)
    await changes.aclose()
    # attempts at 0, 0.05, 0.15, 0.35, 0.75 and then 1.15 s at the earliest: at most 5 in a second
    assert 2 <= len(tls_server.control_attempts) <= 5
    assert source.degraded is not None and "HTTP 401" in source.degraded


async def test_token_rotation_is_used_on_reconnect(
    tls_server: LocalApiServer, make_source: SourceMaker, serviceaccount: Path
) -> None:
    source = make_source(tls_server)
    changes = source.changes()
    try:
        await next_notice(changes)
        write_atomically(serviceaccount / "token", "token-two")
        tls_server.token = "token-two"
        await tls_server.drop_sockets()
        await next_notice(changes)
        assert [u.headers["Authorization"] for _, u in tls_server.control_connects] == [
            "Bearer token-one",
            "Bearer token-two",
        ]
    finally:
        await changes.aclose()


async def test_snapshot_digest_is_stable_for_equal_content(
    tls_server: LocalApiServer, make_source: SourceMaker
) -> None:
    source = make_source(tls_server)
    tls_server.config = ROUTER_CONFIG
    one = await source.fetch()
    tls_server.config = json.loads(json.dumps(ROUTER_CONFIG))
    tls_server.v1_config_as_string = True
    assert (await source.fetch()).digest == one.digest


async def test_signals_are_acked_at_once_and_coalesced_while_the_consumer_is_busy(
    tls_server: LocalApiServer, make_source: SourceMaker
) -> None:
    source = make_source(tls_server)
    changes = source.changes()
    try:
        await next_notice(changes)
        for _ in range(5):  # the consumer is busy applying: nobody pulls a notice
            await tls_server.signal(0x0C)
        await tls_server.wait_received(5)
        assert tls_server.received == [b"\x0b"] * 5
        assert (await next_notice(changes)).reason == "update signal 0x0C (4 more coalesced)"
    finally:
        await changes.aclose()


async def test_a_burst_of_signals_gives_a_few_notices_not_one_each(
    tls_server: LocalApiServer, make_source: SourceMaker
) -> None:
    source = make_source(tls_server, min_interval=0.1)
    changes = source.changes()
    notices: list[ChangeNotice] = []

    async def consume() -> None:
        async for notice in changes:
            notices.append(notice)

    consumer = asyncio.create_task(consume())
    try:
        await tls_server.wait_connected(1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(100):  # 100 signals over about half a second
            await tls_server.signal(0x0C)
            await asyncio.sleep(0.005)
        await tls_server.wait_received(100)
        await asyncio.sleep(0.25)
        elapsed = loop.time() - started
        assert 1 <= len(notices) <= elapsed / 0.1 + 3, (len(notices), elapsed)
        accounted = sum(1 + int(n.reason.split("(")[1].split()[0]) if "(" in n.reason else 1 for n in notices)
        assert accounted == 101, "the connect and every signal are accounted for in some notice"
    finally:
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        await changes.aclose()


async def test_a_reply_that_is_not_an_envelope_is_a_clear_error(
    tls_server: LocalApiServer, make_source: SourceMaker
) -> None:
    source = make_source(tls_server)
    await source.fetch()
    tls_server.config_faults.append(Fault(200, b"<html>proxy says hello</html>"))
    with pytest.raises(LocalApiError, match="answered HTTP 200 without an EdgeletAPI envelope: <html>proxy says hello"):
        await source.fetch()
    assert len(tls_server.requests) == 2, "not retried"


async def test_a_large_config_is_validated_off_the_loop_and_delivered_whole(
    tls_server: LocalApiServer, make_source: SourceMaker
) -> None:
    listeners = {f"svc-{n}": {"name": f"svc-{n}", "port": str(10000 + n), "address": f"svc-{n}"} for n in range(600)}
    tls_server.config = {**ROUTER_CONFIG, "bridges": {"tcpListeners": listeners, "tcpConnectors": {}}}
    tls_server.v1_config_as_string = True
    assert len(json.dumps(tls_server.config)) > 32 * 1024
    snapshot = await make_source(tls_server).fetch()
    assert snapshot.payload == tls_server.config


async def test_close_ends_the_iteration_and_opens_nothing_more(
    tls_server: LocalApiServer, make_source: SourceMaker
) -> None:
    source = make_source(tls_server)
    changes = source.changes()
    await next_notice(changes)
    pending = asyncio.ensure_future(anext(changes))
    await asyncio.sleep(0.05)
    await source.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, 2)
    attempts = len(tls_server.control_attempts)
    await asyncio.sleep(0.3)  # backoff_max is 0.1 s: a live reader would have reconnected by now
    assert len(tls_server.control_attempts) == attempts == 1
    assert tls_server.connected == 0
    with pytest.raises(LocalApiError, match="closed"):
        await source.fetch()
