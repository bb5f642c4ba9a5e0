"""Plugin loading, layers (a) and (b) of STYLE.md pattern 6.

(a) in-process plugin objects registered into a fresh :class:`PluginHost`;
(b) fake entry points at the one seam (``find_entry_points`` / ``fogwire._entrypoints.find``)
for discovery and every failure path of the loading policy.
"""

from __future__ import annotations

import logging
import re
import types
from collections.abc import Callable
from typing import Any

import attrs
import cattrs
import pluggy
import pytest

from fogwire import _entrypoints
from fogwire.errors import DuplicatePluginError, PluginLoadError, UnknownPluginError
from fogwire.hookspecs import hookimpl
from fogwire.payloads import ANY, DESIRED_STATE, IOFOG_DOCUMENTS
from fogwire.plugins import LoadPolicy, PluginHost

ENGINES = "fogwire.engines"
SOURCES = "fogwire.config_sources"
SINKS = "fogwire.reload_sinks"


def _engine_factory(tag: str) -> Callable[[Any], Any]:
    def factory(context: Any) -> Any:
        return (tag, context)

    factory.__name__ = f"make_{tag}"
    return factory


def plugin_module(module_name: str, **hooks: Callable[..., Any]) -> types.ModuleType:
    """A module object whose attributes are the given hook implementations."""
    module = types.ModuleType(module_name)
    for hook_name, function in hooks.items():
        setattr(module, hook_name, hookimpl(function))
    return module


def engine_plugin(module_name: str, *names: str, aliases: tuple[str, ...] = ()) -> types.ModuleType:
    """A plugin module registering one engine per name (factories tagged with the name)."""

    def fogwire_register_engines(registry: Any) -> None:
        for name in names:
            registry.add(name, _engine_factory(name), aliases=aliases)

    return plugin_module(module_name, fogwire_register_engines=fogwire_register_engines)


def host(fake: Any | None = None, environ: dict[str, str] | None = None, **kw: Any) -> PluginHost:
    return PluginHost(environ=environ or {}, find_entry_points=fake or (lambda group: []), **kw)


# --- (a) in-process plugin objects ------------------------------------------------------------


class InProcessPlugin:
    """A plugin as a class instance, the way a test or an embedder registers one."""

    @hookimpl
    def fogwire_register_engines(self, registry: Any) -> None:
        registry.add("inproc", _engine_factory("inproc"), description="an in-process engine")

    @hookimpl
    def fogwire_register_reload_sinks(self, registry: Any) -> None:
        registry.add("inproc-sink", _engine_factory("inproc-sink"), consumes=DESIRED_STATE)


def test_in_process_plugin_registers_into_a_fresh_host() -> None:
    plugin_host = host(extra_plugins=[InProcessPlugin()])
    factory = plugin_host.engine_factory("inproc")
    assert factory("ctx") == ("inproc", "ctx")
    assert plugin_host.resolve("engine", "inproc").description == "an in-process engine"
    assert plugin_host.sink_factory("inproc-sink", DESIRED_STATE, "the agent")("c") == ("inproc-sink", "c")


def test_hosts_are_independent() -> None:
    with_plugin = host(extra_plugins=[InProcessPlugin()])
    assert with_plugin.engine_factory("inproc")
    fresh = host()
    with pytest.raises(UnknownPluginError, match="no engine named 'inproc'"):
        fresh.engine_factory("inproc")


def test_builtins_go_through_the_same_hooks_and_resolve_without_scanning(fake_eps: Any) -> None:
    plugin_host = host(fake_eps)
    assert plugin_host.resolve("config_source", "file").owner == "fogwire"
    assert plugin_host.resolve("reload_sink", "log").owner == "fogwire"
    assert fake_eps.finds == [], "a built-in name must be resolved without scanning entry points"
    statuses = {(s.kind, s.name): s for s in plugin_host.discover()}
    assert statuses[("config_source", "file")].builtin and statuses[("config_source", "file")].ok
    assert statuses[("reload_sink", "log")].builtin and statuses[("reload_sink", "log")].ok
    assert statuses[("config_source", "file")].distribution == "fogwire"


def test_aliases_resolve_to_the_same_registration() -> None:
    plugin_host = host(extra_plugins=[engine_plugin("acme_engines", "containerd2", aliases=("edgelet2",))])
    assert plugin_host.resolve("engine", "edgelet2") is plugin_host.resolve("engine", "containerd2")
    assert plugin_host.resolve("engine", "edgelet2").name == "containerd2"


