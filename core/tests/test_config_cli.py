"""The agent config: ``fogwire init-config`` (never overwrites) and ``fogwire config show [--json]``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from fogwire.config import default_config, dump_agent_config, load_agent_config, parse_agent_config
from fogwire.errors import ConfigError
from fogwire.model.agent_config import AgentConfig, PluginSelection, Profile

Run = Callable[..., Any]


def test_init_config_writes_the_default_config(run_cli: Run, isolated_paths: Path) -> None:
    target = isolated_paths / "etc" / "config.yaml"
    assert not target.parent.exists()
    result = run_cli("init-config")
    assert (result.code, result.out, result.err) == (0, f"wrote {target}\n", "")
    config = load_agent_config(target)
    assert config == default_config(target.parent / "desired.yaml")
    assert config.current_profile == "default"
    assert config.profile.container_engine == "containerd"
    assert config.profile.config_source == PluginSelection("file", {"path": str(target.parent / "desired.yaml")})
    assert not list(target.parent.glob("*.tmp"))


def test_init_config_never_overwrites(run_cli: Run, isolated_paths: Path) -> None:
    target = isolated_paths / "etc" / "config.yaml"
    assert run_cli("init-config").code == 0
    first = target.read_bytes()
    second = run_cli("init-config")
    assert (second.code, second.out, second.err) == (0, "", f"{target} exists; not overwritten\n")
    assert target.read_bytes() == first
    edited = "currentProfile: edge\nprofiles:\n  edge: {containerEngine: podman}\n"
    target.write_text(edited)
    assert run_cli("init-config").code == 0
    assert target.read_text() == edited


def test_init_config_honours_the_config_flag(run_cli: Run, isolated_paths: Path) -> None:
    target = isolated_paths / "elsewhere" / "agent.yaml"
    assert run_cli("--config", str(target), "init-config").code == 0
    assert load_agent_config(target).profile.config_source == PluginSelection(
        "file", {"path": str(target.parent / "desired.yaml")}
    )
    assert not (isolated_paths / "etc" / "config.yaml").exists()


def test_init_config_into_an_unwritable_place_is_a_runtime_failure(run_cli: Run, isolated_paths: Path) -> None:
    blocker = isolated_paths / "a-file"
    blocker.write_text("")
    result = run_cli("--config", str(blocker / "sub" / "config.yaml"), "init-config")
    assert result.code == 1
    assert result.out == ""
    assert result.err.startswith("fogwire init-config: error: [Errno 20] Not a directory")


def test_config_show_json_without_a_file_shows_the_defaults(run_cli: Run, isolated_paths: Path) -> None:
    result = run_cli("config", "show", "--json")
    assert result.code == 0
    shown = json.loads(result.out)
    assert shown == {
        "configFile": str(isolated_paths / "etc" / "config.yaml"),
        "configFileExists": False,
        "stateDir": str(isolated_paths / "state"),
        "logDir": str(isolated_paths / "log"),
        "runDir": str(isolated_paths / "run"),
        "config": shown["config"],
    }
    assert shown["config"]["currentProfile"] == "default"
    assert shown["config"]["profiles"]["default"]["containerEngine"] == "containerd"
    assert shown["config"]["profiles"]["default"]["pruningFrequency"] == 24


def test_config_show_reflects_the_file(run_cli: Run, isolated_paths: Path) -> None:
    target = isolated_paths / "etc" / "config.yaml"
    target.parent.mkdir(parents=True)
    target.write_text(
        "currentProfile: edge\n"
        "profiles:\n"
        "  default: {}\n"
        "  edge:\n"
        "    containerEngine: edgelet\n"
        "    pruningFrequency: 0\n"
        "    watchdogEnabled: true\n"
        "    configSource: {name: pot, options: {url: 'http://127.0.0.1:54321'}}\n"
        "    reloadSinks: [{name: log}]\n"
    )
    shown = json.loads(run_cli("config", "show", "--json").out)
    assert shown["configFileExists"] is True
    edge = shown["config"]["profiles"]["edge"]
    assert shown["config"]["currentProfile"] == "edge"
    assert edge["containerEngine"] == "containerd"  # the edgelet alias, normalised
    assert (edge["pruningFrequency"], edge["watchdogEnabled"]) == (0, True)
    assert edge["configSource"] == {"name": "pot", "options": {"url": "http://127.0.0.1:54321"}}
    assert edge["reloadSinks"] == [{"name": "log", "options": {}}]

    text = run_cli("config", "show")
    assert text.code == 0
    header, body = text.out.split("\ncurrentProfile:", 1)
    assert header.splitlines() == [
        f"# config file: {target}",
        f"# state dir: {isolated_paths / 'state'}",
        f"# log dir: {isolated_paths / 'log'}",
        f"# run dir: {isolated_paths / 'run'}",
    ]
    assert yaml.safe_load("currentProfile:" + body) == shown["config"]


def test_config_show_text_says_when_the_file_is_absent(run_cli: Run, isolated_paths: Path) -> None:
    result = run_cli("config", "show")
    assert result.out.splitlines()[0] == f"# config file: {isolated_paths / 'etc' / 'config.yaml'} (absent: defaults)"


def test_config_show_of_an_invalid_file_exits_2_with_paths(run_cli: Run, isolated_paths: Path) -> None:
    target = isolated_paths / "etc" / "config.yaml"
    target.parent.mkdir(parents=True)
    target.write_text("currentProfile: prod\nprofiles:\n  default: {watchdogEnabled: yes please}\n")
    result = run_cli("config", "show", "--json")
    assert result.code == 2
    assert result.out == ""
    assert result.err.splitlines() == [
        f"{target}:DOC#1: profiles.default.watchdogEnabled: expected a boolean (true or false), got 'yes please'"
    ]
    target.write_text("currentProfile: prod\nprofiles:\n  default: {}\n")
    result = run_cli("config", "show")
    assert (result.code, result.err) == (
        2,
        f"{target}:DOC#1: currentProfile: no profile named 'prod' (profiles: default)\n",
    )


def test_config_show_of_invalid_yaml(run_cli: Run, isolated_paths: Path) -> None:
    target = isolated_paths / "etc" / "config.yaml"
    target.parent.mkdir(parents=True)
    target.write_text("profiles: [\n")
    result = run_cli("config", "show")
    assert result.code == 2
    assert result.err.startswith(f"{target}:DOC#1: not valid YAML: ")


def test_dump_and_parse_round_trip() -> None:
    config = AgentConfig(
        "edge",
        {
            "edge": Profile(
                container_engine="podman",
                container_engine_url="unix:///run/podman/podman.sock",
                pruning_frequency=6,
                config_source=PluginSelection("file", {"path": "/srv/desired.yaml"}),
                reload_sinks=(PluginSelection("log"),),
            ),
            "default": Profile(container_engine="docker"),
        },
    )
    assert parse_agent_config(yaml.safe_load(dump_agent_config(config)), "round-trip") == config


def test_empty_config_means_defaults() -> None:
    assert parse_agent_config(None, "c", platform="linux") == parse_agent_config({}, "c", platform="linux")
    assert parse_agent_config(None, "c", platform="linux").profile == Profile(container_engine="containerd")


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (
            {"profiles": {"p": {"arch": "sparc"}}, "currentProfile": "p"},
            "c:DOC#1: profiles.p.arch: expected auto, amd64, arm64, arm or riscv64, got 'sparc'",
        ),
        (
            {"profiles": {"default": {"resyncSeconds": 0}}},
            "c:DOC#1: profiles.default.resyncSeconds: expected an integer ≥ 1, got 0",
        ),
        (
            {"profiles": {"default": {"reloadSinks": {"name": "log"}}}},
            "c:DOC#1: profiles.default.reloadSinks: expected a list, got a mapping",
        ),
        (
            {"profiles": {"default": {"configSource": {"options": {}}}}},
            "c:DOC#1: profiles.default.configSource.name: required field is missing",
        ),
        ({"profiles": "default"}, "c:DOC#1: profiles: expected a mapping, got 'default'"),
        (["a"], "c:DOC#1: expected a mapping, got a list"),
    ],
)
def test_agent_config_problems(data: Any, line: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_agent_config(data, "c", platform="linux")
    assert [str(p) for p in caught.value.problems] == [line]
