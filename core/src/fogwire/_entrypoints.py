"""The one seam between fogwire and ``importlib.metadata``.

Everything that discovers installed plugins goes through :func:`find`; tests
replace it to fake entry points without installing distributions.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs


@attrs.frozen
class EntryPointRecord:
    """One entry point of one installed distribution."""

    group: str
    name: str
    value: str
    distribution: str
    version: str
    load: Callable[[], object] = attrs.field(eq=False, repr=False)


def find(group: str) -> list[EntryPointRecord]:
    """Every entry point in ``group`` across installed distributions, sorted by name."""
    import importlib_metadata

    records = []
    for entry_point in importlib_metadata.entry_points(group=group):
        dist = entry_point.dist
        records.append(
            EntryPointRecord(
                group=group,
                name=entry_point.name,
                value=entry_point.value,
                distribution=dist.name if dist is not None else "?",
                version=dist.version if dist is not None else "?",
                load=entry_point.load,
            )
        )
    return sorted(records, key=lambda r: (r.name, r.distribution))
