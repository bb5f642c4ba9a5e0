"""The config source contract.

A config source delivers the configuration a consumer (the agent, or the router
wrapper) acts on: :meth:`ConfigSource.fetch` returns the whole current config, and
:meth:`ConfigSource.changes` notifies that it may have changed. A consumer always
re-fetches the whole config after a notification, so a missed or coalesced
notification loses nothing.
"""

from __future__ import annotations

import abc
import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import attrs


@attrs.frozen
class ConfigSnapshot:
    """One fetched configuration.

    ``payload`` is the parsed content (a list of YAML documents for the ``file``
    source, the router config object for ``pot``, the skrouterd list for
    ``kubernetes``); ``origin`` says where it came from (a path or URL) and is used
    in error messages; ``digest`` identifies the content so unchanged content can be
    skipped.
    """

    origin: str
    payload: Any
    digest: str

    @classmethod
    def of(cls, origin: str, payload: Any) -> ConfigSnapshot:
        """Make a snapshot, computing the digest from the payload's canonical JSON form."""
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
        return cls(origin, payload, "sha256:" + hashlib.sha256(canonical.encode()).hexdigest())


@attrs.frozen
class ChangeNotice:
    """The config may have changed; ``reason`` says why (for logs)."""

    reason: str


@attrs.frozen
class SourceContext:
    """What a consumer hands a config source at construction.

    ``options`` are the source's own settings (for ``file``: ``path``);
    ``environ`` is the environment to read variables from (tests pass their own).
    """

    state_dir: Path
    run_dir: Path
    options: Mapping[str, Any] = attrs.field(factory=dict)
    environ: Mapping[str, str] = attrs.field(factory=dict)


class ConfigSource(abc.ABC):
    """Base class of every config source plugin."""

    name: ClassVar[str] = ""

    def __init__(self, context: SourceContext) -> None:
        self.context = context

    @abc.abstractmethod
    async def fetch(self) -> ConfigSnapshot:
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

    async def close(self) -> None:  # noqa: B027 - optional hook with a default
        """Release resources. Default: nothing."""
