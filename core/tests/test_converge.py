"""Reload sinks converge: a failed or timed-out sink is tried again, with backoff, until it succeeds."""

from __future__ import annotations

import asyncio

import pytest

from fogwire.converge import SinkSet
from fogwire.sinks import ApplyReport, ItemResult, Outcome, ReloadSink, SinkContext


class ScriptedSink(ReloadSink[str]):
    """A sink that answers each apply as its script says: ``ok``, ``raise``, ``hang`` or ``fail``."""

    name = "scripted"

    def __init__(self, script: list[str]) -> None:
        super().__init__(SinkContext(state_dir=None, run_dir=None))  # type: ignore[arg-type]
        self.script = script
        self.calls: list[tuple[str, str | None]] = []

    async def apply(self, desired: str, last_applied: str | None) -> ApplyReport:
        self.calls.append((desired, last_applied))
        step = self.script.pop(0) if self.script else "ok"
        if step == "raise":
            raise ConnectionError("router management unreachable")
        if step == "hang":
            await asyncio.sleep(10)
        if step == "fail":
            return ApplyReport(self.name, (ItemResult("tcpListener/a", "create", Outcome.FAILED, "port in use"),))
        return ApplyReport(self.name, (ItemResult("config", "update", Outcome.APPLIED),))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_failing_sink_is_retried_with_backoff_until_it_succeeds() -> None:
    events: list[tuple[str, str]] = []

    async def record(kind: str, detail: str) -> None:
        events.append((kind, detail))

    clock = Clock()
    sink = ScriptedSink(["raise", "hang", "fail"])
    sinks = SinkSet([sink], timeout_s=0.05, backoff_base_s=1.0, backoff_cap_s=60.0, clock=clock)

    await sinks.converge("v1", record)
    assert sinks.status("v1")[0]["state"] == "retrying"
    assert sinks.status("v1")[0]["lastError"] == "router management unreachable"
    first_due = sinks.next_due("v1")
    assert first_due is not None and 100.8 <= first_due <= 101.2

    await sinks.converge("v1", record)  # not due yet: not called
    assert len(sink.calls) == 1

    clock.now = first_due
    await sinks.converge("v1", record)  # times out
    assert sinks.status("v1")[0]["lastError"] == "timed out after 0.05s"
    second_due = sinks.next_due("v1")
    assert second_due is not None and clock.now + 1.6 <= second_due <= clock.now + 2.4  # doubled

    clock.now = second_due
    await sinks.converge("v2", record)  # a newer desired state is what the retry applies; the item fails
    assert sinks.status("v2")[0]["lastError"] == "tcpListener/a: failed: port in use"
    assert sinks.status("v2")[0]["failures"] == 3

    clock.now = sinks.next_due("v2") or 0.0
    await sinks.converge("v2", record)
    assert sinks.status("v2") == [
        {"name": "scripted", "state": "ok", "failures": 0, "lastError": None, "nextTryInS": None}
    ]
    # last_applied is what the sink last applied successfully: nothing, until it did.
    assert sink.calls == [("v1", None), ("v1", None), ("v2", None), ("v2", None)]
    assert sinks.next_due("v2") is None
    await sinks.converge("v3", record)
    assert sink.calls[-1] == ("v3", "v2")
    assert [kind for kind, _ in events] == ["sink-failed", "sink-failed", "sink-failed", "sink-recovered"]
    assert events[-1][1] == "scripted: applied after 3 failed tries"


async def test_one_failing_sink_never_stops_another() -> None:
    async def record(kind: str, detail: str) -> None:
        pass

    failing, fine = ScriptedSink(["raise"] * 5), ScriptedSink([])
    fine.name = "fine"  # type: ignore[misc]
    sinks = SinkSet([failing, fine], clock=Clock())
    await sinks.converge("v1", record)
    assert [row["state"] for row in sinks.status("v1")] == ["retrying", "ok"]
    assert fine.calls == [("v1", None)]


@pytest.mark.parametrize("cap", [3.0])
async def test_backoff_is_capped(cap: float) -> None:
    async def record(kind: str, detail: str) -> None:
        pass

    clock = Clock()
    sinks = SinkSet([ScriptedSink(["raise"] * 10)], backoff_base_s=1.0, backoff_cap_s=cap, clock=clock)
    for _ in range(6):
        clock.now = sinks.next_due("v1") or clock.now
        await sinks.converge("v1", record)
    due = sinks.next_due("v1")
    assert due is not None and due - clock.now <= cap * 1.2
