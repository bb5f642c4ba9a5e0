"""Validation through the core's router model, settings, and registration."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import pytest
from fogwire_config_k8s import plugin
from fogwire_config_k8s.source import MountedFileSource, Settings
from fogwire_config_k8s.validate import InvalidConfigError, validate_skrouterd_config
from fogwire_router.model import ROUTER_DOCUMENT

from fogwire.errors import SourceError
from fogwire.plugins import PluginHost
from fogwire.sources import SourceContext

SMOKE = [
    ["router", {"id": "smoke-test", "mode": "edge", "helloMaxAgeSeconds": "3"}],
    ["listener", {"name": "amqp", "host": "0.0.0.0", "port": 5672, "role": "normal"}],
]
"""The upstream smoke-test config (``upstream-systems.md`` §1.4), string number included."""


def test_the_upstream_smoke_config_is_valid() -> None:
    assert validate_skrouterd_config(SMOKE, "f") is SMOKE


def test_every_modelled_type_with_its_key() -> None:
    config = [
        ["router", {"id": "r", "mode": "interior"}],
        ["sslProfile", {"name": "p", "caCertFile": "/x/ca.crt"}],
        ["listener", {"name": "l", "port": "amqps", "sslProfile": "p"}],
        ["connector", {"name": "c", "host": "h", "port": "45671"}],
        ["tcpListener", {"name": "tl", "port": "6000", "address": "svc"}],
        ["tcpConnector", {"name": "tc", "host": "10.0.0.1", "port": 8080, "address": "svc"}],
        ["address", {"prefix": "mc", "distribution": "multicast"}],
        ["log", {"module": "ROUTER_CORE", "enable": "error+"}],
        ["site", {"name": "s"}],
    ]
    assert validate_skrouterd_config(config, "f") == config


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({"router": {}}, "(top level): expected a list of [entityType, {attributes}] pairs, got dict"),
        (["router"], "[0]: expected a pair [entityType, {attributes}]"),
        ([["listener", {"port": 1}]], "[0].listener.name: required field is missing"),
        ([["connector", {"name": "c", "port": 70000}]], "[0].connector.port: expected a port 0-65535, got 70000"),
        ([["listener", {"name": "x", "siteID": "a"}]], "[0].listener.siteID: unknown field"),
        ([["autoLink", {"address": "a"}]], "[0]: unknown entity type 'autoLink'"),
        ([["listener", {"name": "x", "sslProfile": "nope"}]], "listener[x].sslProfile: no sslProfile named 'nope'"),
        (
            [
                ["tcpConnector", {"name": "t", "address": "a", "port": 1}],
                ["tcpConnector", {"name": "t", "address": "a", "port": 1}],
            ],
            "[1]: duplicate tcpConnector 't' (also at [0])",
        ),
    ],
)
def test_problems_are_named_by_path(payload: Any, problem: str) -> None:
    with pytest.raises(InvalidConfigError) as caught:
        validate_skrouterd_config(payload, "/cfg/skrouterd.json")
    assert problem in str(caught.value)
    assert str(caught.value).startswith("invalid skrouterd config /cfg/skrouterd.json:")


def test_every_problem_is_reported_at_once() -> None:
    payload = [["listener", {}], ["connector", {"name": "c", "port": -1}], 7]
    with pytest.raises(InvalidConfigError) as caught:
        validate_skrouterd_config(payload, "f")
    assert [p.path for p in caught.value.problems] == ["[0].listener.name", "[1].connector.port", "[2]"]


def test_settings_precedence_and_errors() -> None:
    assert Settings.from_context({}, {}).path == Path("/tmp/skrouterd.json")
    assert Settings.from_context({}, {"QDROUTERD_CONF": "/etc/r.json"}).path == Path("/etc/r.json")
    assert Settings.from_context({"path": "/o.json"}, {"QDROUTERD_CONF": "/etc/r.json"}).path == Path("/o.json")
    assert Settings.from_context({"debounce": "0.5"}, {}).debounce == 0.5
    with pytest.raises(SourceError, match="unknown option\\(s\\) debounse"):
        Settings.from_context({"debounse": 1}, {})
    with pytest.raises(SourceError, match="'debounce' must be a number of seconds, got 'soon'"):
        Settings.from_context({"debounce": "soon"}, {})


def test_plugin_registers_kubernetes(tmp_path: Path) -> None:
    host = PluginHost(environ={}, find_entry_points=lambda group: [], extra_plugins=[plugin])
    source = host.source_factory("kubernetes", ROUTER_DOCUMENT, "test")(
        SourceContext(tmp_path, tmp_path, {"path": str(tmp_path / "c.json")}, {})
    )
    assert isinstance(source, MountedFileSource)


def test_entry_point_is_declared() -> None:
    points = importlib.metadata.entry_points(group="fogwire.config_sources")
    ours = {p.name: p.value for p in points if p.dist is not None and p.dist.name == "fogwire-config-k8s"}
    assert ours == {"kubernetes": "fogwire_config_k8s.plugin"}
