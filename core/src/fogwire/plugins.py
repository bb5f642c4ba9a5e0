"""Discovery and loading of plugins: the host every consumer goes through.

The loading policy (see ``docs/writing-a-plugin.md``):

* Built-ins (``fogwire.builtin``) are registered through the same hooks as
  third-party plugins, and a built-in name is resolved without scanning entry points.
* A name that is not built in is looked up in its kind's entry-point group; only
  that entry point is imported. Two distributions claiming it is an error naming both.
* A plugin the user *selected* that fails is a :class:`PluginLoadError` naming the
  distribution, the entry point and the cause. A plugin that is merely discovered
  (``fogwire plugins``) and fails is reported and skipped, unless
  ``FOGWIRE_STRICT_PLUGINS=1``.
* ``FOGWIRE_DISABLE_PLUGINS`` (comma-separated plugin or distribution names) hides
  plugins; ``FOGWIRE_LOAD_PLUGINS``, when set, is an allow-list.
"""

from __future__ import annotations

import logging
import os
import types
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import attrs
import pluggy

from fogwire import _entrypoints, hookspecs
from fogwire.errors import DuplicatePluginError, PluginLoadError, UnknownPluginError
from fogwire.registry import (
    EngineFactory,
    PluginRegistry,
    Registration,
    SinkFactory,
    SourceFactory,
)

if TYPE_CHECKING:
    import cattrs

log = logging.getLogger(__name__)

Kind = Literal["engine", "config_source", "reload_sink"]

GROUPS: dict[Kind, str] = {
    "engine": "fogwire.engines",
    "config_source": "fogwire.config_sources",
    "reload_sink": "fogwire.reload_sinks",
}
"""The entry-point group of each plugin kind; the entry-point name is the config key."""

_HOOKS: dict[Kind, str] = {
    "engine": "fogwire_register_engines",
    "config_source": "fogwire_register_config_sources",
    "reload_sink": "fogwire_register_reload_sinks",
}

EntryPointFinder = Callable[[str], list[_entrypoints.EntryPointRecord]]


@attrs.frozen
class LoadPolicy:
    """The environment's say on which plugins load."""

    disabled: frozenset[str] = frozenset()
    allowed: frozenset[str] | None = None
    strict: bool = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> LoadPolicy:
        """Read ``FOGWIRE_DISABLE_PLUGINS``, ``FOGWIRE_LOAD_PLUGINS`` and ``FOGWIRE_STRICT_PLUGINS``."""

        def names(key: str) -> frozenset[str]:
            return frozenset(n.strip() for n in environ.get(key, "").split(",") if n.strip())

        allowed = names("FOGWIRE_LOAD_PLUGINS") if "FOGWIRE_LOAD_PLUGINS" in environ else None
        strict = environ.get("FOGWIRE_STRICT_PLUGINS", "").lower() in ("1", "true", "yes")
        return cls(names("FOGWIRE_DISABLE_PLUGINS"), allowed, strict)

    def refusal(self, record: _entrypoints.EntryPointRecord) -> str | None:
        """Why ``record`` may not load, or ``None`` if it may."""
        keys = {record.name, record.distribution}
        if keys & self.disabled:
            return "disabled by FOGWIRE_DISABLE_PLUGINS"
        if self.allowed is not None and not keys & self.allowed:
            return "not in FOGWIRE_LOAD_PLUGINS"
        return None


@attrs.frozen
class PluginStatus:
    """One discovered plugin as ``fogwire plugins`` reports it."""

    kind: Kind
    name: str
    distribution: str
    version: str
    status: str
    """``ok``, or the reason it can't be used (import error with its message, …)."""
    builtin: bool = False

    @property
    def ok(self) -> bool:
        """True when the plugin loaded and registered its name."""
        return self.status == "ok"


