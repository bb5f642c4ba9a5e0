"""The controller source as its consumer sees it: notices, fetches, acks, durability, faults.

The test is the consumer: it iterates :meth:`changes` and calls :meth:`fetch` as the
agent does (the ack of a change is sent when the consumer asks for the next notice,
that is after it took the state), against the stand-in controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from ctllib import eventually, provision
from fogwire_config_controller import credentials
from fogwire_config_controller import source as source_module
from fogwire_config_controller.source import ControllerSource
from fogwire_config_controller.testing import StandInController

from fogwire.errors import SourceError
from fogwire.sources import ChangeNotice

IMAGE = "registry.example.com:5000/acme/web:1.0"


class Consumer:
    """Pulls notices from a source in a task and fetches after each, as the agent does."""

    def __init__(self, source: ControllerSource) -> None:
        self.source = source
        self.fetched: list[list[Any]] = []
        self.notices: list[ChangeNotice] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Consumer:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.source.close()

    async def _run(self) -> None:
        async for notice in self.source.changes():
            self.notices.append(notice)
            with contextlib.suppress(SourceError):
                self.fetched.append(list((await self.source.fetch()).payload))

    def microservices(self) -> dict[str, Any] | None:
        if not self.fetched:
            return None
        return {d["metadata"]["name"]: d["spec"] for d in self.fetched[-1] if d["kind"] == "Microservice"}


@pytest.fixture
async def consumer(
    controller: StandInController, make_source: Callable[..., ControllerSource], tmp_path: Path
) -> AsyncIterator[tuple[Consumer, str]]:
    node = await provision(controller, tmp_path)
    async with Consumer(make_source(controller.url)) as running:
        yield running, node


async def test_microservices_become_documents_and_the_change_is_acked_after(
    controller: StandInController, consumer: tuple[Consumer, str]
) -> None:
    running, node = consumer
    uuid = controller.deploy(
        node,
        x86=IMAGE,
        env=[{"key": "COUNT", "value": "3"}],
        portMappings=[{"portInternal": 80, "portExternal": 8080, "isUdp": None}],
        extraHosts=["db.local:10.0.0.7"],
        cmd=["--verbose"],
        config={"foo": "bar"},
        someFieldFromANewerController={"x": 1},
    )
    spec = await eventually(lambda: (running.microservices() or {}).get(uuid), "the microservice")
    assert spec["images"]["x86"] == IMAGE and spec["images"]["registry"] == 1
    assert spec["container"]["ports"] == [{"internal": 80, "external": 8080, "protocol": "tcp"}]
    assert spec["container"]["env"] == [{"key": "COUNT", "value": "3"}]
    assert spec["config"] == {"foo": "bar"}
    await eventually(lambda: controller.pending_changes(node) == [], "the change to be acknowledged")


async def test_a_failed_handler_withholds_the_ack_and_the_next_poll_retries(
    controller: StandInController, make_source: Callable[..., ControllerSource], tmp_path: Path
) -> None:
    node = await provision(controller, tmp_path)
    uuid = controller.deploy(node, x86=IMAGE)
    controller.fail("GET", "microservices", 500, {"name": "Error", "message": "db down"}, times=2)
    async with Consumer(make_source(controller.url)) as running:
        await eventually(lambda: controller.requests.count(("GET", "microservices")) >= 2, "two failed fetches")
        assert running.microservices() is None
        assert controller.pending_changes(node), "nothing acknowledged while the fetch fails"
        await eventually(lambda: uuid in (running.microservices() or {}), "the retried fetch")
        await eventually(lambda: controller.pending_changes(node) == [], "the ack after the retry")


async def test_a_rebuild_cleared_by_the_fetch_survives_a_crash_before_the_agent_acted(
    controller: StandInController, make_source: Callable[..., ControllerSource], tmp_path: Path
) -> None:
    node = await provision(controller, tmp_path)
    uuid = controller.deploy(node, x86=IMAGE)
    async with Consumer(make_source(controller.url)) as running:
        await eventually(lambda: uuid in (running.microservices() or {}), "the microservice")
        controller.update(uuid, env=[{"key": "A", "value": "1"}])
        await eventually(lambda: (running.microservices() or {})[uuid]["rebuild"], "the rebuild request")
    assert controller.microservices[uuid].rebuild is False, "the controller cleared it when serving it"
    # a new process on the same state dir, the controller gone: the request is still there
    await controller.stop()
    again = make_source(controller.url)
    try:
        documents = (await again.fetch()).payload
        assert [d["spec"]["rebuild"] for d in documents if d["kind"] == "Microservice"] == [True]
    finally:
        await again.close()


async def test_a_malformed_microservice_fails_alone_with_its_uuid_and_field_path(
    controller: StandInController, consumer: tuple[Consumer, str]
) -> None:
    running, node = consumer
    good = controller.deploy(node, x86=IMAGE)
    bad = controller.deploy(node, x86=IMAGE, portMappings=[{"portInternal": "eighty", "portExternal": 8080}])
    await eventually(lambda: good in (running.microservices() or {}), "the good microservice")
    assert bad not in (running.microservices() or {})
    rejected = running.source._rejected
    assert list(rejected) == [bad] and rejected[bad].startswith("portMappings[0].portInternal: ")


async def test_registry_passwords_never_reach_the_logs(
    controller: StandInController, consumer: tuple[Consumer, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    running, node = consumer
    rid = controller.add_registry("registry.example.com:5000", "acme", "s3cr3t-Pa55")
    uuid = controller.deploy(node, x86=IMAGE, registry_id=rid)
    await eventually(lambda: uuid in (running.microservices() or {}), "the microservice")
    controller.fail("GET", "registries", 500, {"name": "Error", "message": "boom"})
    controller.update(uuid, env=[{"key": "B", "value": "2"}])
    await eventually(lambda: (running.microservices() or {})[uuid]["container"].get("env"), "the change")
    assert "s3cr3t-Pa55" not in caplog.text


async def test_401_flaps_under_the_rule_never_deprovision(
    legacy_controller: StandInController, make_source: Callable[..., ControllerSource], tmp_path: Path
) -> None:
    node = await provision(legacy_controller, tmp_path)
    uuid = legacy_controller.deploy(node, x86=IMAGE)
    legacy_controller.fail(
        "GET", "config/changes", 401, {"name": "AuthenticationError", "message": "authorization failed"}, times=6
    )
    async with Consumer(make_source(legacy_controller.url, changeFrequency=1)) as running:
        # six 401s in a few seconds: fewer than 60 s apart, so the node stays provisioned
        await eventually(lambda: uuid in (running.microservices() or {}), "the fetch after the flaps", timeout=60)
    assert credentials.load(tmp_path) is not None


async def test_persistent_401s_deprovision_the_node(
    legacy_controller: StandInController,
    make_source: Callable[..., ControllerSource],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(source_module, "UNAUTHORIZED_SPAN_S", 2.0)  # edgelet's 60 s, shortened for the test
    node = await provision(legacy_controller, tmp_path)
    legacy_controller.deploy(node, x86=IMAGE)
    async with Consumer(make_source(legacy_controller.url)) as running:
        await eventually(lambda: running.microservices(), "the first fetch")
        legacy_controller.delete_node(node)  # node and token vanish: 401 from now on
        await eventually(lambda: running.microservices() == {}, "the empty desired state", timeout=60)
    assert credentials.load(tmp_path) is None


async def test_the_controller_down_at_start_then_up(
    controller: StandInController, make_source: Callable[..., ControllerSource], tmp_path: Path
) -> None:
    node = await provision(controller, tmp_path)
    uuid = controller.deploy(node, x86=IMAGE)
    await controller.stop()
    source = make_source(controller.url)
    with pytest.raises(SourceError, match="nothing fetched yet"):
        await source.fetch()
    async with Consumer(source) as running:
        await asyncio.sleep(1.5)
        await controller.start()
        await eventually(lambda: uuid in (running.microservices() or {}), "the fetch once the controller is up")


async def test_delete_node_and_config_flags(
    legacy_controller: StandInController, make_source: Callable[..., ControllerSource], tmp_path: Path
) -> None:
    node = await provision(legacy_controller, tmp_path)
    legacy_controller.deploy(node, x86=IMAGE)
    async with Consumer(make_source(legacy_controller.url)) as running:
        await eventually(lambda: running.microservices(), "the first fetch")
        legacy_controller.update_node_config(node, changeFrequency=2, statusFrequency=3)
        await eventually(
            lambda: running.source.change_s == 2.0 and running.source.status_s == 3.0, "the new frequencies"
        )
        legacy_controller.command(node, "deleteNode")
        await eventually(lambda: running.microservices() == {}, "the empty desired state")
    assert credentials.load(tmp_path) is None


async def test_the_router_system_microservice_is_a_normal_workload(
    controller: StandInController, consumer: tuple[Consumer, str]
) -> None:
    running, node = consumer
    router_config = {
        "mode": "edge",
        "id": node,
        "listeners": [{"role": "normal", "host": "0.0.0.0", "port": 5672}],
        "connectors": [{"name": "upstream", "role": "edge", "host": "10.0.0.1", "port": 56722}],
    }
    uuid = controller.deploy(
        node,
        x86="iofog/router:latest",
        arm="iofog/router:latest",
        registry_id=1,
        config=router_config,
        portMappings=[{"portInternal": 5672, "portExternal": 5672, "isUdp": False}],
        isRouter=True,
    )
    spec = await eventually(lambda: (running.microservices() or {}).get(uuid), "the router microservice")
    assert spec["images"] == {"x86": "iofog/router:latest", "arm": "iofog/router:latest", "registry": 1}
    assert spec["config"] == router_config  # kept for the on-device API the router wrapper reads
    assert spec["container"]["ports"] == [{"internal": 5672, "external": 5672, "protocol": "tcp"}]
