"""Where fogwire keeps things: root and user defaults, environment overrides, flags over both."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fogwire.paths import ENV_VARS, Paths, default_paths, with_overrides


def test_root_defaults() -> None:
    paths = default_paths({}, is_root=True)
    assert paths == Paths(
        config_file=Path("/etc/fogwire/config.yaml"),
        state_dir=Path("/var/lib/fogwire"),
        log_dir=Path("/var/log/fogwire"),
        run_dir=Path("/run/fogwire"),
    )
    assert paths.config_dir == Path("/etc/fogwire")
    assert paths.database == Path("/var/lib/fogwire/state.db")
    assert paths.api_socket == Path("/run/fogwire/fogwire.sock")


def test_user_defaults_follow_platformdirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "st"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "rt"))
    paths = default_paths({}, is_root=False)
    assert paths == Paths(
        config_file=tmp_path / "cfg" / "fogwire" / "config.yaml",
        state_dir=tmp_path / "st" / "fogwire",
        log_dir=tmp_path / "st" / "fogwire" / "log",
        run_dir=tmp_path / "rt" / "fogwire",
    )


def test_root_is_detected_from_the_effective_uid() -> None:
    assert default_paths({}) == default_paths({}, is_root=os.geteuid() == 0)


@pytest.mark.parametrize("is_root", [True, False])
def test_each_environment_variable_overrides_one_path(is_root: bool) -> None:
    base = default_paths({}, is_root=is_root)
    for field, var in ENV_VARS.items():
        paths = default_paths({var: f"/custom/{field}"}, is_root=is_root)
        assert getattr(paths, field) == Path(f"/custom/{field}")
        others = {f for f in ENV_VARS if f != field}
        assert all(getattr(paths, f) == getattr(base, f) for f in others)


def test_environment_variable_names() -> None:
    assert ENV_VARS == {
        "config_file": "FOGWIRE_CONFIG",
        "state_dir": "FOGWIRE_STATE_DIR",
        "log_dir": "FOGWIRE_LOG_DIR",
        "run_dir": "FOGWIRE_RUN_DIR",
    }


def test_an_empty_variable_means_the_default() -> None:
    assert default_paths({"FOGWIRE_STATE_DIR": ""}, is_root=True).state_dir == Path("/var/lib/fogwire")


def test_flags_win_over_environment() -> None:
    from_env = default_paths({"FOGWIRE_CONFIG": "/env/config.yaml", "FOGWIRE_RUN_DIR": "/env/run"}, is_root=True)
    paths = with_overrides(from_env, config_file="/flag/config.yaml", state_dir=None, run_dir="")
    assert paths.config_file == Path("/flag/config.yaml")
    assert paths.run_dir == Path("/env/run")
    assert paths.state_dir == Path("/var/lib/fogwire")


def test_ensure_creates_private_state_and_run_directories(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "c" / "config.yaml", tmp_path / "state", tmp_path / "log", tmp_path / "run")
    paths.ensure()
    paths.ensure()
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o700
    assert (tmp_path / "log").is_dir()


def _shown(run_cli: Callable[..., Any], *args: str) -> dict[str, Any]:
    result = run_cli(*args)
    assert result.code == 0, result.err
    shown: dict[str, Any] = json.loads(result.out)
    return shown


def test_cli_uses_environment_then_flags(tmp_path: Path, run_cli: Callable[..., Any], isolated_paths: Path) -> None:
    shown = _shown(run_cli, "config", "show", "--json")
    assert shown["configFile"] == str(tmp_path / "etc" / "config.yaml")
    assert shown["stateDir"] == str(tmp_path / "state")
    assert shown["logDir"] == str(tmp_path / "log")
    assert shown["runDir"] == str(tmp_path / "run")
    flags = (
        "--config",
        str(tmp_path / "f" / "c.yaml"),
        "--state-dir",
        str(tmp_path / "fs"),
        "--log-dir",
        str(tmp_path / "fl"),
        "--run-dir",
        str(tmp_path / "fr"),
    )
    before = _shown(run_cli, *flags, "config", "show", "--json")
    after = _shown(run_cli, "config", "show", "--json", *flags)
    for shown in (before, after):
        assert shown["configFile"] == str(tmp_path / "f" / "c.yaml")
        assert shown["stateDir"] == str(tmp_path / "fs")
        assert shown["logDir"] == str(tmp_path / "fl")
        assert shown["runDir"] == str(tmp_path / "fr")


def test_cli_defaults_without_environment(run_cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV_VARS.values():
        monkeypatch.delenv(var, raising=False)
    expected = default_paths({})
    shown = _shown(run_cli, "config", "show", "--json")
    assert shown["configFile"] == str(expected.config_file)
    assert shown["runDir"] == str(expected.run_dir)


def test_user_run_dir_without_xdg_runtime_dir_falls_back_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    paths = default_paths({}, is_root=False)  # warnings are errors in this suite
    assert paths.run_dir.name == "fogwire"
    assert paths.run_dir.parent.name.startswith("runtime-")