def test_two_in_process_plugins_claiming_one_name_name_both() -> None:
    first = engine_plugin("acme_one", "shared")
    second = engine_plugin("acme_two", "shared")
    with pytest.raises(DuplicatePluginError) as caught:
        host(extra_plugins=[first, second])
    assert "'acme_one'" in str(caught.value) and "'acme_two'" in str(caught.value)


def test_in_process_misspelled_hook_fails_via_check_pending() -> None:
    def fogwire_register_engine(registry: Any) -> None:  # singular: not a hook
        registry.add("never", _engine_factory("never"))

    bad = plugin_module("acme_typo", fogwire_register_engine=fogwire_register_engine)
    with pytest.raises(pluggy.PluginValidationError, match="fogwire_register_engine"):
        host(extra_plugins=[bad])


@attrs.frozen
class Duration:
    """A plugin's own type that cattrs can't structure without the plugin's hook."""

    seconds: int


class DurationText:
    """Not an attrs class: only a registered hook can structure it."""

    def __init__(self, text: str) -> None:
        self.seconds = int(text.rstrip("s"))


def converter_plugin(module_name: str) -> types.ModuleType:
    def fogwire_configure_converter(converter: cattrs.Converter) -> None:
        converter.register_structure_hook(DurationText, lambda value, _: DurationText(value))

    def fogwire_register_engines(registry: Any) -> None:
        registry.add("timed", _engine_factory("timed"))

    return plugin_module(
        module_name,
        fogwire_configure_converter=fogwire_configure_converter,
        fogwire_register_engines=fogwire_register_engines,
    )


def test_converter_hook_adds_an_in_process_plugins_type() -> None:
    without = host().make_converter()
    with pytest.raises(cattrs.errors.StructureHandlerNotFoundError):
        without.structure("5s", DurationText)
    converter = host(extra_plugins=[converter_plugin("acme_timed")]).make_converter()
    assert converter.structure("5s", DurationText).seconds == 5
    # and the core's own strictness is still in force on that converter
    from fogwire.model.iofog import PortMapping

    with pytest.raises(cattrs.errors.ClassValidationError):
        converter.structure({"internal": 80, "external": "http"}, PortMapping)


# --- (b) fake entry points at the one seam -----------------------------------------------------


def test_selected_plugin_missing_lists_available_names(fake_eps: Any) -> None:
    fake_eps.add(ENGINES, "alpha", engine_plugin("p_alpha", "alpha"), distribution="fogwire-engine-alpha")
    fake_eps.add(ENGINES, "beta", engine_plugin("p_beta", "beta"), distribution="fogwire-engine-beta")
    plugin_host = host(fake_eps, extra_plugins=[engine_plugin("acme_local", "local")])
    with pytest.raises(UnknownPluginError) as caught:
        plugin_host.engine_factory("gamma")
    message = str(caught.value)
    assert "no engine named 'gamma' is installed" in message
    assert "(available: alpha, beta, local)" in message
    assert fake_eps.loaded("fogwire-engine-alpha", "alpha") == 0
    assert fake_eps.loaded("fogwire-engine-beta", "beta") == 0


def test_unknown_name_with_nothing_installed_says_none(fake_eps: Any) -> None:
    with pytest.raises(UnknownPluginError, match=r"no engine named 'docker' is installed \(available: none\)"):
        host(fake_eps).engine_factory("docker")


def test_selected_plugin_raising_on_import_names_distribution_entry_point_and_cause(
    fake_eps: Any,
) -> None:
    def explode() -> object:
        raise ImportError("No module named 'acme_sdk'")

    fake_eps.add(
        ENGINES, "acme", explode, distribution="fogwire-engine-acme", version="2.3", value="fogwire_engine_acme.plugin"
    )
    with pytest.raises(PluginLoadError) as caught:
        host(fake_eps).engine_factory("acme")
    message = str(caught.value)
    assert "engine 'acme' failed to load" in message
    assert "distribution 'fogwire-engine-acme' (2.3)" in message
    assert "entry point 'acme' = 'fogwire_engine_acme.plugin'" in message
    assert "ImportError: No module named 'acme_sdk'" in message
    assert isinstance(caught.value.__cause__, ImportError)


