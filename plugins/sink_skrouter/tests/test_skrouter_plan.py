"""The plan on its own: what a converge counts as drift, and how unchanged entities are skipped."""

from __future__ import annotations

from typing import Any

from fogwire_router.model import router_converter, structure_skrouterd_list
from fogwire_sink_skrouter.plan import plan_changes

CONVERTER = router_converter()


def config(*sections: Any) -> Any:
    return structure_skrouterd_list([["router", {"id": "r", "mode": "edge"}], *sections], "plan", CONVERTER)


def test_converge_ignores_numbers_the_router_fills_in_but_not_strings() -> None:
    desired = config(
        ["listener", {"name": "l", "port": "1"}], ["tcpListener", {"name": "t", "port": "2", "address": "a"}]
    )
    actual = config(
        ["listener", {"name": "l", "port": 1, "linkCapacity": 250, "maxSessionFrames": 10}],
        ["tcpListener", {"name": "t", "port": "2", "address": "a", "siteId": "stale"}],
    )
    plan = plan_changes(CONVERTER, actual, desired, converge=True)
    assert [(op.action, op.label) for op in plan.ops] == [("delete", "tcpListener/t"), ("create", "tcpListener/t")]
    strict = plan_changes(CONVERTER, actual, desired)
    assert ("delete", "listener/l") in [(op.action, op.label) for op in strict.ops]


def test_a_large_unchanged_config_plans_nothing() -> None:
    sections = [["tcpListener", {"name": f"t{i}", "port": str(1000 + i), "address": f"a{i}"}] for i in range(2000)]
    plan = plan_changes(CONVERTER, config(*sections), config(*sections))
    assert plan.ops == () and plan.restart == () and plan.unchanged == 2001
