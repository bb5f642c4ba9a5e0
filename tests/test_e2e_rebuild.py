"""``rebuild: true`` end to end: re-pull and recreate once, on every installed engine plugin.

A fresh repository in the harness registry holds tag ``1``; between applies the
test re-points that tag at the other busybox image (``fogwire/busybox:2``, another
digest) with skopeo, the way a user pushes a new build under the same tag. Only a
rebuild may bring it in: the spec hash is unchanged, so a plain resync leaves the
workload alone. Each test checks the engine's actual workloads (id, start time,
image digest label), not only what the agent reports.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fogwire.agent import Agent, write_documents
from fogwire.engine import RegistryAuth, WorkloadInfo, WorkloadState
from fogwire.model.agent_config import PluginSelection
from fogwire.resolve import DIGEST_LABEL
from harness import agents, images, services

ENGINES = agents.installed_engines()

SLEEP = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]


class Env(agents.AgentEnv):
    """One test's agent set-up: a file source, a fresh repository, engine access."""

    agent_defaults = {**agents.AgentEnv.agent_defaults, "rollback_grace_s": 1.0}

    def __init__(self, kind: str, tmp: Path, test_images: images.TestImages) -> None:
        super().__init__(kind, tmp, agent_prefix="rb", name_prefix="fwrb")
        self.images = test_images
        self.desired_file = tmp / "desired.yaml"
        self.repository = f"{test_images.registry}/rebuild-{self.id}"
        self.references: set[str] = set()

    def ref(self, short: str) -> str:
        return f"{self.repository}/{short}:1"

    def point(self, reference: str, tag: str) -> None:
        """Make ``reference`` name the harness image ``fogwire/busybox:<tag>`` in the registry."""
        self.references.add(reference)
        creds = f"{self.images.username}:{self.images.password}"
        done = subprocess.run(
            ["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
             "--src-creds", creds, "--dest-creds", creds,
             f"docker://{self.images.repository}:{tag}", f"docker://{reference}"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

    def forget_images(self) -> None:
        """Untag this test's references in the engine's store (the engines are shared by every test)."""
        if self.kind == "docker":
            cli = ["docker", "-H", self.url, "rmi"]
        elif self.kind == "podman":
            cli = ["podman", *services.start_podman().cli_args, "rmi"]
        else:
            cli = ["ctr", "-a", services.start_containerd().address, "-n", "fogwire", "images", "rm"]
        names = sorted(self.references)
        if self.kind == "docker":  # a re-pointed tag leaves the old image under its repository digest
            listed = subprocess.run(
                [*cli[:-1], "images", "--digests", "--format", "{{.Repository}}@{{.Digest}}",
                 "--filter", f"reference={self.repository}/*"],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            names += [line for line in listed.stdout.split() if "@sha256:" in line]
        if names:
            subprocess.run([*cli, *names], capture_output=True, timeout=120, check=False)

    def agent(self, **kwargs: Any) -> Agent:
        """An agent reading its desired state from :attr:`desired_file`."""
        profile = self.profile(config_source=PluginSelection("file", {"path": str(self.desired_file)}))
        return super().agent(profile=profile, **kwargs)

    def documents(self, microservices: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            self.images.registry_document(),
            {
                "apiVersion": "iofog.org/v3",
                "kind": "Application",
                "metadata": {"name": "app"},
                "spec": {"microservices": microservices},
            },
        ]


def microservice(name: str, image: str, rebuild: bool, registry: int | str = 3) -> dict[str, Any]:
    return {
        "name": name,
        "images": {"x86": image, "arm": image, "registry": registry},
        "container": {"commands": SLEEP},
        "rebuild": rebuild,
    }


@pytest.fixture(params=ENGINES)
async def env(request: pytest.FixtureRequest, tmp_path: Path, harness_images: images.TestImages) -> AsyncIterator[Env]:
    e = Env(request.param, tmp_path, harness_images)
    yield e
    async with e.engine() as engine:
        for w in await engine.list_managed():
            await engine.remove(w.name)
    e.forget_images()


def identity(w: WorkloadInfo) -> tuple[str, Any]:
    """What tells one container from its replacement (containerd's ids are the names)."""
    return (w.id, w.started_at)


def actions(result: dict[str, Any]) -> list[tuple[str, str, bool, str]]:
    return sorted((a["action"], a["name"], a["ok"], a["reason"]) for a in result["actions"])


async def rebuilds_in_events(agent: Agent, name: str) -> int:
    """How many rebuilds of ``name`` the event log records."""
    assert agent.store is not None
    events = await agent.store.call(agent.store.events, 1000, name)
    return sum(e.kind == "replaced" and "rebuild requested" in e.message for e in events)


async def test_rebuild_repulls_recreates_once_and_again_after_a_toggle(env: Env) -> None:
    web, cached = env.name("web"), env.name("cached")
    ref, cached_ref = env.ref("web"), env.ref("cached")
    env.point(ref, "1")
    env.point(cached_ref, "1")
    # ``cached`` runs from registry ``local``: its image must be present and is never pulled.
    async with env.engine() as engine:
        auth = RegistryAuth(env.images.registry, env.images.username, env.images.password, insecure=True)
        await engine.obtain_image(cached_ref, auth)

    def state(rebuild: bool) -> list[dict[str, Any]]:
        return env.documents(
            [microservice(web, ref, rebuild), microservice(cached, cached_ref, rebuild, registry="local")]
        )

    v1, v2 = env.images.config_digest_v1, env.images.config_digest_v2
    async with agents.running(env.agent()) as agent:
        result = await agent.apply(state(False))
        assert [(a["action"], a["ok"]) for a in result["actions"]] == [("create", True)] * 2
        first = await env.actual()
        assert first[web].labels[DIGEST_LABEL] == v1

        # A new build is pushed under the same tag: a resync alone changes nothing.
        env.point(ref, "2")
        env.point(cached_ref, "2")
        quiet = await agent.reconcile_now(changed=True)
        assert (quiet.plan.actions, quiet.engine_writes) == ((), 0)

        plan = await agent.plan(state(True))
        assert sorted((a.kind, a.name, a.reason) for a in plan.actions) == [
            ("replace", cached, "rebuild requested"),
            ("replace", web, "rebuild requested"),
        ]
        result = await agent.apply(state(True))
        assert actions(result) == [
            ("replace", cached, True, "rebuild requested"),
            ("replace", web, True, "rebuild requested"),
        ]
        second = await env.actual()
        assert identity(second[web]) != identity(first[web])
        assert identity(second[cached]) != identity(first[cached])
        assert second[web].labels[DIGEST_LABEL] == v2  # re-pulled with the registry's credentials
        assert second[cached].labels[DIGEST_LABEL] == v1  # recreated from the local image, not pulled
        assert {second[web].state, second[cached].state} == {WorkloadState.RUNNING}

        # rebuild: true stays in the file: resyncs and changed passes don't rebuild again.
        for changed in (True, False, True):
            again = await agent.reconcile_now(changed=changed)
            assert (again.plan.actions, again.engine_writes) == ((), 0)
        assert await rebuilds_in_events(agent, web) == 1

    # A restart with the same file: nothing to do.
    async with agents.running(env.agent()) as agent:
        again = await agent.reconcile_now(changed=True)
        assert (again.plan.actions, again.engine_writes) == ((), 0)
        assert {n: identity(w) for n, w in (await env.actual()).items()} == {n: identity(w) for n, w in second.items()}

        # false is not a spec change; true again is a new request, carried out once.
        env.point(ref, "1")
        result = await agent.apply(state(False))
        assert result["actions"] == []
        result = await agent.apply(state(True))
        assert actions(result) == [
            ("replace", cached, True, "rebuild requested"),
            ("replace", web, True, "rebuild requested"),
        ]
        third = await env.actual()
        assert identity(third[web]) != identity(second[web])
        assert third[web].labels[DIGEST_LABEL] == v1
        again = await agent.reconcile_now(changed=True)
        assert again.plan.actions == ()
        assert await rebuilds_in_events(agent, web) == 2

    async with agents.running(env.agent()) as agent:
        again = await agent.reconcile_now(changed=True)
        assert (again.plan.actions, again.engine_writes) == ((), 0)
    assert identity((await env.actual())[web]) == identity(third[web])


async def test_a_request_cut_short_is_carried_out_after_a_restart(env: Env) -> None:
    # A controller serves rebuild: true once; the agent records the request and dies
    # before its pass. The next delivery says false, yet the request is carried out, once.
    web = env.name("web")
    ref = env.ref("web")
    env.point(ref, "1")
    async with agents.running(env.agent()) as agent:
        await agent.apply(env.documents([microservice(web, ref, False)]))
    before = (await env.actual())[web]
    env.point(ref, "2")

    write_documents(env.desired_file, env.documents([microservice(web, ref, True)]))
    delivered = env.agent()
    async with delivered.session():  # loads the file, runs no pass
        assert delivered.reconciler is not None
        assert delivered.reconciler.rebuilds[web].requested is not None
    assert identity((await env.actual())[web]) == identity(before)

    write_documents(env.desired_file, env.documents([microservice(web, ref, False)]))
    async with agents.running(env.agent()) as agent:
        await agent.reconcile_now(changed=True)
        after = (await env.actual())[web]
        assert identity(after) != identity(before)
        assert after.labels[DIGEST_LABEL] == env.images.config_digest_v2
        assert after.state is WorkloadState.RUNNING
        assert await rebuilds_in_events(agent, web) == 1
        again = await agent.reconcile_now(changed=True)
        assert again.plan.actions == ()
    async with agents.running(env.agent()) as agent:
        again = await agent.reconcile_now(changed=True)
        assert (again.plan.actions, again.engine_writes) == ((), 0)
    assert identity((await env.actual())[web]) == identity(after)


async def test_a_request_retries_a_failed_microservice(env: Env) -> None:
    # The image was missing, so the microservice failed and waits for a change. The user
    # pushes it and presses "rebuild": not a spec change, yet it is tried again, once.
    late = env.name("late")
    ref = env.ref("late")
    async with agents.running(env.agent(max_failures=2)) as agent:
        await agent.apply(env.documents([microservice(late, ref, False)]))
        deadline = asyncio.get_running_loop().time() + 20
        while agent.reconciler is not None and agent.reconciler.records[late].status != "failed":
            assert asyncio.get_running_loop().time() < deadline, "never marked failed"
            await asyncio.sleep(0.2)
        env.point(ref, "1")
        waiting = await agent.reconcile_now(changed=True)
        assert late in waiting.plan.deferred
        result = await agent.apply(env.documents([microservice(late, ref, True)]))
        assert [(a["action"], a["name"], a["ok"]) for a in result["actions"]] == [("create", late, True)]
        assert (await env.actual())[late].state is WorkloadState.RUNNING
        again = await agent.reconcile_now(changed=True)
        assert (again.plan.actions, again.engine_writes) == ((), 0)
