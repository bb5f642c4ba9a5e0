"""The reload sink contract.

A reload sink applies a new desired state to something that can change without a
restart (a router over AMQP management, a log), given the state it applied last,
and reports per item what it did. The consumer calls each sink in turn, each in its
own ``try``/timeout, so one failing sink never stops the others, and calls a sink that
failed again (with backoff) until it reports success.

A sink takes one :class:`~fogwire.payloads.PayloadKind` (declared when it
registers); ``ReloadSink[P]`` carries the payload's type.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import attrs

from fogwire._defaults import core_converter

if TYPE_CHECKING:
    import cattrs

P_contra = TypeVar("P_contra", contravariant=True)


class Outcome(enum.Enum):
    """What happened to one item of an apply."""

    APPLIED = "applied"
    UNCHANGED = "unchanged"
    FAILED = "failed"
    RESTART_NEEDED = "restart needed"
    ROLLED_BACK = "rolled back"


@attrs.frozen
class ItemResult:
    """The result for one item, e.g. key ``tcpListener/svc-listener``, action ``update``."""

    key: str
    action: str
    outcome: Outcome
    detail: str = ""


@attrs.frozen
class ApplyReport:
    """What a sink did in one apply."""

    sink: str
    items: tuple[ItemResult, ...] = ()

    @property
    def ok(self) -> bool:
        """True when no item failed or was rolled back."""
        return not any(i.outcome in (Outcome.FAILED, Outcome.ROLLED_BACK) for i in self.items)

    @property
    def restart_needed(self) -> bool:
        """True when some change can only take effect after a restart."""
        return any(i.outcome is Outcome.RESTART_NEEDED for i in self.items)


@attrs.frozen
class SinkContext:
    """What a consumer hands a reload sink at construction.

    ``options`` are plain data to structure with
    :func:`fogwire.convert.structure_options` on ``converter``, the consumer's one
    converter.
    """

    state_dir: Path
    run_dir: Path
    options: Mapping[str, Any] = attrs.field(factory=dict)
    environ: Mapping[str, str] = attrs.field(factory=dict)
    converter: cattrs.Converter = attrs.field(factory=core_converter, repr=False, eq=False)


class ReloadSink(abc.ABC, Generic[P_contra]):
    """Base class of every reload sink plugin; ``P_contra`` is the payload type it takes."""

    name: ClassVar[str] = ""

    def __init__(self, context: SinkContext) -> None:
        self.context = context

    @abc.abstractmethod
    async def apply(self, desired: P_contra, last_applied: P_contra | None) -> ApplyReport:
        """Apply ``desired`` given ``last_applied`` (``None`` on the first apply).

        Must not leave a partial apply behind: if an item fails, undo what this
        apply already did where the target allows it, and report it.
        """

    async def close(self) -> None:
        """Release resources. Default: nothing."""
