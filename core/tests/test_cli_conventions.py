"""CLI conventions: help with examples, --version, exit codes 0/1/2, errors on stderr, JSON logs."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import fogwire
from fogwire import _entrypoints

Run = Callable[..., Any]


def test_help_has_examples_exit_codes_and_environment(run_cli: Run, isolated_paths: Path) -> None:
    result = run_cli("--help")
    assert (result.code, result.err) == (0, "")
    assert "examples:\n  fogwire init-config" in result.out
    assert "fogwire validate -f app.yaml" in result.out
    assert "fogwire plugins --json" in result.out
    assert "exit codes: 0 ok, 1 internal or runtime failure, 2 invalid input, 3 unauthorised," in result.out
    assert "4 not found, 5 conflict, 10 no daemon running" in result.out
    for var in ("FOGWIRE_CONFIG", "FOGWIRE_STATE_DIR", "FOGWIRE_DISABLE_PLUGINS", "FOGWIRE_STRICT_PLUGINS"):
        assert var in result.out
    for command in ("plugins", "validate", "init-config", "config"):
        assert re.search(rf"^    {re.escape(command)}\s+\S", result.out, re.M), command


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("validate", "--help"), "-f FILE, --file FILE"),
        (("plugins", "--help"), "--json"),
        (("config", "--help"), "{show,set,switch}"),
        (("init-config", "--help"), "--config FILE"),
    ],
)
def test_subcommand_help(run_cli: Run, isolated_paths: Path, args: tuple[str, ...], expected: str) -> None:
    result = run_cli(*args)
    assert (result.code, result.err) == (0, "")
    assert result.out.startswith(f"usage: fogwire {args[0]}")
    assert expected in result.out


def test_version(run_cli: Run, isolated_paths: Path) -> None:
    result = run_cli("--version")
    assert result.code == 0
    assert result.out == f"fogwire {fogwire.__version__}\n"
    assert fogwire.__version__ == importlib.metadata.version("fogwire")


def test_no_command_prints_help_and_exits_2(run_cli: Run, isolated_paths: Path) -> None:
    result = run_cli()
    assert result.code == 2
    assert result.out.startswith("usage: fogwire")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("bogus",), "fogwire: error: argument COMMAND: invalid choice: 'bogus'"),
        (("plugins", "--bogus"), "fogwire plugins: error: unrecognized arguments: --bogus"),
        (("config", "edit"), "fogwire config: error: argument action: invalid choice: 'edit'"),
        (("--log-format", "xml", "plugins"), "fogwire: error: argument --log-format: invalid choice: 'xml'"),
    ],
)
def test_usage_errors_exit_2_on_stderr(run_cli: Run, isolated_paths: Path, args: tuple[str, ...], message: str) -> None:
    result = run_cli(*args)
    assert result.code == 2
    assert result.out == ""
    assert message in result.err


def test_validation_error_exits_2_on_stderr(run_cli: Run, isolated_paths: Path) -> None:
    bad = isolated_paths / "bad.yaml"
    bad.write_text("kind: Nope\n")
    result = run_cli("validate", "-f", str(bad))
    assert (result.code, result.out) == (2, "")
    assert result.err.startswith(f"{bad}:DOC#1: kind: ")


def _broken_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode() -> object:
        raise ImportError("the SDK is missing")

    def find(group: str) -> list[_entrypoints.EntryPointRecord]:
        if group != "fogwire.engines":
            return []
        return [
            _entrypoints.EntryPointRecord(
                group, "acme", "fogwire_engine_acme.plugin", "fogwire-engine-acme", "1.2", explode
            )
        ]

    monkeypatch.setattr(_entrypoints, "find", find)


def test_runtime_failure_exits_1_with_one_line_on_stderr(
    run_cli: Run, isolated_paths: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _broken_entry_points(monkeypatch)
    monkeypatch.setenv("FOGWIRE_STRICT_PLUGINS", "1")
    result = run_cli("plugins", "--json", "--log-level", "error")
    assert result.code == 1
    assert result.out == ""
    assert result.err == (
        "fogwire plugins: error: FOGWIRE_STRICT_PLUGINS is set and engine 'acme' from distribution "
        "'fogwire-engine-acme' failed: ImportError: the SDK is missing\n"
    )


def test_log_format_json_gives_json_lines(run_cli: Run, isolated_paths: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _broken_entry_points(monkeypatch)
    for args in (("--log-format", "json", "plugins", "--json"), ("plugins", "--json", "--log-format", "json")):
        result = run_cli(*args)
        assert result.code == 0
        lines = result.err.splitlines()
        assert lines, "a broken plugin is logged"
        records = [json.loads(line) for line in lines]
        assert records[0]["level"] == "warning"
        assert records[0]["logger"] == "fogwire.plugins"
        assert records[0]["message"] == (
            "plugin engine 'acme' from fogwire-engine-acme skipped: ImportError: the SDK is missing"
        )
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", records[0]["time"])
        plugins = json.loads(result.out)
        assert {p["name"]: p["status"] for p in plugins}["acme"] == "ImportError: the SDK is missing"


def test_log_format_from_environment_and_text_default(
    run_cli: Run, isolated_paths: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _broken_entry_points(monkeypatch)
    text = run_cli("plugins")
    assert re.match(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING fogwire\.plugins: plugin engine 'acme' from fogwire-engine-acme skipped",
        text.err,
    )
    monkeypatch.setenv("FOGWIRE_LOG_FORMAT", "json")
    assert json.loads(run_cli("plugins").err.splitlines()[0])["level"] == "warning"


def test_log_level_error_hides_warnings(run_cli: Run, isolated_paths: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _broken_entry_points(monkeypatch)
    result = run_cli("--log-level", "error", "plugins")
    assert (result.code, result.err) == (0, "")


def test_plugins_json_lists_builtins(run_cli: Run, isolated_paths: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_entrypoints, "find", lambda group: [])
    result = run_cli("plugins", "--json")
    assert result.code == 0
    assert json.loads(result.out) == [
        {
            "kind": "config_source",
            "name": "file",
            "distribution": "fogwire",
            "version": fogwire.__version__,
            "status": "ok",
            "builtin": True,
        },
        {
            "kind": "reload_sink",
            "name": "log",
            "distribution": "fogwire",
            "version": fogwire.__version__,
            "status": "ok",
            "builtin": True,
        },
    ]


def test_help_imports_no_plugin_sdk_or_heavy_library() -> None:
    code = textwrap.dedent(
        """
        import sys
        from fogwire.cli.main import main
        try:
            main(["--help"])
        except SystemExit:
            pass
        heavy = {"cattrs", "pluggy", "yaml", "attrs", "attr", "platformdirs", "importlib_metadata",
                 "docker", "podman", "grpc", "h2", "hpack", "proton", "aiohttp", "kubernetes"}
        print(sorted(m for m in sys.modules if m.split(".")[0] in heavy or m.startswith("fogwire_")))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.splitlines()[-1] == "[]"
