"""The legacy v2 local API (the Java agent's), and choosing a generation automatically."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from fogwire_config_pot.source import LocalApiError
from fogwire_config_pot.testing import Fault, LocalApiServer, Pki
from potlib import IDENTITY, SourceMaker

CONFIG = {"listeners": {"l": {"name": "l", "port": 5672}}, "metadata": {"id": "r2", "mode": "interior"}}


async def test_v2_posts_the_id_over_plain_http_by_default(
    plain_server: LocalApiServer, make_source: SourceMaker
) -> None:
    plain_server.config = CONFIG
    source = make_source(plain_server, api="v2", environ={"SELFNAME": IDENTITY})
    snapshot = await source.fetch()
    assert snapshot.payload == CONFIG
    (request,) = plain_server.requests
    assert request.method == "POST"
    assert request.path == "/v2/config/get"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Host"] == f"iofog:{plain_server.port}"  # fallback to 127.0.0.1, name kept
    assert "Authorization" not in request.headers
    assert json.loads(request.body) == {"id": IDENTITY}
    assert snapshot.origin == f"http://iofog:{plain_server.port}/v2/config/get"


async def test_v2_control_socket_acks_and_notifies(plain_server: LocalApiServer, make_source: SourceMaker) -> None:
    source = make_source(plain_server, api="v2")
    changes = source.changes()
    try:
        async with asyncio.timeout(5):
            assert (await anext(changes)).reason == "control socket connected"
            (_, upgrade) = plain_server.control_connects[0]
            assert upgrade.path == f"/v2/control/socket/id/{IDENTITY}"
            await plain_server.signal(0x0F)
            await plain_server.signal(0x0C)
            assert (await anext(changes)).reason == "update signal 0x0C"
            await plain_server.wait_received(1)
        assert plain_server.received == [b"\x0b"]
    finally:
        await changes.aclose()


async def test_v2_unknown_id_names_where_the_id_came_from(
    plain_server: LocalApiServer, make_source: SourceMaker
) -> None:
    source = make_source(plain_server, api="v2", environ={"IOFOG_MICROSERVICE_UID": "someone-else"})
    with pytest.raises(
        LocalApiError, match="does not know microservice id 'someone-else' \\(from IOFOG_MICROSERVICE_UID\\)"
    ):
        await source.fetch()
    assert len(plain_server.requests) == 1


async def test_v2_over_https_when_ssl_says_so(tls_server: LocalApiServer, make_source: SourceMaker) -> None:
    source = make_source(tls_server, api="v2", environ={"SELFNAME": IDENTITY, "SSL": "true"})
    await source.fetch()
    assert tls_server.requests[0].path == "/v2/config/get"


async def test_auto_without_a_token_uses_v2(
    plain_server: LocalApiServer, make_source: SourceMaker, serviceaccount: Path
) -> None:
    (serviceaccount / "token").unlink()
    plain_server.config = CONFIG
    source = make_source(plain_server)
    assert (await source.fetch()).payload == CONFIG
    assert source.api == "v2"
    assert [r.path for r in plain_server.requests] == ["/v2/config/get"]


async def test_auto_falls_back_to_v2_on_404(pki: Pki, make_source: SourceMaker) -> None:
    server = LocalApiServer(identity=IDENTITY, protocols=("v2",), ssl_context=pki.server_context(), config=CONFIG)
    await server.start()
    try:
        source = make_source(server, environ={"EDGELET_MICROSERVICE_UID": IDENTITY, "SSL": "true"})
        assert (await source.fetch()).payload == CONFIG
        assert source.api == "v2"
        assert [(r.method, r.path) for r in server.requests] == [
            ("GET", "/v1/microservices/config"),
            ("POST", "/v2/config/get"),
        ]
        await source.fetch()
        assert server.requests[-1].path == "/v2/config/get", "the choice sticks"
    finally:
        await server.stop()


async def test_auto_prefers_v1(tls_server: LocalApiServer, make_source: SourceMaker) -> None:
    source = make_source(tls_server)
    await source.fetch()
    assert source.api == "v1"
    assert [r.path for r in tls_server.requests] == ["/v1/microservices/config"]


async def test_auto_detects_before_opening_the_control_socket(
    plain_server: LocalApiServer, make_source: SourceMaker, serviceaccount: Path
) -> None:
    (serviceaccount / "token").unlink()
    source = make_source(plain_server)
    changes = source.changes()
    try:
        async with asyncio.timeout(5):
            await anext(changes)
        assert plain_server.control_connects[0][1].path == f"/v2/control/socket/id/{IDENTITY}"
    finally:
        await changes.aclose()


async def test_v1_endpoint_override_by_environment(tls_server: LocalApiServer, make_source: SourceMaker) -> None:
    environ = {
        "EDGELET_MICROSERVICE_UID": IDENTITY,
        "EDGELET_API_HOST": "localhost",
        "EDGELET_API_PORT": str(tls_server.port),
    }
    source = make_source(None, environ=environ, api="v1")
    await source.fetch()
    assert tls_server.requests[0].headers["Host"] == f"localhost:{tls_server.port}"


async def test_ssl_false_speaks_v1_over_plain_http(make_source: SourceMaker) -> None:
    server = LocalApiServer(identity=IDENTITY)
    await server.start()
    try:
        source = make_source(server, environ={"EDGELET_MICROSERVICE_UID": IDENTITY, "SSL": "false"}, api="v1")
        await source.fetch()
        assert server.requests[0].headers["Authorization"] == "Bearer token-one"
    finally:
        await server.stop()


async def test_v2_500_is_retried_and_invalid_reply_json_is_an_error(
    plain_server: LocalApiServer, make_source: SourceMaker
) -> None:
    source = make_source(plain_server, api="v2", attempts=2)
    await source.fetch()
    plain_server.config = CONFIG
    plain_server.config_faults.append(Fault(500, b"agent busy"))
    assert (await source.fetch()).payload == CONFIG
    assert len(plain_server.requests) == 3
    plain_server.config_faults.extend([Fault(200, b"{not json"), Fault(200, b"{not json")])
    with pytest.raises(LocalApiError, match="replied with invalid JSON"):
        await source.fetch()