class PluginHost:
    """Loads plugins and hands out their registrations; one per consumer.

    The host is passed to whatever needs plugins (no module-global manager), so
    tests and embedders can build their own with their own entry points.
    """

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        find_entry_points: EntryPointFinder | None = None,
        extra_plugins: Iterable[object] = (),
    ) -> None:
        self.policy = LoadPolicy.from_environ(os.environ if environ is None else environ)
        self._find = find_entry_points or _entrypoints.find
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.engines: PluginRegistry[EngineFactory] = PluginRegistry("engine")
        self.sources: PluginRegistry[SourceFactory] = PluginRegistry("config source")
        self.sinks: PluginRegistry[SinkFactory] = PluginRegistry("reload sink")
        self._registered: dict[str, tuple[object, str]] = {}
        self._called: set[tuple[str, Kind]] = set()
        self._records: dict[str, list[_entrypoints.EntryPointRecord]] = {}
        from fogwire.builtin import plugin as builtin_plugin

        self.add_plugin(builtin_plugin, owner="fogwire")
        for plugin in extra_plugins:
            self.add_plugin(plugin, owner=getattr(plugin, "__name__", repr(plugin)))

    def _registry(self, kind: Kind) -> PluginRegistry[Any]:
        if kind == "engine":
            return self.engines
        if kind == "config_source":
            return self.sources
        return self.sinks

    def add_plugin(self, plugin: object, *, owner: str) -> None:
        """Register an in-process plugin object (a module or class instance) and run its hooks."""
        key = plugin.__name__ if isinstance(plugin, types.ModuleType) else f"{owner}:{id(plugin)}"
        if key not in self._registered:
            self.pm.register(plugin, name=key)
            self._check_pending(key)
            self._registered[key] = (plugin, owner)
        for kind in GROUPS:
            self._run_register_hook(key, kind)

    def _check_pending(self, key: str) -> None:
        """``check_pending()``, unregistering plugin ``key`` if it has a misspelled hook.

        Left registered, its unknown hook would fail every later check, so one bad
        plugin would make every other plugin fail to load too.
        """
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError:
            self.pm.unregister(name=key)
            raise

    def _run_register_hook(self, key: str, kind: Kind) -> None:
        if (key, kind) in self._called:
            return
        self._called.add((key, kind))
        plugin, owner = self._registered[key]
        others = [p for p in self.pm.get_plugins() if p is not plugin]
        caller = self.pm.subset_hook_caller(_HOOKS[kind], remove_plugins=others)
        registry = self._registry(kind)
        registry.owner = owner
        try:
            caller(registry=registry)
        finally:
            registry.owner = "fogwire"

    def _entry_points(self, kind: Kind) -> list[_entrypoints.EntryPointRecord]:
        group = GROUPS[kind]
        if group not in self._records:
            self._records[group] = self._find(group)
        return self._records[group]

    def _load_record(self, kind: Kind, record: _entrypoints.EntryPointRecord) -> None:
        where = (
            f"distribution {record.distribution!r} ({record.version}), entry point {record.name!r} = {record.value!r}"
        )
        try:
            plugin = record.load()
        except Exception as error:
            raise PluginLoadError(
                f"{kind.replace('_', ' ')} {record.name!r} failed to load from {where}: {type(error).__name__}: {error}"
            ) from error
        key = plugin.__name__ if isinstance(plugin, types.ModuleType) else f"{record.distribution}:{record.value}"
        try:
            if key not in self._registered:
                self.pm.register(plugin, name=key)
                self._check_pending(key)
                self._registered[key] = (plugin, record.distribution)
            self._run_register_hook(key, kind)
        except DuplicatePluginError:
            raise
        except Exception as error:
            raise PluginLoadError(
                f"{kind.replace('_', ' ')} {record.name!r} from {where} failed to register: "
                f"{type(error).__name__}: {error}"
            ) from error

    def resolve(self, kind: Kind, name: str) -> Registration[Any]:
        """The registration for ``name`` of ``kind``, loading its plugin if needed.

        Raises :class:`UnknownPluginError`, :class:`DuplicatePluginError` or
        :class:`PluginLoadError` with the distribution and cause.
        """
        registry = self._registry(kind)
        found = registry.get(name)
        if found is not None:
            return found
        records = [r for r in self._entry_points(kind) if r.name == name]
        distributions = sorted({r.distribution for r in records})
        if len(distributions) > 1:
            raise DuplicatePluginError(
                f"{kind.replace('_', ' ')} {name!r} is provided by more than one distribution: "
                f"{', '.join(distributions)}; uninstall one or disable one with FOGWIRE_DISABLE_PLUGINS"
            )
        if not records:
            available = sorted(set(registry.names()) | {r.name for r in self._entry_points(kind)})
            raise UnknownPluginError(
                f"no {kind.replace('_', ' ')} named {name!r} is installed "
                f"(available: {', '.join(available) or 'none'}); install the distribution that provides it"
            )
        record = records[0]
        refusal = self.policy.refusal(record)
        if refusal:
            raise PluginLoadError(
                f"{kind.replace('_', ' ')} {name!r} from distribution {record.distribution!r} is {refusal}"
            )
        self._load_record(kind, record)
        found = registry.get(name)
        if found is None:
            raise PluginLoadError(
                f"distribution {record.distribution!r} declares {kind.replace('_', ' ')} entry point "
                f"{name!r} but its plugin registered no {kind.replace('_', ' ')} of that name"
            )
        return found

    def engine_factory(self, name: str) -> EngineFactory:
        """The factory of the engine named ``name`` (``containerEngine`` in config)."""
        factory: EngineFactory = self.resolve("engine", name).factory
        return factory

    def source_factory(self, name: str) -> SourceFactory:
        """The factory of the config source named ``name``."""
        factory: SourceFactory = self.resolve("config_source", name).factory
        return factory

    def sink_factory(self, name: str) -> SinkFactory:
        """The factory of the reload sink named ``name``."""
        factory: SinkFactory = self.resolve("reload_sink", name).factory
        return factory

    def discover(self) -> list[PluginStatus]:
        """Load every plugin of every kind and report each one's status.

        Failures are reported, not raised (unless the policy is strict: then the
        first failure raises :class:`PluginLoadError`).
        """
        statuses: list[PluginStatus] = []
        for kind in GROUPS:
            registry = self._registry(kind)
            for registration in registry:
                if registration.owner == "fogwire":
                    statuses.append(PluginStatus(kind, registration.name, "fogwire", _core_version(), "ok", True))
            records = self._entry_points(kind)
            counts: dict[str, set[str]] = {}
            for record in records:
                counts.setdefault(record.name, set()).add(record.distribution)
            for record in records:
                status = "ok"
                refusal = self.policy.refusal(record)
                if refusal:
                    status = refusal
                elif len(counts[record.name]) > 1:
                    others = sorted(counts[record.name] - {record.distribution})
                    status = f"duplicate name: also provided by {', '.join(others)}"
                else:
                    try:
                        self._load_record(kind, record)
                        if registry.get(record.name) is None:
                            status = "registered no plugin of this name"
                    except PluginLoadError as error:
                        cause = error.__cause__
                        status = f"{type(cause).__name__}: {cause}" if cause is not None else str(error)
                if status != "ok" and not refusal:
                    log.warning("plugin %s %r from %s skipped: %s", kind, record.name, record.distribution, status)
                    if self.policy.strict:
                        raise PluginLoadError(
                            f"FOGWIRE_STRICT_PLUGINS is set and {kind.replace('_', ' ')} {record.name!r} "
                            f"from distribution {record.distribution!r} failed: {status}"
                        )
                statuses.append(PluginStatus(kind, record.name, record.distribution, record.version, status))
        return statuses

    def make_converter(self) -> cattrs.Converter:
        """The core converter, with every loaded plugin's types added through the hook."""
        from fogwire.convert import make_converter

        converter = make_converter()
        self.pm.hook.fogwire_configure_converter(converter=converter)
        return converter


def _core_version() -> str:
    from fogwire import __version__

    return __version__
