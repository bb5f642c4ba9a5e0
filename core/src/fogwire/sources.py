"""The config source contract.

A config source delivers the configuration a consumer (the agent, or a program such
as the router wrapper) acts on: :meth:`ConfigSource.fetch` returns the whole current
config, and :meth:`ConfigSource.changes` notifies that it may have changed. A
consumer always re-fetches the whole config after a notification, so a missed or
coalesced notification loses nothing.

A source produces one :class:`~fogwire.payloads.PayloadKind` (declared when it
registers); ``ConfigSource[P]`` and ``ConfigSnapshot[P]`` carry the payload's type.
"""

from __future__ import annotations

import abc
import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import attrs

from fogwire._defaults import core_converter
from fogwire.payloads import JSONValue

if TYPE_CHECKING:
    import cattrs

    from fogwire.services import AgentHandle

P = TypeVar("P")
P_co = TypeVar("P_co", covariant=True)


@attrs.frozen
class ConfigSnapshot(Generic[P]):
    """One fetched configuration.

    ``payload`` is the content, of the kind the source produces (the parsed YAML
    documents for the ``file`` source); ``origin`` says where it came from (a path or
    URL) and is used in error messages; ``digest`` identifies the content so
    unchanged content can be skipped.
    """

    origin: str
    payload: P
    digest: str

    @classmethod
    def of(cls, origin: str, payload: P, raw: JSONValue | None = None) -> ConfigSnapshot[P]:
        """Make a snapshot; the digest is of ``raw`` (default: ``payload``) in canonical JSON form.

        Pass ``raw`` when the payload is an object made from plain data (a parsed
        model): the plain data it came from identifies it.
        """
        return cls(origin, payload, digest_of(payload if raw is None else raw))


def digest_of(data: Any) -> str:
    """``sha256:<hex>`` of ``data``'s canonical JSON form (sorted keys, no spaces)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


@attrs.frozen
class ChangeNotice:
    """The config may have changed; ``reason`` says why (for logs)."""

    reason: str


@attrs.frozen
class SourceContext:
    """What a consumer hands a config source at construction.

    ``options`` are the source's own settings (for ``file``: ``path``), plain data to
    structure with :func:`fogwire.convert.structure_options` on ``converter`` (the
    consumer's one converter); ``environ`` is the environment to read variables from
    (tests pass their own). ``profile`` is the consumer's own settings as plain data
    with camelCase keys (the agent's current profile: ``controllerUrl``, ``arch``, …),
    for a source that serves one consumer and reads its settings.
    """

    state_dir: Path
    run_dir: Path
    options: Mapping[str, Any] = attrs.field(factory=dict)
    environ: Mapping[str, str] = attrs.field(factory=dict)
    profile: Mapping[str, Any] = attrs.field(factory=dict)
    converter: cattrs.Converter = attrs.field(factory=core_converter, repr=False, eq=False)


class ConfigSource(abc.ABC, Generic[P_co]):
    """Base class of every config source plugin; ``P_co`` is the payload type it produces."""

    name: ClassVar[str] = ""

    def __init__(self, context: SourceContext) -> None:
        self.context = context

    @abc.abstractmethod
    async def fetch(self) -> ConfigSnapshot[P_co]:
        """Return the whole current configuration.

        Raises :class:`~fogwire.errors.SourceError` when it cannot be had (the
        consumer then keeps running on the last good config).
        """

    @abc.abstractmethod
    def changes(self) -> AsyncIterator[ChangeNotice]:
        """Yield a notice each time the configuration may have changed, until cancelled.

        Implementations reconnect on their own after transport errors and yield a
        notice after every reconnect, so no update is missed while disconnected.
        """

    async def serve(self, agent: AgentHandle) -> None:
        """Work the source does for the agent while it runs, beside delivering config; default: none.

        The agent runs it once its parts are up, as it runs an agent service (an
        exception is logged and recorded, and it runs again after a backoff). The
        controller source reports the node's status through it. Consumers other
        than the agent never call it.
        """

    async def close(self) -> None:
        """Release resources. Default: nothing."""
