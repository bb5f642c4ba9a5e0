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
* A selected plugin whose *factory* fails (its SDK is missing, it can't start) is
  the same kind of error, naming the distribution: :meth:`PluginHost.build` turns
  the failure into a :class:`PluginLoadError`. ``fogwire plugins`` checks that the
  modules each plugin's factory needs (``requires`` at registration) are installed.
* A config source or reload sink is loaded only by a consumer of its payload kind
  (:mod:`fogwire.payloads`); another is refused at load time, naming both.
* ``FOGWIRE_DISABLE_PLUGINS`` (comma-separated plugin or distribution names) hides
  plugins; ``FOGWIRE_LOAD_PLUGINS``, when set, is an allow-list.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import types
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import attrs
import pluggy

from fogwire import _entrypoints, hookspecs
from fogwire._entrypoints import LoadPolicy
from fogwire.errors import ConfigError, DuplicatePluginError, PluginLoadError, UnknownPluginError
from fogwire.registry import (
    CommandRegistry,
    CommandSpec,
    EngineFactory,
    EngineRegistry,
    PluginRegistry,
    Registration,
    ServiceFactory,
    ServiceRegistry,
    SinkRegistry,
    SourceRegistry,
    ValidatorRegistry,
)

if TYPE_CHECKING:
    import cattrs

    from fogwire.payloads import PayloadKind
    from fogwire.sinks import ReloadSink, SinkContext
    from fogwire.sources import ConfigSource, SourceContext
    from fogwire.validation import DocumentValidator

log = logging.getLogger(__name__)

P = TypeVar("P")
C = TypeVar("C")
T = TypeVar("T")

Kind = Literal["engine", "config_source", "reload_sink", "agent_service", "command", "validator"]

GROUPS: dict[Kind, str] = {
    "engine": "fogwire.engines",
    "config_source": "fogwire.config_sources",
    "reload_sink": "fogwire.reload_sinks",
    "agent_service": "fogwire.agent_services",
    "command": "fogwire.commands",
    "validator": "fogwire.validators",
}
"""The entry-point group of each plugin kind; the entry-point name is the config key (or command name)."""

_HOOKS: dict[Kind, str] = {
    "engine": "fogwire_register_engines",
    "config_source": "fogwire_register_config_sources",
    "reload_sink": "fogwire_register_reload_sinks",
    "agent_service": "fogwire_register_agent_services",
    "command": "fogwire_register_commands",
    "validator": "fogwire_register_validators",
}

EntryPointFinder = Callable[[str], list[_entrypoints.EntryPointRecord]]


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
        self.engines = EngineRegistry("engine")
        self.sources = SourceRegistry("config source")
        self.sinks = SinkRegistry("reload sink")
        self.services = ServiceRegistry("agent service")
        self.commands = CommandRegistry("command")
        self.validators = ValidatorRegistry("document validator")
        self._registered: dict[str, tuple[object, str]] = {}
        self._versions: dict[str, str] = {}
        self._called: set[tuple[str, Kind]] = set()
        self._records: dict[str, list[_entrypoints.EntryPointRecord]] = {}
        from fogwire.builtin import plugin as builtin_plugin

        self.add_plugin(builtin_plugin, owner="fogwire")
        for plugin in extra_plugins:
            self.add_plugin(plugin, owner=getattr(plugin, "__name__", repr(plugin)))

    def _registry(self, kind: Kind) -> PluginRegistry[Any]:
        registries: dict[Kind, PluginRegistry[Any]] = {
            "engine": self.engines,
            "config_source": self.sources,
            "reload_sink": self.sinks,
            "agent_service": self.services,
            "command": self.commands,
            "validator": self.validators,
        }
        return registries[kind]

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
                self._versions[record.distribution] = record.version
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
        registration: Registration[EngineFactory] = self.resolve("engine", name)
        return registration.factory

    def source_factory(
        self, name: str, needs: PayloadKind[P], consumer: str
    ) -> Callable[[SourceContext], ConfigSource[P]]:
        """The factory of config source ``name``, which must produce payloads of kind ``needs``.

        ``consumer`` names who asks (``"the agent"``, ``"fogwire router (fogwire-router)"``)
        for the error when the source produces another kind.
        """
        registration = self.resolve("config_source", name)
        self._check_payload("config source", registration, needs, consumer, "produces", "needs")
        return cast("Callable[[SourceContext], ConfigSource[P]]", registration.factory)

    def sink_factory(self, name: str, gives: PayloadKind[P], consumer: str) -> Callable[[SinkContext], ReloadSink[P]]:
        """The factory of reload sink ``name``, which must take payloads of kind ``gives``."""
        registration = self.resolve("reload_sink", name)
        self._check_payload("reload sink", registration, gives, consumer, "takes", "gives its sinks")
        return cast("Callable[[SinkContext], ReloadSink[P]]", registration.factory)

    def service_factory(self, name: str) -> ServiceFactory:
        """The factory of the agent service named ``name``."""
        registration: Registration[ServiceFactory] = self.resolve("agent_service", name)
        return registration.factory

    def _check_payload(
        self,
        what: str,
        registration: Registration[Any],
        wanted: PayloadKind[Any],
        consumer: str,
        plugin_verb: str,
        consumer_verb: str,
    ) -> None:
        plugin = f"{what} {registration.name!r} ({self.distribution_of(registration)})"
        if registration.payload is None:
            raise PluginLoadError(
                f"{plugin} declares no payload kind, so {consumer} can't know it fits; "
                f"its plugin must register it with a kind (see docs/writing-a-plugin.md)"
            )
        fits = registration.payload.accepts(wanted) if what == "reload sink" else wanted.accepts(registration.payload)
        if not fits:
            raise PluginLoadError(
                f"{plugin} {plugin_verb} {registration.payload}, but {consumer} {consumer_verb} {wanted}; "
                f"select a {what} for {consumer}, or use {registration.name!r} with a consumer of its kind"
            )

    def distribution_of(self, registration: Registration[Any]) -> str:
        """``distribution version`` of the plugin behind ``registration`` (``fogwire`` for built-ins)."""
        owner = registration.owner
        version = self._versions.get(owner) or (_core_version() if owner == "fogwire" else "")
        return f"distribution {owner!r} {version}".rstrip()

    def build(self, kind: Kind, name: str, factory: Callable[[C], T], context: C) -> T:
        """``factory(context)``, turning a failure into a :class:`PluginLoadError` naming the distribution.

        A :class:`~fogwire.errors.ConfigError` (bad options) passes through as it is:
        the user's config is wrong, not the plugin.
        """
        try:
            return factory(context)
        except ConfigError:
            raise
        except Exception as error:
            what = kind.replace("_", " ")
            owner = self._registry(kind).get(name)
            where = self.distribution_of(owner) if owner is not None else "an in-process plugin"
            if isinstance(error, ImportError):
                missing = error.name or str(error)
                cause = (
                    f"it needs module {missing!r}, which is not installed or fails to import "
                    f"({type(error).__name__}: {error}); reinstall the distribution with its dependencies"
                )
            else:
                cause = f"{type(error).__name__}: {error}"
            raise PluginLoadError(f"{what} {name!r} from {where} could not be set up: {cause}") from error

    def command(self, name: str) -> CommandSpec:
        """The subcommand ``name`` (built in or from a ``fogwire.commands`` entry point)."""
        registration: Registration[CommandSpec] = self.resolve("command", name)
        return registration.factory

    def all_commands(self) -> dict[str, Registration[CommandSpec]]:
        """Every command that loads: built-ins and each ``fogwire.commands`` entry point.

        A command plugin that fails to load is logged and skipped, so one broken
        distribution never takes ``fogwire --help`` down with it.
        """
        for record in self._entry_points("command"):
            if self.commands.get(record.name) is not None or self.policy.refusal(record):
                continue
            try:
                self.resolve("command", record.name)
            except PluginLoadError as error:
                log.warning("command %r from %s skipped: %s", record.name, record.distribution, error)
        return {registration.name: registration for registration in self.commands}

    def all_validators(self) -> list[DocumentValidator]:
        """A validator from every ``fogwire.validators`` entry point that loads (others are warned about)."""
        for record in self._entry_points("validator"):
            if self.validators.get(record.name) is not None or self.policy.refusal(record):
                continue
            try:
                self.resolve("validator", record.name)
            except PluginLoadError as error:
                log.warning("document validator %r from %s skipped: %s", record.name, record.distribution, error)
        validators = []
        for registration in self.validators:
            try:
                validators.append(registration.factory())
            except Exception as error:
                log.warning("document validator %r skipped: %s: %s", registration.name, type(error).__name__, error)
        return validators

    def missing_requirements(self, registration: Registration[Any]) -> list[str]:
        """The modules ``registration``'s factory needs that can't be found (none imported to check)."""
        missing = []
        for module in registration.requires:
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                missing.append(module)
        return missing

    def discover(self) -> list[PluginStatus]:
        """Load every plugin of every kind and report each one's status.

        Failures are reported, not raised (unless the policy is strict: then the
        first failure raises :class:`PluginLoadError`).
        """
        statuses: list[PluginStatus] = []
        for kind in GROUPS:
            registry = self._registry(kind)
            for registration in registry:
                if registration.owner == "fogwire" and kind != "command":  # the agent's own commands aren't plugins
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
                        found = registry.get(record.name)
                        if found is None:
                            status = "registered no plugin of this name"
                        elif missing := self.missing_requirements(found):
                            status = f"missing dependency: module {', '.join(missing)} not installed"
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
