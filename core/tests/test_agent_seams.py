"""The seams between the agent and its plugins: payload kinds, the one converter, factories.

Plugins here are real plugin modules loaded through fake entry points (the one seam
core has for discovery), so the host's loading policy runs exactly as for an
installed distribution.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import attrs
import pytest

from fogwire.agent import Agent
from fogwire.convert import register_options_class, structure_options
from fogwire.errors import ConfigError, PluginLoadError
from fogwire.hookspecs import hookimpl
from fogwire.model.agent_config import PluginSelection, Profile
from fogwire.paths import Paths
from fogwire.payloads import DESIRED_STATE, IOFOG_DOCUMENTS, PayloadKind
from fogwire.plugins import PluginHost

OTHER: PayloadKind[str] = PayloadKind("other-config", "another program's config")


@attrs.frozen
class AcmeOptions:
    """An engine's options, spelled camelCase in the agent config."""

    socket_path: str = "/run/acme.sock"
    max_workers: int = 4


def _plugin(name: str, **hooks: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook, function in hooks.items():
        setattr(module, hook, hookimpl(function))
    return module


def _acme_plugin(seen: dict[str, Any]) -> types.ModuleType:
    def make_engine(context: Any) -> Any:
        seen["converter"] = context.converter
        seen["options"] = structure_options(context.converter, context.options, AcmeOptions, plugin="acme")
        raise RuntimeError("the acme daemon is not running")

    def fogwire_register_engines(registry: Any) -> None:
        registry.add("acme", make_engine)

    def fogwire_configure_converter(converter: Any) -> None:
        seen.setdefault("configured", []).append(converter)
        register_options_class(converter, AcmeOptions)

    return _plugin(
        "fogwire_acme_plugin",
        fogwire_register_engines=fogwire_register_engines,
        fogwire_configure_converter=fogwire_configure_converter,
    )


def _other_kind_plugin() -> types.ModuleType:
    def fogwire_register_config_sources(registry: Any) -> None:
        registry.add("other-src", lambda context: object(), produces=OTHER)

    def fogwire_register_reload_sinks(registry: Any) -> None:
        registry.add("other-sink", lambda context: object(), consumes=OTHER)
        registry.add("untyped-sink", lambda context: object())

    return _plugin(
        "fogwire_other_plugin",
        fogwire_register_config_sources=fogwire_register_config_sources,
        fogwire_register_reload_sinks=fogwire_register_reload_sinks,
    )


def _paths(tmp_path: Path) -> Paths:
    return Paths(tmp_path / "config.yaml", tmp_path / "state", tmp_path / "log", tmp_path / "run")


@pytest.fixture
def plugins(fake_eps: Any) -> PluginHost:
    other = _other_kind_plugin()
    for group, name in [
        ("fogwire.config_sources", "other-src"),
        ("fogwire.reload_sinks", "other-sink"),
        ("fogwire.reload_sinks", "untyped-sink"),
    ]:
        fake_eps.add(group, name, other, distribution="fogwire-other")
    return PluginHost(environ={}, find_entry_points=fake_eps)


def test_a_source_of_another_kind_is_refused_at_load_naming_both(plugins: PluginHost) -> None:
    with pytest.raises(PluginLoadError) as caught:
        plugins.source_factory("other-src", IOFOG_DOCUMENTS, "the agent (fogwire daemon)")
    assert str(caught.value) == (
        "config source 'other-src' (distribution 'fogwire-other' 1.0) produces another program's config, "
        "but the agent (fogwire daemon) needs ioFog documents (Applications, Microservices, CatalogItems, "
        "Registries); select a config source for the agent (fogwire daemon), or use 'other-src' with a "
        "consumer of its kind"
    )
    assert plugins.source_factory("other-src", OTHER, "the other program")  # fits its own consumer


def test_a_sink_of_another_kind_or_none_is_refused_at_load(plugins: PluginHost) -> None:
    with pytest.raises(PluginLoadError, match=r"reload sink 'other-sink' \(distribution 'fogwire-other' 1.0\) takes"):
        plugins.sink_factory("other-sink", DESIRED_STATE, "the agent")
    with pytest.raises(PluginLoadError, match="'untyped-sink' .* declares no payload kind"):
        plugins.sink_factory("untyped-sink", DESIRED_STATE, "the agent")
    assert plugins.sink_factory("log", DESIRED_STATE, "the agent")  # the log sink takes any kind


async def test_the_agent_refuses_a_mismatched_sink_before_starting_anything(
    plugins: PluginHost, tmp_path: Path
) -> None:
    started: list[str] = []

    class NeverStarted:
        async def start(self) -> None:
            started.append("engine")

    def fogwire_register_engines(registry: Any) -> None:
        registry.add("never", lambda context: NeverStarted())

    plugins.add_plugin(_plugin("never_engine", fogwire_register_engines=fogwire_register_engines), owner="tests")
    profile = Profile(container_engine="never", reload_sinks=(PluginSelection("other-sink"),))
    agent = Agent(profile=profile, paths=_paths(tmp_path), plugins=plugins, api_socket=False)
    with pytest.raises(PluginLoadError, match="the agent .* gives its sinks the agent's validated desired state"):
        async with agent.session():
            pass
    assert started == []
    assert not (tmp_path / "state").exists()  # nothing opened, nothing written


async def test_the_agents_converter_has_every_selected_plugins_types(fake_eps: Any, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}
    fake_eps.add("fogwire.engines", "acme", _acme_plugin(seen), distribution="fogwire-engine-acme")
    plugins = PluginHost(environ={}, find_entry_points=fake_eps)
    profile = Profile(container_engine="acme", engine_options={"socketPath": "/tmp/a.sock", "maxWorkers": 2})
    agent = Agent(profile=profile, paths=_paths(tmp_path), plugins=plugins, api_socket=False)
    with pytest.raises(PluginLoadError) as caught:
        async with agent.session():
            pass
    assert seen["configured"] == [agent.converter]  # the entry-point plugin's hook ran on the agent's converter
    assert seen["converter"] is agent.converter  # and the engine got that converter
    assert seen["options"] == AcmeOptions("/tmp/a.sock", 2)
    assert str(caught.value) == (
        "engine 'acme' from distribution 'fogwire-engine-acme' 1.0 could not be set up: "
        "RuntimeError: the acme daemon is not running"
    )


async def test_a_bad_engine_option_is_a_config_error_with_its_path(fake_eps: Any, tmp_path: Path) -> None:
    fake_eps.add("fogwire.engines", "acme", _acme_plugin({}), distribution="fogwire-engine-acme")
    plugins = PluginHost(environ={}, find_entry_points=fake_eps)
    profile = Profile(container_engine="acme", engine_options={"max_workers": "two"})
    agent = Agent(profile=profile, paths=_paths(tmp_path), plugins=plugins, api_socket=False)
    with pytest.raises(ConfigError) as caught:
        async with agent.session():
            pass
    assert str(caught.value) == (
        "engineOptions (acme):DOC#1: engineOptions.max_workers: unknown field: it is spelled 'maxWorkers'"
    )
