"""The device API on a real engine: identity projected into workloads, config read and signalled, both generations.

A busybox workload reads its own config from inside its container over HTTPS at
``iofog:<port>`` with its projected token (busybox wget); the host side then
plays the SDKs with aiohttp (TLS against the projected CA, bearer tokens,
websockets), and the pot config source (fogwire's own v1/v2 client) reads the
router's config from the node. Tokens of another microservice, forged or expired
ones are refused in the envelope.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import stat
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fogwire.agent import Agent
from fogwire.model.agent_config import Profile
from fogwire.paths import Paths
from fogwire.plugins import PluginHost
from fogwire.testing.contract import free_port
from harness import agents, images, services

pytestmark = pytest.mark.asyncio(loop_scope="function")

MOUNT = "/var/run/secrets/edgelet.iofog.org/serviceaccount"
ENGINES = agents.installed_engines()


def reader_command(port: int) -> list[str]:
    """A workload that prints its identity, its projected token, and its config as the legacy SDK reads it.

    The legacy SDK's calls are plain HTTP ``POST /v2/config/get`` with no token; the
    device API answers them only from the workload's own address. (busybox-static's
    wget offers only TLS suites OpenSSL 3 refuses at its default security level, so
    the HTTPS calls are made from the host with the token the workload printed.)
    """
    v2 = f"http://iofog:{port}/v2/config/get"
    post = "wget -q -O - --header 'Content-Type: application/json' --post-data"
    script = (
        'echo "SELF=$SELFNAME UID=$IOFOG_MICROSERVICE_UID EUID=$EDGELET_MICROSERVICE_UID"; '
        "grep -E 'iofog|edgelet' /etc/hosts; "
        "while true; do "
        f'echo "token=$(cat {MOUNT}/token)"; '
        f'echo "own=$({post} "{{\\"id\\":\\"$SELFNAME\\"}}" {v2} 2>&1)"; '
        f'echo "other=$({post} "{{\\"id\\":\\"$OTHER\\"}}" {v2} 2>&1)"; '
        "sleep 0.5; done"
    )
    return ["sh", "-c", script]


def documents(test_images: images.TestImages, prefix: str, port: int, greeting: str) -> list[dict[str, Any]]:
    def ms(name: str, config: dict[str, Any]) -> dict[str, Any]:
        other = f"{prefix}-{'b' if name == 'a' else 'a'}"
        return {
            "name": f"{prefix}-{name}",
            "images": {"x86": test_images.ref_v1, "arm": test_images.ref_v1, "registry": 3},
            "container": {"commands": reader_command(port), "env": [{"key": "OTHER", "value": other}]},
            "config": config,
        }

    return [
        test_images.registry_document(),
        {
            "apiVersion": "iofog.org/v3",
            "kind": "Application",
            "metadata": {"name": prefix},
            "spec": {"microservices": [ms("a", {"greeting": greeting, "n": 1}), ms("b", {"other": True})]},
        },
    ]


class Node:
    def __init__(self, tmp: Path, kind: str) -> None:
        self.kind = kind
        self.prefix = f"da{uuid.uuid4().hex[:5]}"
        self.port = free_port()
        self.paths = Paths(tmp / "config.yaml", tmp / "state", tmp / "log", tmp / "run")
        self.profile = Profile(
            container_engine=kind, container_engine_url=services.engine_url(kind), agent_id=f"t15-{self.prefix}"
        )
        self.options = {"port": self.port, "ackTimeoutSeconds": 0.5, "maxSignalTries": 3, "pingSeconds": 30}
        self.agent: Agent | None = None

    def make(self) -> Agent:
        self.agent = Agent(
            engine=self.kind,
            profile=self.profile,
            paths=self.paths,
            plugins=PluginHost(),
            services=[("device-api", self.options)],
            rollback_grace_s=1.0,
            backoff_cap_s=1.0,
        )
        return self.agent

    @property
    def projected(self) -> Path:
        return self.paths.state_dir / "device-api" / "serviceaccounts"

    def token(self, name: str) -> str:
        return (self.projected / name / "token").read_text()

    def ssl(self, name: str) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.projected / name / "ca.crt"))
        return context

    def url(self, path: str, scheme: str = "https") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def node(
    request: pytest.FixtureRequest, tmp_path: Path, harness_images: images.TestImages
) -> AsyncIterator[Node]:
    param = dict(getattr(request, "param", {}))
    node = Node(tmp_path, param.pop("engine", "docker"))
    node.options.update(param)
    agent = node.make()
    task = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(agent.started.wait(), 60)
        result = await agent.apply(documents(harness_images, node.prefix, node.port, "hello"))
        assert all(a["ok"] for a in result["actions"]), result
        yield node
    finally:
        with_agent = node.agent
        if with_agent is not None and with_agent.started.is_set():
            await with_agent.apply([])
        agent.stop()
        await asyncio.wait_for(task, 60)


async def wait_for(check: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def logs(agent: Agent, name: str) -> list[str]:
    return [line.text async for line in agent.logs(name)]


@pytest.mark.parametrize("node", [{"engine": e} for e in ENGINES], indirect=True, ids=ENGINES)
async def test_a_workload_reads_its_own_config_from_inside_with_its_projected_identity(
    node: Node, harness_images: images.TestImages
) -> None:
    agent = node.agent
    assert agent is not None
    a = f"{node.prefix}-a"
    address = await agent.running.engine.host_address()
    assert address
    try:

        async def both_calls_answered() -> list[str] | None:
            lines = await logs(agent, a)
            answered = next((i for i, line in enumerate(lines) if line.startswith("own={")), None)
            if answered is None or not any(line.startswith("other=") for line in lines[answered:]):
                return None
            return lines

        lines = await wait_for(both_calls_answered, "the legacy config read from inside")
    except AssertionError as error:
        raise AssertionError(f"{error}; the workload printed: {(await logs(agent, a))[-20:]}") from None
    assert f"SELF={a} UID={a} EUID={a}" in lines
    assert any(line.split() == [address, "iofog"] for line in lines), lines
    assert any(line.split() == [address, "edgelet.default.svc.bridge.local"] for line in lines), lines
    own = next(line for line in lines if line.startswith("own={")).removeprefix("own=")
    assert json.loads(own) == {"status": "okay", "config": json.dumps({"greeting": "hello", "n": 1})}
    # the "other" call right after the first answered "own" one (earlier ones may predate the bridge listener)
    answered = next(i for i, line in enumerate(lines) if line.startswith("own={"))
    other = next(line for line in lines[answered:] if line.startswith("other="))
    assert "401" in other and "okay" not in other, other
    token = next(line for line in lines if line.startswith("token=")).removeprefix("token=")
    assert token == node.token(a)
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"https://{address}:{node.port}/v1/microservices/config",
            headers={"Authorization": f"Bearer {token}"},
            ssl=node.ssl(a),
            server_hostname="iofog",
        ) as response:
            body = await response.json()
    assert body == {"success": True, "data": {"config": {"greeting": "hello", "n": 1}}}
    # The projected files: a ..data symlink swap, readable tokens, the CA the server chains to.
    directory = node.projected / a
    assert (directory / "..data").is_symlink()
    assert os.readlink(directory / "token") == "..data/token"
    claims = json.loads(base64.urlsafe_b64decode(node.token(a).split(".")[1] + "=="))
    assert claims["tokenUse"] == "serviceaccount" and claims["iofog.org.microservice.uuid"] == a
    assert claims["exp"] - claims["iat"] == 3600
    key = node.paths.state_dir / "device-api" / "serviceaccount.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600

    # A config-only change reaches the workload without a restart.
    before = (await agent.running.engine.inspect(a)).started_at  # type: ignore[union-attr]
    await agent.apply(documents(harness_images, node.prefix, node.port, "bonjour"))
    async with aiohttp.ClientSession() as http:
        async with http.get(
            node.url("/v1/microservices/config"), headers={"Authorization": f"Bearer {token}"}, ssl=node.ssl(a)
        ) as response:
            assert (await response.json())["data"]["config"]["greeting"] == "bonjour"
    assert (await agent.running.engine.inspect(a)).started_at == before  # type: ignore[union-attr]


async def _lines_with(agent: Agent, name: str, text: str) -> list[str] | None:
    lines = await logs(agent, name)
    return lines if any(text in line for line in lines) else None


async def test_v1_routes_tokens_and_the_control_websocket(node: Node, harness_images: images.TestImages) -> None:
    agent = node.agent
    assert agent is not None
    a, b = f"{node.prefix}-a", f"{node.prefix}-b"
    context = node.ssl(a)
    async with aiohttp.ClientSession() as http:

        async def get(path: str, token: str | None) -> tuple[int, Any]:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with http.get(node.url(path), headers=headers, ssl=context) as response:
                return response.status, await response.json(content_type=None)

        assert await get("/health/live", None) == (200, {"success": True, "data": {"status": "live"}})
        status, body = await get("/v1/microservices/config", node.token(a))
        assert (status, body["data"]["config"]) == (200, {"greeting": "hello", "n": 1})
        status, body = await get("/v1/microservices/config", node.token(b))
        assert (status, body["data"]["config"]) == (200, {"other": True})
        status, body = await get("/v1/microservices/config", None)
        assert (status, body["success"], body["error"]["code"]) == (401, False, "UNAUTHORIZED")
        # Forged: b's claims with a's signature; expired: a token minted two hours ago; not ours: another key.
        head, claims_a, sig_a = node.token(a).split(".")
        claims_b = node.token(b).split(".")[1]
        for bad in (f"{head}.{claims_b}.{sig_a}", _expired_token(node, a), "a.b.c", "not-a-jwt"):
            status, body = await get("/v1/microservices/config", bad)
            assert (status, body["error"]["code"]) == (401, "UNAUTHORIZED"), bad
        # A workload's token opens no admin route; the admin token does.
        status, body = await get("/v1/ms", node.token(a))
        assert (status, body["error"]["code"]) == (403, "FORBIDDEN")
        admin = node.paths.api_token_file.read_text().strip()
        status, body = await get("/v1/ms", admin)
        assert status == 200 and {a, b} <= {m["name"] for m in body["data"]["microservices"]}
        # The same port answers plain HTTP (the legacy SDK's default) for the probes and v2 only.
        async with http.get(node.url("/health/live", "http")) as response:
            assert response.status == 200
        async with http.get(node.url("/v1/ms", "http"), headers={"Authorization": f"Bearer {admin}"}) as response:
            body = await response.json()
            assert (response.status, body["error"]["code"]) == (403, "FORBIDDEN")
        # v2 with a's token asks for b's config: refused.
        async with http.post(
            node.url("/v2/config/get"),
            json={"id": b},
            headers={"Authorization": f"Bearer {node.token(a)}"},
            ssl=context,
        ) as response:
            assert response.status == 403
        async with http.post(
            node.url("/v2/config/get"),
            json={"id": a},
            headers={"Authorization": f"Bearer {node.token(a)}"},
            ssl=context,
        ) as response:
            assert response.status == 200
            assert json.loads((await response.json())["config"]) == {"greeting": "hello", "n": 1}

        # The control websocket: a signal on a's config change only, resent until acked, dropped when never acked.
        headers = {"Authorization": f"Bearer {node.token(a)}"}
        async with http.ws_connect(node.url("/v1/microservices/control", "wss"), headers=headers, ssl=context) as ws_a:
            async with http.ws_connect(
                node.url("/v1/microservices/control", "wss"),
                headers={"Authorization": f"Bearer {node.token(b)}"},
                ssl=context,
            ) as ws_b:
                await asyncio.sleep(0.2)
                await agent.apply(documents(harness_images, node.prefix, node.port, "hallo"))
                message = await ws_a.receive(timeout=5)
                assert (message.type, message.data) == (aiohttp.WSMsgType.BINARY, b"\x0c")
                # Not acked: sent again after the ack timeout.
                message = await ws_a.receive(timeout=5)
                assert message.data == b"\x0c"
                await ws_a.send_bytes(b"\x0b")
                with pytest.raises(asyncio.TimeoutError):
                    await ws_a.receive(timeout=1.5)
                with pytest.raises(asyncio.TimeoutError):
                    await ws_b.receive(timeout=0.2)
                status, body = await get("/v1/microservices/config", node.token(a))
                assert body["data"]["config"]["greeting"] == "hallo"
                # Never acked: three tries, then the socket is dropped.
                await agent.apply(documents(harness_images, node.prefix, node.port, "ciao"))
                received = []
                while True:
                    message = await ws_a.receive(timeout=5)
                    if message.type is not aiohttp.WSMsgType.BINARY:
                        break
                    received.append(message.data)
                assert received == [b"\x0c"] * 3
                assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        # The legacy websocket needs the workload's own token too.
        async with http.ws_connect(
            node.url(f"/v2/control/socket/id/{b}", "wss"),
            headers={"Authorization": f"Bearer {node.token(b)}"},
            ssl=context,
        ) as ws_legacy:
            await agent.apply(_with_b(harness_images, node))
            message = await ws_legacy.receive(timeout=5)
            assert message.data == b"\x0c"
            await ws_legacy.send_bytes(b"\x0b")
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(
                node.url(f"/v2/control/socket/id/{a}", "wss"),
                headers={"Authorization": f"Bearer {node.token(b)}"},
                ssl=context,
            )
        assert refused.value.status == 403
        metrics = await (await http.get(node.url("/metrics"), ssl=context)).text()
        assert "fogwire_device_api_config_signals_total" in metrics


def _with_b(test_images: images.TestImages, node: Node) -> list[dict[str, Any]]:
    docs = documents(test_images, node.prefix, node.port, "ciao")
    docs[1]["spec"]["microservices"][1]["config"] = {"other": False}
    return docs


def _expired_token(node: Node, name: str) -> str:
    from fogwire_device_api.identity import TokenIssuer

    issuer = TokenIssuer(node.paths.state_dir / "device-api" / "serviceaccount.key", "fogwire://device-api")
    return issuer.mint(name, now=time.time() - 7200)


ROUTER_CONFIG = {
    "listeners": {"ms-amqp": {"name": "ms-amqp", "host": "0.0.0.0", "port": 5672, "role": "normal"}},
    "connectors": {"up": {"name": "up", "role": "edge", "host": "hub", "port": "45671"}},
    "metadata": {"id": "r1", "mode": "edge", "helloMaxAgeSeconds": "3"},
}


def with_router(test_images: images.TestImages, node: Node, router_config: dict[str, Any]) -> list[dict[str, Any]]:
    docs = documents(test_images, node.prefix, node.port, "hello")
    docs[1]["spec"]["microservices"].append(
        {
            "name": f"{node.prefix}-router",
            "images": {"x86": test_images.ref_v1, "arm": test_images.ref_v1, "registry": 3},
            "container": {"commands": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]},
            "config": router_config,
        }
    )
    return docs


@pytest.mark.parametrize(
    ("api", "node"), [("v1", {}), ("v2", {"legacyAuth": "none"})], indirect=["node"], ids=["v1", "v2-open"]
)
async def test_the_router_wrappers_config_client_reads_and_follows_its_config_on_the_node(
    node: Node, harness_images: images.TestImages, api: str
) -> None:
    """fogwire's own pot/iofog client (what `fogwire router` runs in a router microservice) against the node.

    The v2 client sends no token and runs on the host here, not in the workload: it is
    answered with ``legacyAuth: none`` (the Java agent's rule); the default
    (``address``) answers tokenless v2 calls only from the workload's own address,
    shown from inside a container by the first test.
    """
    from fogwire_config_pot.source import LocalApiSource

    from fogwire.sources import SourceContext

    agent = node.agent
    assert agent is not None
    router = f"{node.prefix}-router"
    await agent.apply(with_router(harness_images, node, ROUTER_CONFIG))
    projected = node.projected / router
    source = LocalApiSource(
        SourceContext(
            node.paths.state_dir / "router-client",
            node.paths.run_dir,
            {"api": api, "ssl": True, "port": node.port, "token_path": str(projected / "token"), "attempts": 1},
            {"EDGELET_MICROSERVICE_UID": router},
        )
    )
    try:
        snapshot = await source.fetch()
        assert snapshot.payload == ROUTER_CONFIG
        changes = source.changes()
        first = asyncio.ensure_future(anext(changes))  # type: ignore[arg-type]
        await asyncio.sleep(1.0)  # the control socket is open
        changed = {**ROUTER_CONFIG, "metadata": {"id": "r1", "mode": "edge", "helloMaxAgeSeconds": "5"}}
        await agent.apply(with_router(harness_images, node, changed))
        await asyncio.wait_for(first, 10)
        assert (await source.fetch()).payload == changed
        await changes.aclose()  # type: ignore[attr-defined]
    finally:
        await source.close()