def test_two_distributions_claiming_one_name_name_both_and_load_neither(fake_eps: Any) -> None:
    fake_eps.add(ENGINES, "dup", engine_plugin("p_dup1", "dup"), distribution="fogwire-engine-dup-one")
    fake_eps.add(ENGINES, "dup", engine_plugin("p_dup2", "dup"), distribution="fogwire-engine-dup-two")
    plugin_host = host(fake_eps)
    with pytest.raises(DuplicatePluginError) as caught:
        plugin_host.engine_factory("dup")
    assert "fogwire-engine-dup-one, fogwire-engine-dup-two" in str(caught.value)
    assert fake_eps.loads == {}
    statuses = {s.distribution: s.status for s in plugin_host.discover() if s.name == "dup"}
    assert statuses == {
        "fogwire-engine-dup-one": "duplicate name: also provided by fogwire-engine-dup-two",
        "fogwire-engine-dup-two": "duplicate name: also provided by fogwire-engine-dup-one",
    }
    assert fake_eps.loads == {}


def test_plugin_registering_nothing_of_its_name(fake_eps: Any) -> None:
    fake_eps.add(ENGINES, "promised", engine_plugin("p_liar", "other"), distribution="fogwire-engine-liar")
    with pytest.raises(PluginLoadError) as caught:
        host(fake_eps).engine_factory("promised")
    assert str(caught.value) == (
        "distribution 'fogwire-engine-liar' declares engine entry point 'promised' "
        "but its plugin registered no engine of that name"
    )
    statuses = {s.name: s.status for s in host(fake_eps).discover() if s.kind == "engine"}
    assert statuses == {"promised": "registered no plugin of this name"}


def test_plugin_whose_hook_raises_is_a_load_error(fake_eps: Any) -> None:
    def fogwire_register_engines(registry: Any) -> None:
        raise RuntimeError("hook exploded")

    fake_eps.add(
        ENGINES,
        "raiser",
        plugin_module("p_raiser", fogwire_register_engines=fogwire_register_engines),
        distribution="fogwire-engine-raiser",
    )
    with pytest.raises(PluginLoadError, match=r"from distribution 'fogwire-engine-raiser'.*failed to register: "):
        host(fake_eps).engine_factory("raiser")


def test_only_the_selected_entry_point_is_imported(fake_eps: Any) -> None:
    for name in ("alpha", "beta", "gamma"):
        fake_eps.add(ENGINES, name, engine_plugin(f"p_{name}", name), distribution=f"fogwire-engine-{name}")
    fake_eps.add(SOURCES, "remote", plugin_module("p_remote"), distribution="fogwire-config-remote")
    fake_eps.add(SINKS, "router", plugin_module("p_router"), distribution="fogwire-sink-router")
    plugin_host = host(fake_eps)
    factory = plugin_host.engine_factory("beta")
    assert factory("c") == ("beta", "c")
    assert plugin_host.engine_factory("beta") is factory
    assert fake_eps.loads == {("fogwire-engine-beta", "beta"): 1}
    assert fake_eps.finds == [ENGINES]


def test_monkeypatching_the_seam_itself(monkeypatch: pytest.MonkeyPatch, fake_eps: Any) -> None:
    fake_eps.add(ENGINES, "patched", engine_plugin("p_patched", "patched"), distribution="fogwire-engine-patched")
    monkeypatch.setattr(_entrypoints, "find", fake_eps)
    plugin_host = PluginHost(environ={})
    assert plugin_host.engine_factory("patched")("x") == ("patched", "x")
    assert plugin_host.resolve("engine", "patched").owner == "fogwire-engine-patched"


def test_disable_plugins_by_name_or_distribution(fake_eps: Any) -> None:
    fake_eps.add(ENGINES, "alpha", engine_plugin("p_alpha", "alpha"), distribution="fogwire-engine-alpha")
    fake_eps.add(ENGINES, "beta", engine_plugin("p_beta", "beta"), distribution="fogwire-engine-beta")
    fake_eps.add(ENGINES, "gamma", engine_plugin("p_gamma", "gamma"), distribution="fogwire-engine-gamma")
    environ = {"FOGWIRE_DISABLE_PLUGINS": "alpha, fogwire-engine-beta"}
    plugin_host = host(fake_eps, environ)
    with pytest.raises(PluginLoadError) as caught:
        plugin_host.engine_factory("alpha")
    assert str(caught.value) == (
        "engine 'alpha' from distribution 'fogwire-engine-alpha' is disabled by FOGWIRE_DISABLE_PLUGINS"
    )
    with pytest.raises(PluginLoadError, match="'fogwire-engine-beta' is disabled by FOGWIRE_DISABLE_PLUGINS"):
        plugin_host.engine_factory("beta")
    assert plugin_host.engine_factory("gamma")("c") == ("gamma", "c")
    statuses = {s.name: s.status for s in host(fake_eps, environ).discover() if s.kind == "engine"}
    assert statuses == {
        "alpha": "disabled by FOGWIRE_DISABLE_PLUGINS",
        "beta": "disabled by FOGWIRE_DISABLE_PLUGINS",
        "gamma": "ok",
    }
    assert fake_eps.loaded("fogwire-engine-alpha", "alpha") == 0
    assert fake_eps.loaded("fogwire-engine-beta", "beta") == 0


