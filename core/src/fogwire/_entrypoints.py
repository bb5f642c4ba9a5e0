"""The one seam between fogwire and ``importlib.metadata``.

Everything that discovers installed plugins goes through :func:`find`; tests
replace it to fake entry points without installing distributions.

:func:`find` reads ``entry_points.txt`` and the ``Name``/``Version`` headers of
the ``*.dist-info`` / ``*.egg-info`` directories on ``sys.path`` itself, the way
``importlib.metadata``'s path finder does (same order, the first distribution of a
name wins). It does so because ``importlib_metadata`` imports ``email``,
``zipfile`` and ``zipp`` (about 2.5 MiB of the idle daemon's RSS) only to read
two header lines. Whenever that short path could differ from ``importlib.metadata``
(a zip archive on ``sys.path``, an import hook that provides distributions),
:func:`find` asks ``importlib_metadata`` instead.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable, Mapping


class EntryPointRecord:
    """One entry point of one installed distribution.

    A plain class, not attrs: ``fogwire --help`` reads entry points to list the
    commands distributions add, and must not pay for importing attrs.
    """

    __slots__ = ("distribution", "group", "load", "name", "value", "version")

    def __init__(
        self, group: str, name: str, value: str, distribution: str, version: str, load: Callable[[], object]
    ) -> None:
        self.group = group
        self.name = name
        self.value = value
        self.distribution = distribution
        self.version = version
        self.load = load

    def _key(self) -> tuple[str, str, str, str, str]:
        return (self.group, self.name, self.value, self.distribution, self.version)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EntryPointRecord) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"EntryPointRecord(group={self.group!r}, name={self.name!r}, value={self.value!r}, "
            f"distribution={self.distribution!r}, version={self.version!r})"
        )


class LoadPolicy:
    """The environment's say on which plugins load (a plain class for the same reason)."""

    __slots__ = ("allowed", "disabled", "strict")

    def __init__(
        self, disabled: frozenset[str] = frozenset(), allowed: frozenset[str] | None = None, strict: bool = False
    ) -> None:
        self.disabled = disabled
        self.allowed = allowed
        self.strict = strict

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LoadPolicy) and (self.disabled, self.allowed, self.strict) == (
            other.disabled,
            other.allowed,
            other.strict,
        )

    def __hash__(self) -> int:
        return hash((self.disabled, self.allowed, self.strict))

    def __repr__(self) -> str:
        return f"LoadPolicy(disabled={self.disabled!r}, allowed={self.allowed!r}, strict={self.strict!r})"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> LoadPolicy:
        """Read ``FOGWIRE_DISABLE_PLUGINS``, ``FOGWIRE_LOAD_PLUGINS`` and ``FOGWIRE_STRICT_PLUGINS``."""

        def names(key: str) -> frozenset[str]:
            return frozenset(n.strip() for n in environ.get(key, "").split(",") if n.strip())

        allowed = names("FOGWIRE_LOAD_PLUGINS") if "FOGWIRE_LOAD_PLUGINS" in environ else None
        strict = environ.get("FOGWIRE_STRICT_PLUGINS", "").lower() in ("1", "true", "yes")
        return cls(names("FOGWIRE_DISABLE_PLUGINS"), allowed, strict)

    def refusal(self, record: EntryPointRecord) -> str | None:
        """Why ``record`` may not load, or ``None`` if it may."""
        keys = {record.name, record.distribution}
        if keys & self.disabled:
            return "disabled by FOGWIRE_DISABLE_PLUGINS"
        if self.allowed is not None and not keys & self.allowed:
            return "not in FOGWIRE_LOAD_PLUGINS"
        return None


def find(group: str) -> list[EntryPointRecord]:
    """Every entry point in ``group`` across installed distributions, sorted by name."""
    records = _scan(group)
    if records is None:
        records = _find_with_importlib_metadata(group)
    return sorted(records, key=lambda r: (r.name, r.distribution))


def _find_with_importlib_metadata(group: str) -> list[EntryPointRecord]:
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
    return records


_VALUE = re.compile(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$")
"""An entry point's value, as ``importlib.metadata.EntryPoint.pattern`` reads it."""


def _scan(group: str) -> list[EntryPointRecord] | None:
    """The entry points of ``group`` from the metadata directories on ``sys.path``.

    ``None`` when something on ``sys.path`` or ``sys.meta_path`` needs ``importlib.metadata``.
    """
    from importlib.machinery import PathFinder

    for finder in sys.meta_path:
        if getattr(finder, "find_distributions", None) is None or finder is PathFinder:
            continue
        if getattr(finder, "__module__", None) == "importlib_metadata":
            continue  # importlib_metadata's own path finder (added when it is imported) reads what we read
        return None
    seen: set[str] = set()
    records: list[EntryPointRecord] = []
    for entry in sys.path:
        root = entry or "."
        if not os.path.isdir(root):
            if os.path.exists(root):
                return None  # a zip archive: importlib_metadata reads those
            continue
        if root.lower().endswith(".egg"):
            return None  # an unpacked egg: its metadata is in EGG-INFO, leave it to importlib_metadata
        try:
            children = os.listdir(root)
        except OSError:
            continue
        infos: list[tuple[str, str]] = []
        for child in children:
            low = child.lower()
            if low.endswith((".dist-info", ".egg-info")):
                infos.append((_normalize(low.rpartition(".")[0].partition("-")[0]), os.path.join(root, child)))
        for normalized, path in infos:
            if normalized in seen:
                continue
            seen.add(normalized)
            text = _read(os.path.join(path, "entry_points.txt"))
            if text is None:
                continue
            pairs = _section(text, group)
            if not pairs:
                continue
            if path.lower().endswith(".egg-info"):
                headers = _read(os.path.join(path, "PKG-INFO")) or ""
            else:
                headers = _read(os.path.join(path, "METADATA")) or ""
            name, version = _name_version(headers)
            for ep_name, value in pairs:
                records.append(EntryPointRecord(group, ep_name, value, name, version, _loader(value)))
    return records


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except OSError:
        return None


def _section(text: str, group: str) -> list[tuple[str, str]]:
    """The ``name = value`` pairs of section ``[group]`` of an ``entry_points.txt``."""
    pairs: list[tuple[str, str]] = []
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
        elif current == group:
            name, _, value = line.partition("=")
            pairs.append((name.strip(), value.strip()))
    return pairs


def _name_version(headers: str) -> tuple[str, str]:
    """``Name`` and ``Version`` from the header block of a ``METADATA``/``PKG-INFO`` file."""
    found: dict[str, str] = {}
    for line in headers.splitlines():
        if not line.strip():
            break
        key, sep, value = line.partition(":")
        if sep and key.lower() in ("name", "version") and key.lower() not in found:
            found[key.lower()] = value.strip()
    return found.get("name", "?"), found.get("version", "?")


def _loader(value: str) -> Callable[[], object]:
    def load() -> object:
        match = _VALUE.match(value)
        if match is None:
            raise ValueError(f"entry point value {value!r} is not 'module:attribute'")
        target: object = importlib.import_module(match.group("module"))
        for attribute in filter(None, (match.group("attr") or "").split(".")):
            target = getattr(target, attribute)
        return target

    return load
