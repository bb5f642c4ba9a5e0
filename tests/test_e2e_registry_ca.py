"""A Registry with its own CA, end to end: the agent pulls through it on every engine, and refuses clearly without it.

The Registry document's ``requiresCert`` and ``certificate`` go through the converter
and the resolver to the engine: docker and podman get the CA through their certs.d
(written for the pull, gone after), containerd through fogwire's registry client.
Each test copies the image to a repository of its own first, so no engine holds it
and a workload can only come from the registry (no fallback to a local copy).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fogwire.engine import WorkloadState
from harness import agents, images

ENGINES = agents.installed_engines()


class Env(agents.AgentEnv):
    """One test's agent on one engine, and the image it pulls from the TLS registry."""

    def __init__(self, kind: str, tmp: Path, tls_image: images.TlsTestImage) -> None:
        super().__init__(kind, tmp, agent_prefix="ca", name_prefix="fwca")
        self.tls = tls_image

    def documents(self, name: str, image: str, *, with_ca: bool) -> list[dict[str, Any]]:
        microservice = {
            "name": name,
            "images": {"x86": image, "arm": image, "registry": 7},
            "container": {"commands": ["sleep", "3600"]},
        }
        return [
            self.tls.registry_document(7, with_ca=with_ca),
            {"apiVersion": "iofog.org/v3", "kind": "Application", "metadata": {"name": "ca"}, "spec": {
                "microservices": [microservice]
            }},
        ]  # fmt: skip


@pytest.fixture(params=ENGINES)
async def env(
    request: pytest.FixtureRequest, tmp_path: Path, harness_tls_image: images.TlsTestImage
) -> AsyncIterator[Env]:
    e = Env(request.param, tmp_path, harness_tls_image)
    yield e
    async with e.engine() as engine:
        for workload in await engine.list_managed():
            await engine.remove(workload.name)


def cert_dirs(server: str) -> list[Path]:
    return [root / server for root in images.DAEMON_CERTS_DIRS]


async def test_a_registry_with_its_own_ca_runs_its_microservice(env: Env) -> None:
    name = env.name("svc")
    image = env.tls.copy_to(f"{env.name_prefix}/busybox")
    async with agents.running(env.agent()) as agent:
        result = await agent.apply(env.documents(name, image, with_ca=True))
        assert [(a["action"], a["name"], a["ok"]) for a in result["actions"]] == [("create", name, True)], result
        status = await agent.status()
        assert next(m for m in status["microservices"] if m["name"] == name)["status"] == "running"
        assert [e for e in status["events"] if e["kind"] == "pull-fallback"] == []
    async with env.engine() as engine:
        info = await engine.inspect(name)
        assert info is not None and info.state is WorkloadState.RUNNING
        assert await engine.image_digest(image) == env.tls.config_digest
    for directory in cert_dirs(env.tls.registry):
        assert not directory.exists(), f"{directory} is left behind"


async def test_without_its_ca_the_pull_fails_saying_so(env: Env) -> None:
    name = env.name("noca")
    image = env.tls.copy_to(f"{env.name_prefix}/busybox")
    async with agents.running(env.agent()) as agent:
        result = await agent.apply(env.documents(name, image, with_ca=False))
        [action] = result["actions"]
        assert (action["action"], action["name"], action["ok"]) == ("create", name, False)
        detail = action["detail"]
        assert "certificate" in detail and env.tls.registry in detail and "requiresCert: true" in detail, detail
        assert env.tls.password not in detail
    async with env.engine() as engine:
        assert await engine.inspect(name) is None
        assert await engine.image_digest(image) is None
