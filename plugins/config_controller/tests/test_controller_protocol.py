"""The client side of the controller's agent API against the stand-in: provisioning, auth, errors.

Each behaviour is the one ``controller-agent-api.md`` recorded from a real controller;
the stand-in answers that way, and these tests pin both the stand-in and the client.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from ctllib import provision
from fogwire_config_controller import credentials
from fogwire_config_controller.client import AuthRejected, ControllerClient, ControllerError, ControllerUnreachable
from fogwire_config_controller.testing import StandInController

from fogwire.testing.pki import make_pki


async def test_provisioning_stores_credentials_0600_and_signs_every_call(
    controller: StandInController, tmp_path: Path
) -> None:
    node = await provision(controller, tmp_path)
    stored = credentials.load(tmp_path)
    assert stored is not None and stored.uuid == node
    assert stored.generation == ("token" if controller.auth == "legacy" else "jwt")
    mode = stat.S_IMODE(os.stat(credentials.credentials_path(tmp_path)).st_mode)
    assert mode == 0o600
    assert stored.secret not in repr(stored)
    client = ControllerClient(controller.url, authorization=stored.authorization)
    for _ in range(3):  # a JWT's jti is single use: each call signs a fresh one
        reply = await client.request("GET", "agent/config/changes")
        assert reply.data["microserviceList"] is True
    if controller.auth == "jwt":
        assert len(controller.used_jtis) == 3


async def test_a_provisioning_key_is_single_use_and_expires(legacy_controller: StandInController) -> None:
    node = legacy_controller.create_node("n")
    key = legacy_controller.provisioning_key(node)
    client = ControllerClient(legacy_controller.url)
    await client.request("POST", "agent/provision", {"key": key, "type": 1}, authenticated=False)
    with pytest.raises(ControllerError) as used:
        await client.request("POST", "agent/provision", {"key": key, "type": 1}, authenticated=False)
    assert used.value.status == 404 and "Invalid Provisioning Key" in str(used.value)
    expired = legacy_controller.provisioning_key(node, valid_s=-1)
    with pytest.raises(AuthRejected):
        await client.request("POST", "agent/provision", {"key": expired, "type": 1}, authenticated=False)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"key": "x"}, "Required field 'type' is missing"),
        ({"key": "x", "type": "1"}, "Field 'type' is not of a type(s) integer"),
        ({"key": "x", "type": 3}, "less than or equal to 2"),
    ],
)
async def test_provision_type_is_checked_as_the_controller_does(
    legacy_controller: StandInController, body: dict[str, object], message: str
) -> None:
    client = ControllerClient(legacy_controller.url)
    with pytest.raises(ControllerError) as refused:
        await client.request("POST", "agent/provision", body, authenticated=False)
    assert refused.value.status == 400 and message in str(refused.value)


async def test_reprovisioning_rotates_the_token(legacy_controller: StandInController, tmp_path: Path) -> None:
    node = await provision(legacy_controller, tmp_path)
    old = credentials.load(tmp_path)
    assert old is not None
    key = legacy_controller.provisioning_key(node)
    client = ControllerClient(legacy_controller.url)
    answer = (await client.request("POST", "agent/provision", {"key": key, "type": 1}, authenticated=False)).data
    credentials.save(tmp_path, credentials.Credentials.from_answer(client.base, answer, 1))
    new = credentials.load(tmp_path)
    assert new is not None and new.secret != old.secret and new.uuid == old.uuid
    with pytest.raises(AuthRejected):
        await ControllerClient(legacy_controller.url, authorization=old.authorization).request("GET", "agent/config")
    await ControllerClient(legacy_controller.url, authorization=new.authorization).request("GET", "agent/config")


async def test_the_controllers_quirky_errors_are_read_as_errors(legacy_controller: StandInController) -> None:
    client = ControllerClient(legacy_controller.url)
    with pytest.raises(ControllerError) as missing_header:  # no Authorization at all: a 500, not a 401
        await client.request("GET", "agent/config")
    assert missing_header.value.status == 500
    with pytest.raises(ControllerError) as unknown:
        await client.request("GET", "agent/nothing-here")
    assert unknown.value.status == 404 and "an HTML error page: Cannot GET /api/v3/agent/nothing-here" in str(
        unknown.value
    )
    legacy_controller.fail("GET", "config", 502, "<h1>Bad Gateway</h1>", html=True)
    client = ControllerClient(legacy_controller.url, authorization=lambda: "x" * 16)
    with pytest.raises(ControllerError) as html:
        await client.request("GET", "agent/config")
    assert html.value.status == 502 and "HTML" in str(html.value) and "<h1>" not in str(html.value)


async def test_a_bearer_prefix_on_a_legacy_token_is_refused(
    legacy_controller: StandInController, tmp_path: Path
) -> None:
    await provision(legacy_controller, tmp_path)
    stored = credentials.load(tmp_path)
    assert stored is not None
    with pytest.raises(AuthRejected):
        await ControllerClient(legacy_controller.url, authorization=lambda: "Bearer " + stored.secret).request(
            "GET", "agent/config"
        )


async def test_a_jwt_replayed_is_refused(tmp_path: Path) -> None:
    stand_in = StandInController(auth="jwt")
    await stand_in.start()
    try:
        await provision(stand_in, tmp_path)
        stored = credentials.load(tmp_path)
        assert stored is not None
        token = stored.authorization()
        claims = json.loads(credentials.base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        assert claims["tokenUse"] == "controller" and claims["sub"] == stored.uuid
        assert claims["aud"] == [stored.controller_url] and claims["exp"] - claims["iat"] == 600
        replaying = ControllerClient(stand_in.url, authorization=lambda: token)
        await replaying.request("GET", "agent/config")
        with pytest.raises(AuthRejected):
            await replaying.request("GET", "agent/config")
    finally:
        await stand_in.close()


async def test_an_unreachable_or_slow_controller_is_a_clear_error(legacy_controller: StandInController) -> None:
    legacy_controller.slow("GET", "config", 3)
    client = ControllerClient(legacy_controller.url, authorization=lambda: "t", timeout_s=0.5)
    with pytest.raises(ControllerUnreachable) as slow:
        await client.request("GET", "agent/config")
    assert "did not answer within" in str(slow.value)
    await legacy_controller.stop()
    with pytest.raises(ControllerUnreachable) as down:
        await client.request("GET", "agent/config")
    assert "cannot reach the controller" in str(down.value)


def test_the_controller_url_is_normalised_and_checked() -> None:
    assert ControllerClient("http://c:51121").base == "http://c:51121/api/v3/"
    assert ControllerClient("http://c:51121/api/v3").base == "http://c:51121/api/v3/"
    with pytest.raises(ControllerError.__mro__[1]):  # SourceError
        ControllerClient("controller:51121")


async def test_https_with_the_controllers_own_ca(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki", names=("localhost",))
    other = make_pki(tmp_path / "other", names=("localhost",), prefix="other-")
    stand_in = StandInController(auth="legacy")
    stand_in.ssl_context = pki.server_context()
    await stand_in.start()
    try:
        assert stand_in.url.startswith("https://")
        ok = ControllerClient(stand_in.url, controller_cert=str(pki.ca_cert))
        assert (await ok.request("GET", "status", authenticated=False)).data["status"] == "online"
        pem = ControllerClient(stand_in.url, controller_cert=pki.ca_cert.read_text())
        await pem.request("GET", "status", authenticated=False)
        with pytest.raises(ControllerUnreachable) as untrusted:
            await ControllerClient(stand_in.url, controller_cert=str(other.ca_cert)).request(
                "GET", "status", authenticated=False
            )
        assert "TLS" in str(untrusted.value)
    finally:
        await stand_in.close()


async def test_the_status_body_is_checked_as_the_controller_does(
    legacy_controller: StandInController, tmp_path: Path
) -> None:
    node = await provision(legacy_controller, tmp_path)
    stored = credentials.load(tmp_path)
    assert stored is not None
    client = ControllerClient(legacy_controller.url, authorization=stored.authorization)
    with pytest.raises(ControllerError) as missing:
        await client.request("PUT", "agent/status", {"daemonStatus": "RUNNING", "lastStatusTime": 1})
    assert missing.value.status == 500
    assert legacy_controller.nodes[node].status["daemonStatus"] == "RUNNING", "node fields are saved even so"
    with pytest.raises(ControllerError) as not_a_string:
        await client.request("PUT", "agent/status", {"microserviceStatus": []})
    assert not_a_string.value.status == 400
    with pytest.raises(ControllerError) as not_an_array:
        await client.request("PUT", "agent/status", {"microserviceStatus": '{"status":"UNKNOWN"}'})
    assert not_an_array.value.status == 500
    with pytest.raises(ControllerError) as negative:
        await client.request("PUT", "agent/status", {"cpuUsage": -1, "microserviceStatus": "[]"})
    assert negative.value.status == 400
    reply = await client.request("PUT", "agent/status", {"daemonStatus": "RUNNING", "microserviceStatus": "[]"})
    assert reply.status == 204