def test_load_plugins_is_an_allow_list(fake_eps: Any) -> None:
    fake_eps.add(ENGINES, "alpha", engine_plugin("p_alpha", "alpha"), distribution="fogwire-engine-alpha")
    fake_eps.add(ENGINES, "beta", engine_plugin("p_beta", "beta"), distribution="fogwire-engine-beta")
    plugin_host = host(fake_eps, {"FOGWIRE_LOAD_PLUGINS": "alpha"})
    assert plugin_host.engine_factory("alpha")("c") == ("alpha", "c")
    with pytest.raises(
        PluginLoadError, match="engine 'beta' from distribution 'fogwire-engine-beta' is not in FOGWIRE_LOAD_PLUGINS"
    ):
        plugin_host.engine_factory("beta")
    assert fake_eps.loaded("fogwire-engine-beta", "beta") == 0
    statuses = {s.name: s.status for s in host(fake_eps, {"FOGWIRE_LOAD_PLUGINS": "alpha"}).discover()}
    assert statuses["beta"] == "not in FOGWIRE_LOAD_PLUGINS"
    assert statuses["alpha"] == "ok"


def test_empty_allow_list_refuses_every_third_party_plugin_but_keeps_builtins(fake_eps: Any) -> None:
    fake_eps.add(ENGINES, "alpha", engine_plugin("p_alpha", "alpha"), distribution="fogwire-engine-alpha")
    plugin_host = host(fake_eps, {"FOGWIRE_LOAD_PLUGINS": ""})
    with pytest.raises(PluginLoadError, match="not in FOGWIRE_LOAD_PLUGINS"):
        plugin_host.engine_factory("alpha")
    assert plugin_host.source_factory("file", IOFOG_DOCUMENTS, "the agent")
    assert plugin_host.sink_factory("log", DESIRED_STATE, "the agent")


def test_load_policy_from_environ() -> None:
    assert LoadPolicy.from_environ({}) == LoadPolicy(frozenset(), None, False)
    policy = LoadPolicy.from_environ(
        {"FOGWIRE_DISABLE_PLUGINS": " a,,b ", "FOGWIRE_LOAD_PLUGINS": "c", "FOGWIRE_STRICT_PLUGINS": "1"}
    )
    assert policy == LoadPolicy(frozenset({"a", "b"}), frozenset({"c"}), True)
    assert LoadPolicy.from_environ({"FOGWIRE_STRICT_PLUGINS": "0"}).strict is False


def _broken_and_good(fake_eps: Any) -> None:
    def explode() -> object:
        raise ModuleNotFoundError("No module named 'missing_sdk'")

    fake_eps.add(ENGINES, "broken", explode, distribution="fogwire-engine-broken")
    fake_eps.add(ENGINES, "good", engine_plugin("p_good", "good"), distribution="fogwire-engine-good")


def test_discovered_only_failure_is_reported_and_skipped(fake_eps: Any, caplog: pytest.LogCaptureFixture) -> None:
    _broken_and_good(fake_eps)
    with caplog.at_level(logging.WARNING, logger="fogwire.plugins"):
        statuses = {s.name: s for s in host(fake_eps).discover() if s.kind == "engine"}
    assert statuses["broken"].status == "ModuleNotFoundError: No module named 'missing_sdk'"
    assert statuses["broken"].distribution == "fogwire-engine-broken"
    assert not statuses["broken"].ok
    assert statuses["good"].ok
    assert any("fogwire-engine-broken" in r.getMessage() and "skipped" in r.getMessage() for r in caplog.records)


def test_strict_plugins_makes_discover_raise(fake_eps: Any) -> None:
    _broken_and_good(fake_eps)
    with pytest.raises(PluginLoadError) as caught:
        host(fake_eps, {"FOGWIRE_STRICT_PLUGINS": "1"}).discover()
    assert str(caught.value) == (
        "FOGWIRE_STRICT_PLUGINS is set and engine 'broken' from distribution 'fogwire-engine-broken' failed: "
        "ModuleNotFoundError: No module named 'missing_sdk'"
    )


