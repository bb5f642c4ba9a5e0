"""``rebuild: true``: one request, carried out once, recorded in the store (no engine involved).

The planning half of the reconciler is pure: it compares a desired state with a
list of workloads (plain :class:`~fogwire.engine.WorkloadInfo` values here) and the
records in a real SQLite store. The engine is a guard that fails the test if the
planner touches it. Carrying a rebuild out against real engines is in
``tests/test_e2e_rebuild.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from fogwire.convert import make_converter
from fogwire.engine import WorkloadInfo, WorkloadState
from fogwire.model.desired import DesiredState, assemble
from fogwire.reconcile import Reconciler
from fogwire.resolve import CONFIG_HASH_LABEL, rebuild_request, resolve
from fogwire.store import MicroserviceRecord, RebuildRecord, Store


class NoEngine:
    """Stands where the engine goes; planning must never use it."""

    def __getattr__(self, name: str) -> NoReturn:
        raise AssertionError(f"planning touched the engine ({name})")


def state(rebuild: bool | None, *, env: str = "1", name: str = "web") -> DesiredState:
    spec: dict[str, Any] = {
        "name": name,
        "images": {"x86": "reg.example/img:1", "arm": "reg.example/img:1"},
        "container": {"env": [{"key": "E", "value": env}]},
    }
    if rebuild is not None:
        spec["rebuild"] = rebuild
    doc = {"apiVersion": "iofog.org/v3", "kind": "Application", "metadata": {"name": "app"}, "spec": {}}
    doc["spec"]["microservices"] = [spec]
    return assemble(make_converter(), [doc], "test.yaml")


def running(desired: DesiredState, name: str = "web", state: WorkloadState = WorkloadState.RUNNING) -> WorkloadInfo:
    """The workload a previous pass made for ``desired``: its config-hash label matches."""
    r = resolve(desired.microservices[name], desired, "amd64")
    return WorkloadInfo(name, f"id-{name}", r.spec.image, state, labels={CONFIG_HASH_LABEL: r.config_hash})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "state.db")
    yield s
    s.close()


async def reconciler(store: Store) -> Reconciler:
    """A reconciler as an agent (re)start makes it: records loaded from the store."""
    r = Reconciler(NoEngine(), store, arch="amd64")  # type: ignore[arg-type]
    await r.load()
    return r


def plan_of(r: Reconciler, desired: DesiredState, actual: list[WorkloadInfo]) -> list[tuple[str, str, str]]:
    plan = r.compute_plan(desired, actual, now=0.0)
    return [(a.kind, a.name, a.reason) for a in plan.actions]


def test_rebuild_is_not_part_of_the_config_hash() -> None:
    hashes = set()
    for flag in (None, False, True):
        desired = state(flag)
        hashes.add(resolve(desired.microservices["web"], desired, "amd64").config_hash)
    assert len(hashes) == 1


def test_a_request_is_the_microservice_as_delivered() -> None:
    assert rebuild_request(state(False).microservices["web"]) is None
    assert rebuild_request(state(None).microservices["web"]) is None
    first = rebuild_request(state(True).microservices["web"])
    assert first is not None and first.startswith("sha256:")
    assert rebuild_request(state(True).microservices["web"]) == first
    assert rebuild_request(state(True, env="2").microservices["web"]) not in (None, first)
    assert rebuild_request(state(True, name="api").microservices["api"]) not in (None, first)


async def test_plan_shows_a_rebuild_as_a_replace_and_a_resync_without_it_as_nothing(store: Store) -> None:
    r = await reconciler(store)
    plain, rebuild = state(False), state(True)
    assert plan_of(r, plain, [running(plain)]) == []
    assert plan_of(r, rebuild, [running(plain)]) == [("replace", "web", "rebuild requested")]
    # Planning records nothing: a plan is not a delivery.
    assert await store.call(store.rebuilds) == {}


async def test_a_recorded_request_survives_a_restart_until_done(store: Store) -> None:
    rebuild = state(True)
    r = await reconciler(store)
    assert await r.note_desired(rebuild) == ["web"]
    assert await r.note_desired(rebuild) == []  # the same delivery again is not a new request
    request = rebuild_request(rebuild.microservices["web"])
    assert await store.call(store.rebuilds) == {"web": RebuildRecord("web", requested=request)}
    kinds = [e.kind for e in await store.call(store.events)]
    assert kinds.count("rebuild-requested") == 1

    # Killed before the rebuild finished: the restarted agent still owes it.
    again = await reconciler(store)
    assert plan_of(again, rebuild, [running(rebuild)]) == [("replace", "web", "rebuild requested")]
    actions = again.compute_plan(rebuild, [running(rebuild)], now=0.0).actions
    assert actions[0].rebuild == request

    # Done (the outcome and the mark are written together): never again for this delivery.
    await store.call(store.put, MicroserviceRecord("web", status="running"), RebuildRecord("web", done=request))
    after = await reconciler(store)
    assert plan_of(after, rebuild, [running(rebuild)]) == []
    assert await after.note_desired(rebuild) == []
    assert (await store.call(store.records))["web"].status == "running"


async def test_false_then_true_again_is_a_new_request(store: Store) -> None:
    rebuild, plain = state(True), state(False)
    request = rebuild_request(rebuild.microservices["web"])
    await store.call(store.put, MicroserviceRecord("web"), RebuildRecord("web", done=request))
    r = await reconciler(store)
    assert plan_of(r, rebuild, [running(rebuild)]) == []
    assert await r.note_desired(plain) == []
    assert await store.call(store.rebuilds) == {"web": RebuildRecord("web")}
    assert plan_of(r, rebuild, [running(rebuild)]) == [("replace", "web", "rebuild requested")]
    assert await r.note_desired(rebuild) == ["web"]


async def test_a_one_shot_request_stays_pending_when_the_next_delivery_says_false(store: Store) -> None:
    # A controller serves rebuild: true once; the next fetch says false. The request stands.
    r = await reconciler(store)
    assert await r.note_desired(state(True)) == ["web"]
    assert await r.note_desired(state(False)) == []
    plain = state(False)
    assert plan_of(r, plain, [running(plain)]) == [("replace", "web", "rebuild requested")]


async def test_a_changed_spec_still_saying_true_is_one_replace_carrying_the_request(store: Store) -> None:
    r = await reconciler(store)
    old, new = state(True), state(True, env="2")
    request = rebuild_request(old.microservices["web"])
    await store.call(store.put, MicroserviceRecord("web"), RebuildRecord("web", done=request))
    r = await reconciler(store)
    actions = r.compute_plan(new, [running(old)], now=0.0).actions
    assert [(a.kind, a.reason.endswith("; rebuild requested")) for a in actions] == [("replace", True)]
    assert actions[0].rebuild == rebuild_request(new.microservices["web"])


async def test_a_pending_request_recreates_instead_of_starting_or_creating(store: Store) -> None:
    r = await reconciler(store)
    rebuild = state(True)
    await r.note_desired(rebuild)
    exited = running(rebuild, state=WorkloadState.EXITED)
    assert plan_of(r, rebuild, [exited]) == [("replace", "web", "rebuild requested")]
    (create,) = r.compute_plan(rebuild, [], now=0.0).actions
    assert (create.kind, create.rebuild) == ("create", rebuild_request(rebuild.microservices["web"]))


async def test_a_request_overrides_a_rejected_spec(store: Store) -> None:
    # After a rollback the rejected hash is left alone by every pass, unless the user asks for a rebuild.
    rebuild = state(True)
    config = resolve(rebuild.microservices["web"], rebuild, "amd64").config_hash
    await store.call(store.put, MicroserviceRecord("web", config_hash=config, rejected_hash=config))
    r = await reconciler(store)
    plain = state(False)
    assert plan_of(r, plain, [running(plain)]) == []
    assert plan_of(r, rebuild, [running(rebuild)]) == [("replace", "web", "rebuild requested")]


async def test_a_forgotten_microservice_forgets_its_requests(store: Store) -> None:
    r = await reconciler(store)
    await r.note_desired(state(True))
    await store.call(store.forget, ["web"])
    assert await store.call(store.rebuilds) == {}


def test_a_state_file_without_the_rebuilds_table_gains_it(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    old = Store.open(path)
    old._execute("DROP TABLE rebuilds")
    old.put(MicroserviceRecord("web", status="running"))
    old.close()
    reopened = Store.open(path)
    try:
        assert reopened.rebuilds() == {}
        reopened.put_rebuild(RebuildRecord("web", requested="sha256:x"))
        assert reopened.rebuilds() == {"web": RebuildRecord("web", requested="sha256:x")}
        assert reopened.records()["web"].status == "running"
    finally:
        reopened.close()


async def test_resolving_is_reused_for_the_same_desired_state_only(store: Store) -> None:
    r = await reconciler(store)
    desired = state(False)
    first, _ = r.resolve_all(desired)
    again, _ = r.resolve_all(desired)
    assert again["web"] is first["web"], "the same desired state is not resolved twice"
    changed = state(False, env="2")
    fresh, _ = r.resolve_all(changed)
    assert fresh["web"] is not first["web"]
    assert fresh["web"].config_hash != first["web"].config_hash
    again["web"] = None  # type: ignore[assignment]  # callers get copies: the cache stays whole
    assert r.resolve_all(changed)[0]["web"] is fresh["web"]


async def test_only_the_failed_microservices_are_resolved_again_until_they_are_mended(
    store: Store, tmp_path: Path
) -> None:
    """One microservice waiting for a CDI spec file costs the others no new resolution each pass."""
    spec_dir = tmp_path / "cdi"
    r = Reconciler(NoEngine(), store, arch="amd64", cdi_spec_dirs=(str(spec_dir),))  # type: ignore[arg-type]
    await r.load()
    doc = {
        "apiVersion": "iofog.org/v3",
        "kind": "Application",
        "metadata": {"name": "app"},
        "spec": {
            "microservices": [
                {"name": "web", "images": {"x86": "reg.example/img:1", "arm": "reg.example/img:1"}},
                {
                    "name": "gpu",
                    "images": {"x86": "reg.example/img:1", "arm": "reg.example/img:1"},
                    "container": {"cdiDevices": ["vendor.example/gpu=0"]},
                },
            ]
        },
    }
    desired = assemble(make_converter(), [doc], "test.yaml")
    first, problems = r.resolve_all(desired)
    assert set(first) == {"web"} and "no CDI device" in problems["gpu"]
    again, problems = r.resolve_all(desired)
    assert again["web"] is first["web"], "a problem elsewhere does not make the good ones resolve again"
    assert set(problems) == {"gpu"}
    spec_dir.mkdir()
    (spec_dir / "gpu.json").write_text(
        '{"cdiVersion": "0.6.0", "kind": "vendor.example/gpu", "devices": [{"name": "0", "containerEdits": '
        '{"env": ["GPU=0"]}}]}'
    )
    mended, problems = r.resolve_all(desired)
    assert problems == {}
    assert mended["web"] is first["web"]
    assert mended["gpu"].spec.env == {"GPU": "0"}
    assert r.resolve_all(desired)[0]["gpu"] is mended["gpu"], "once nothing fails, the whole result is reused"
