"""The skrouter sink takes router config: an agent profile naming it fails at start, naming both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fogwire_router.model import ROUTER_CONFIG, ROUTER_DOCUMENT

from fogwire.agent import Agent
from fogwire.errors import PluginLoadError
from fogwire.hookspecs import hookimpl
from fogwire.model.agent_config import PluginSelection, Profile
from fogwire.paths import Paths
from fogwire.payloads import IOFOG_DOCUMENTS
from fogwire.plugins import PluginHost


class _NeverStartedEngine:
    """An engine plugin whose engine must never be started: the sink is refused first."""

    started = False

    @hookimpl
    def fogwire_register_engines(self, registry: Any) -> None:
        registry.add("never", lambda context: self)

    async def start(self) -> None:
        self.started = True


async def test_an_agent_profile_with_the_skrouter_sink_fails_at_start(tmp_path: Path) -> None:
    engine = _NeverStartedEngine()
    host = PluginHost(environ={}, extra_plugins=[engine])
    profile = Profile(container_engine="never", reload_sinks=(PluginSelection("skrouter"),))
    paths = Paths(tmp_path / "config.yaml", tmp_path / "state", tmp_path / "log", tmp_path / "run")
    agent = Agent(profile=profile, paths=paths, plugins=host, api_socket=False)
    with pytest.raises(PluginLoadError) as caught:
        async with agent.session():
            pass
    assert str(caught.value).startswith(
        "reload sink 'skrouter' (distribution 'fogwire-sink-skrouter' 0.1.0) takes a validated skupper-router "
        "config (fogwire_router.model.RouterConfig), but the agent (fogwire daemon) gives its sinks the agent's "
        "validated desired state"
    )
    assert not engine.started


def test_the_router_takes_router_sources_only() -> None:
    host = PluginHost(environ={})
    assert host.sink_factory("skrouter", ROUTER_CONFIG, "fogwire router")
    assert host.source_factory("router-file", ROUTER_DOCUMENT, "fogwire router")
    with pytest.raises(PluginLoadError, match=r"config source 'file' \(distribution 'fogwire' .*\) produces ioFog"):
        host.source_factory("file", ROUTER_DOCUMENT, "fogwire router (fogwire-router)")
    with pytest.raises(PluginLoadError, match="config source 'router-file' .* produces skupper-router config as data"):
        host.source_factory("router-file", IOFOG_DOCUMENTS, "the agent")