def test_strict_plugins_does_not_raise_for_disabled_plugins(fake_eps: Any) -> None:
    _broken_and_good(fake_eps)
    environ = {"FOGWIRE_STRICT_PLUGINS": "1", "FOGWIRE_DISABLE_PLUGINS": "broken"}
    statuses = {s.name: s.status for s in host(fake_eps, environ).discover() if s.kind == "engine"}
    assert statuses == {"broken": "disabled by FOGWIRE_DISABLE_PLUGINS", "good": "ok"}
    assert fake_eps.loaded("fogwire-engine-broken", "broken") == 0


def _misspelled_plugin() -> types.ModuleType:
    def fogwire_register_engine(registry: Any) -> None:  # singular: pluggy knows no such hook
        registry.add("typo", _engine_factory("typo"))

    return plugin_module("p_typo", fogwire_register_engine=fogwire_register_engine)


def test_misspelled_hookimpl_fails_via_check_pending(fake_eps: Any) -> None:
    fake_eps.add(ENGINES, "typo", _misspelled_plugin(), distribution="fogwire-engine-typo")
    with pytest.raises(PluginLoadError) as caught:
        host(fake_eps).engine_factory("typo")
    message = str(caught.value)
    assert "distribution 'fogwire-engine-typo'" in message
    assert "PluginValidationError" in message and "fogwire_register_engine" in message


def test_misspelled_plugin_does_not_poison_the_others(fake_eps: Any) -> None:
    fake_eps.add(ENGINES, "atypo", _misspelled_plugin(), distribution="fogwire-engine-typo")
    fake_eps.add(ENGINES, "good", engine_plugin("p_good", "good"), distribution="fogwire-engine-good")
    plugin_host = host(fake_eps)
    statuses = {s.name: s.status for s in plugin_host.discover() if s.kind == "engine"}
    assert re.match(r"PluginValidationError: .*fogwire_register_engine", statuses["atypo"])
    assert statuses["good"] == "ok"
    assert plugin_host.engine_factory("good")("c") == ("good", "c")


def test_converter_hook_of_a_selected_entry_point_plugin(fake_eps: Any) -> None:
    fake_eps.add(ENGINES, "timed", converter_plugin("p_timed"), distribution="fogwire-engine-timed")
    plugin_host = host(fake_eps)
    plugin_host.engine_factory("timed")
    assert plugin_host.make_converter().structure("7s", DurationText).seconds == 7


def test_third_party_plugin_cannot_take_a_builtin_name(fake_eps: Any) -> None:
    def fogwire_register_config_sources(registry: Any) -> None:
        registry.add("file", _engine_factory("impostor"))

    fake_eps.add(
        SOURCES,
        "file",
        plugin_module("p_impostor", fogwire_register_config_sources=fogwire_register_config_sources),
        distribution="fogwire-config-impostor",
    )
    plugin_host = host(fake_eps)
    assert plugin_host.resolve("config_source", "file").owner == "fogwire"
    statuses = [s for s in plugin_host.discover() if s.distribution == "fogwire-config-impostor"]
    assert [s.status for s in statuses] == [
        "config source 'file' is registered by both 'fogwire' and 'fogwire-config-impostor'; "
        "uninstall one, or disable one with FOGWIRE_DISABLE_PLUGINS"
    ]


def test_one_module_serving_two_kinds_is_registered_once(fake_eps: Any) -> None:
    def fogwire_register_engines(registry: Any) -> None:
        registry.add("both-engine", _engine_factory("both-engine"))

    def fogwire_register_reload_sinks(registry: Any) -> None:
        registry.add("both-sink", _engine_factory("both-sink"), consumes=ANY)

    module = plugin_module(
        "p_both",
        fogwire_register_engines=fogwire_register_engines,
        fogwire_register_reload_sinks=fogwire_register_reload_sinks,
    )
    fake_eps.add(ENGINES, "both-engine", module, distribution="fogwire-both")
    fake_eps.add(SINKS, "both-sink", module, distribution="fogwire-both")
    plugin_host = host(fake_eps)
    assert plugin_host.engine_factory("both-engine")("c") == ("both-engine", "c")
    assert plugin_host.sink_factory("both-sink", DESIRED_STATE, "the agent")("c") == ("both-sink", "c")
    assert plugin_host.resolve("reload_sink", "both-sink").owner == "fogwire-both"
    statuses = {(s.kind, s.name): s.status for s in plugin_host.discover() if s.distribution == "fogwire-both"}
    assert statuses == {("engine", "both-engine"): "ok", ("reload_sink", "both-sink"): "ok"}
