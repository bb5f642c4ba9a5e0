"""The one converter: strict scalars, camelCase keys, unknown keys refused, problems with field paths."""

from __future__ import annotations

import re
from typing import Any

import attrs
import cattrs
import pytest

from fogwire.convert import (
    NonNegativeInt,
    Port,
    PositiveInt,
    make_converter,
    problems_from,
    require_mapping,
    structure,
    to_camel,
)
from fogwire.errors import ConfigError, Problem
from fogwire.model import iofog


@pytest.fixture
def converter() -> cattrs.Converter:
    return make_converter()


def test_make_converter_returns_a_new_converter_never_the_global_one() -> None:
    first, second = make_converter(), make_converter()
    assert first is not second
    assert first is not cattrs.global_converter
    assert cattrs.global_converter.structure("1", int) == 1  # the global one keeps its lax defaults
    own = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    assert make_converter(own) is own


@pytest.mark.parametrize(
    ("value", "cls", "message"),
    [
        ("ture", bool, "expected a boolean (true or false), got 'ture'"),
        (1, bool, "expected a boolean (true or false), got 1"),
        ("8080", int, "expected an integer, got '8080'"),
        (True, int, "expected an integer, got true"),
        (1.5, int, "expected an integer, got 1.5"),
        ("1.5", float, "expected a number, got '1.5'"),
        (5, str, "expected a string, got 5"),
        (None, str, "expected a string, got null"),
        (0, Port, "expected an integer 1-65535, got 0"),
        (65536, Port, "expected an integer 1-65535, got 65536"),
        (True, Port, "expected an integer 1-65535, got true"),
        (-1, NonNegativeInt, "expected an integer ≥ 0, got -1"),
        (0, PositiveInt, "expected an integer ≥ 1, got 0"),
        ("tcpx", iofog.Protocol, "expected one of 'tcp', 'udp', got 'tcpx'"),
    ],
)
def test_strict_scalars(converter: cattrs.Converter, value: Any, cls: Any, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        converter.structure(value, cls)


@pytest.mark.parametrize(
    ("value", "cls", "expected"),
    [
        (True, bool, True),
        (3, int, 3),
        (3, float, 3.0),
        ("x", str, "x"),
        (1, Port, 1),
        (65535, Port, 65535),
        (0, NonNegativeInt, 0),
        ("udp", iofog.Protocol, iofog.Protocol.UDP),
    ],
)
def test_strict_scalars_accept(converter: cattrs.Converter, value: Any, cls: Any, expected: Any) -> None:
    assert converter.structure(value, cls) == expected


@pytest.mark.parametrize(
    ("name", "camel"),
    [
        ("host_network_mode", "hostNetworkMode"),
        ("from_", "from"),
        ("x86", "x86"),
        ("catalog_id", "catalogId"),
        ("timestampsInUTC", "timestampsInUTC"),
    ],
)
def test_to_camel(name: str, camel: str) -> None:
    assert to_camel(name) == camel


def test_models_use_camel_case_keys_both_ways(converter: cattrs.Converter) -> None:
    container = converter.structure(
        {"hostNetworkMode": True, "memoryLimit": 32, "ports": [{"internal": 80, "external": 8080}]}, iofog.Container
    )
    assert container.host_network_mode is True
    assert container.ports == (iofog.PortMapping(Port(80), Port(8080)),)
    data = converter.unstructure(container)
    assert data["hostNetworkMode"] is True
    assert data["memoryLimit"] == 32
    assert data["ports"] == [{"internal": 80, "external": 8080, "protocol": "tcp"}]
    assert "host_network_mode" not in data
    assert converter.structure(data, iofog.Container) == container
    route = converter.structure({"name": "r", "from": "a", "to": "b"}, iofog.Route)
    assert route.from_ == "a"
    assert converter.unstructure(route) == {"name": "r", "from": "a", "to": "b"}


def test_snake_case_keys_are_unknown_fields(converter: cattrs.Converter) -> None:
    with pytest.raises(ConfigError) as caught:
        structure(converter, {"host_network_mode": True}, iofog.Container, "f.yaml", 3)
    assert caught.value.problems == (Problem("f.yaml", 3, "host_network_mode", "unknown field (check the spelling)"),)


def test_env_values_take_any_scalar_as_text(converter: cattrs.Converter) -> None:
    env = converter.structure(
        [{"key": "A", "value": 8080}, {"key": "B", "value": True}, {"key": "C"}], tuple[iofog.EnvVar, ...]
    )
    assert [(e.key, e.value) for e in env] == [("A", "8080"), ("B", "true"), ("C", "")]
    assert converter.unstructure(env[0]) == {"key": "A", "value": "8080"}


def test_extra_hosts_both_forms(converter: cattrs.Converter) -> None:
    hosts = converter.structure(["db:10.0.0.5", {"name": "cache", "address": "10.0.0.6"}], tuple[iofog.ExtraHost, ...])
    assert hosts == (iofog.ExtraHost("db", "10.0.0.5"), iofog.ExtraHost("cache", "10.0.0.6"))
    with pytest.raises(
        ConfigError, match=r"f:DOC#1: \[0\]: expected 'name:address' or \{name, address\}, got 'nocolon'"
    ):
        structure(converter, ["nocolon"], tuple[iofog.ExtraHost, ...], "f", 1)


def test_a_string_is_not_a_list_and_null_is_not_a_mapping(converter: cattrs.Converter) -> None:
    with pytest.raises(ConfigError) as caught:
        structure(
            converter,
            {"commands": "sleep 10", "capAdd": None, "annotations": ["a"]},
            iofog.Container,
            "f",
            1,
            "spec.container",
        )
    assert [str(p) for p in caught.value.problems] == [
        "f:DOC#1: spec.container.commands: expected a list, got 'sleep 10'",
        "f:DOC#1: spec.container.capAdd: expected a list, got null",
        "f:DOC#1: spec.container.annotations: expected a mapping, got a list",
    ]


def test_every_problem_of_a_document_with_nested_paths(converter: cattrs.Converter) -> None:
    data = {
        "images": {"x86": 5},
        "container": {
            "ports": [{"internal": 80, "external": 80}, {"internal": "a", "external": 0, "extra": 1}],
            "volumes": [{"hostDestination": "/a"}],
            "healthCheck": {"test": ["CMD"], "retries": -1},
        },
        "rebuild": "no",
    }
    with pytest.raises(ConfigError) as caught:
        structure(converter, data, iofog.MicroserviceSpec, "f.yaml", 2, "spec")
    assert sorted(str(p) for p in caught.value.problems) == sorted(
        [
            "f.yaml:DOC#2: spec.images.x86: expected a string, got 5",
            "f.yaml:DOC#2: spec.container.ports[1].extra: unknown field (check the spelling)",
            "f.yaml:DOC#2: spec.container.ports[1].internal: expected an integer 1-65535, got 'a'",
            "f.yaml:DOC#2: spec.container.ports[1].external: expected an integer 1-65535, got 0",
            "f.yaml:DOC#2: spec.container.volumes[0].containerDestination: required field is missing",
            "f.yaml:DOC#2: spec.container.healthCheck.retries: expected an integer ≥ 0, got -1",
            "f.yaml:DOC#2: spec.rebuild: expected a boolean (true or false), got 'no'",
        ]
    )


def test_problems_from_a_raw_cattrs_error(converter: cattrs.Converter) -> None:
    with pytest.raises(cattrs.errors.ClassValidationError) as caught:
        converter.structure({"internal": 1, "external": 2, "protocol": "x"}, iofog.PortMapping)
    problems = problems_from(caught.value, "doc", 4, "ports[0]")
    assert problems == [Problem("doc", 4, "ports[0].protocol", "expected one of 'tcp', 'udp', got 'x'")]


def test_require_mapping() -> None:
    assert require_mapping({"a": 1}, "f", 1, "") == {"a": 1}
    with pytest.raises(ConfigError, match=r"^f:DOC#2: spec: expected a mapping, got a list$"):
        require_mapping([1], "f", 2, "spec")


def test_registry_password_is_never_in_a_repr(converter: cattrs.Converter) -> None:
    spec = converter.structure({"url": "r.example", "username": "u", "password": "s3cr3t-pw"}, iofog.RegistrySpec)
    assert spec.password == "s3cr3t-pw"
    assert "s3cr3t-pw" not in repr(spec)


def test_problem_text() -> None:
    assert str(Problem("f.yaml", 1, "spec.x", "bad")) == "f.yaml:DOC#1: spec.x: bad"
    assert str(Problem("f.yaml", 0, "", "no documents in file")) == "f.yaml:DOC#0: no documents in file"
    error = ConfigError([Problem("a", 1, "x", "m"), Problem("a", 2, "y", "n")])
    assert str(error) == "a:DOC#1: x: m\na:DOC#2: y: n"


@attrs.frozen
class PluginOptions:
    """A plugin's own attrs class: not a fogwire model, so it keeps snake_case keys."""

    socket_path: str
    retries: int = 3


def test_plugin_attrs_classes_keep_their_names_and_core_strictness(converter: cattrs.Converter) -> None:
    assert converter.structure({"socket_path": "/s"}, PluginOptions) == PluginOptions("/s")
    with pytest.raises(cattrs.errors.ClassValidationError):
        converter.structure({"socket_path": "/s", "retries": "3"}, PluginOptions)
    with pytest.raises(cattrs.errors.ClassValidationError):
        converter.structure({"socket_path": "/s", "retry": 3}, PluginOptions)
