"""A plugin's options class is structured like core's models: camelCase, strict, field paths."""

from __future__ import annotations

import attrs
import pytest

from fogwire.convert import PositiveInt, make_converter, structure_options
from fogwire.errors import ConfigError


@attrs.frozen
class _Limits:
    max_files: PositiveInt = PositiveInt(3)


@attrs.frozen
class _Options:
    log_max_bytes: PositiveInt = PositiveInt(10)
    cni_bridge: str = "fogwire0"
    limits: _Limits = _Limits()


def test_camel_case_keys_and_defaults() -> None:
    options = structure_options(
        make_converter(), {"logMaxBytes": 5, "limits": {"maxFiles": 2}}, _Options, plugin="demo"
    )
    assert options == _Options(log_max_bytes=PositiveInt(5), limits=_Limits(PositiveInt(2)))
    assert structure_options(make_converter(), None, _Options, plugin="demo") == _Options()


def test_every_problem_named_with_its_path() -> None:
    with pytest.raises(ConfigError) as caught:
        structure_options(
            make_converter(),
            {"logMaxBytes": "big", "cni_bridge": "x", "limits": {"maxFiles": 0}, "nope": 1},
            _Options,
            plugin="demo",
        )
    text = str(caught.value)
    assert "engineOptions (demo):DOC#1: engineOptions.logMaxBytes: expected an integer ≥ 1, got 'big'" in text
    assert "engineOptions.cni_bridge: unknown field: it is spelled 'cniBridge'" in text
    assert "engineOptions.limits.maxFiles: expected an integer ≥ 1, got 0" in text
    assert "engineOptions.nope: unknown field (check the spelling)" in text


def test_options_not_a_mapping() -> None:
    with pytest.raises(ConfigError, match=r"engineOptions: expected a mapping, got a list"):
        structure_options(make_converter(), [1], _Options, plugin="demo")
