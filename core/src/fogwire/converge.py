"""Reload sinks that converge: a sink that failed is tried again, with backoff, until it succeeds.

The agent hands every new desired state to each of its reload sinks. A sink whose
apply raised, timed out or reported a failed item has not got that state, so it is
retried with exponential backoff (jittered, capped) until it reports success; a newer
desired state simply becomes what the next try applies. ``last_applied`` given to
a sink is always what *that sink* last applied successfully, never what it was only
offered. :meth:`SinkSet.status` is what ``fogwire status`` shows per sink.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import attrs

from fogwire.reconcile import bounded
from fogwire.sinks import Outcome, ReloadSink

log = logging.getLogger(__name__)

P = TypeVar("P")

EventRecorder = Callable[[str, str], Awaitable[None]]
"""``record(kind, detail)``: add an event to the agent's store."""


@attrs.define
class SinkSlot(Generic[P]):
    """One sink and where it stands: what it applied last, and its failures since."""

    sink: ReloadSink[P]
    name: str
    applied: P | None = None
    has_applied: bool = False
    failures: int = 0
    next_try: float = 0.0
    last_error: str | None = None


class SinkSet(Generic[P]):
    """The agent's reload sinks, each converging on the newest desired state on its own.

    :param timeout_s: how long one apply may take before it counts as failed.
    :param backoff_base_s: the delay after the first failure (doubles with each one).
    :param backoff_cap_s: the longest delay between two tries.
    """

    def __init__(
        self,
        sinks: Sequence[ReloadSink[P]],
        *,
        timeout_s: float = 30.0,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.slots = [SinkSlot(sink, getattr(sink, "name", "") or type(sink).__name__) for sink in sinks]
        self.timeout_s = timeout_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self._clock = clock

    def pending(self, desired: P) -> list[SinkSlot[P]]:
        """The sinks that have not applied ``desired`` yet."""
        return [s for s in self.slots if not (s.has_applied and s.applied == desired)]

    def next_due(self, desired: P) -> float | None:
        """Monotonic time the earliest pending sink may be tried again, if any is pending."""
        times = [s.next_try for s in self.pending(desired)]
        return min(times) if times else None

    async def converge(self, desired: P, record: EventRecorder) -> None:
        """Apply ``desired`` to every pending sink that is due; failures are retried later."""
        now = self._clock()
        for slot in self.pending(desired):
            if slot.next_try > now:
                continue
            error = await self._apply(slot, desired)
            if error is None:
                if slot.failures:
                    await record("sink-recovered", f"{slot.name}: applied after {slot.failures} failed tries")
                slot.applied, slot.has_applied = desired, True
                slot.failures, slot.next_try, slot.last_error = 0, 0.0, None
                continue
            slot.failures += 1
            delay = min(self.backoff_cap_s, self.backoff_base_s * 2 ** (slot.failures - 1)) * random.uniform(0.8, 1.2)
            slot.next_try = self._clock() + delay
            slot.last_error = error
            log.warning("reload sink %s failed (%s); retrying in %.1fs", slot.name, error, delay)
            await record("sink-failed", f"{slot.name}: {error} (retrying in {delay:.1f}s)")

    async def _apply(self, slot: SinkSlot[P], desired: P) -> str | None:
        """Apply to one sink; ``None`` on success, else why it failed."""
        try:
            report = await bounded(slot.sink.apply(desired, slot.applied if slot.has_applied else None), self.timeout_s)
        except TimeoutError:
            return f"timed out after {self.timeout_s:g}s"
        except Exception as error:  # one sink never stops the others
            return str(error) or type(error).__name__
        if report.ok:
            return None
        failed = [i for i in report.items if i.outcome in (Outcome.FAILED, Outcome.ROLLED_BACK)]
        return "; ".join(f"{i.key}: {i.outcome.value}" + (f": {i.detail}" if i.detail else "") for i in failed)

    def status(self, desired: P) -> list[dict[str, Any]]:
        """Each sink as ``fogwire status`` shows it: ``ok``, ``pending`` or ``retrying``, with the last error."""
        now = self._clock()
        rows = []
        for slot in self.slots:
            if slot.has_applied and slot.applied == desired:
                state = "ok"
            elif slot.failures:
                state = "retrying"
            else:
                state = "pending"
            rows.append(
                {
                    "name": slot.name,
                    "state": state,
                    "failures": slot.failures,
                    "lastError": slot.last_error,
                    "nextTryInS": round(max(0.0, slot.next_try - now), 1) if state == "retrying" else None,
                }
            )
        return rows
