"""Plugin loading, layer (c): real installed third-party distributions, through the real CLI.

``make setup`` installs ``tests/dists/*`` non-editable into the dev venv:
``fogwire-testplugin-good`` registers the engine ``testengine``;
``fogwire-testplugin-broken`` declares ``testbroken`` but its module fails on import.
A broken plugin that nobody selected must not break any command; selecting it must
fail loudly, naming its distribution.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

FOGWIRE = Path(sys.executable).parent / "fogwire"
BROKEN_CAUSE = "ModuleNotFoundError: No module named 'fogwire_testplugin_missing_sdk'"

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of a ``fogwire`` run: paths under ``tmp_path``, no plugin policy."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FOGWIRE_")}
    environ.update(
        FOGWIRE_CONFIG=str(tmp_path / "etc" / "config.yaml"),
        FOGWIRE_STATE_DIR=str(tmp_path / "state"),
        FOGWIRE_LOG_DIR=str(tmp_path / "log"),
        FOGWIRE_RUN_DIR=str(tmp_path / "run"),
    )
    return environ


@pytest.fixture
def fogwire(env: dict[str, str]) -> Run:
    """Run the installed ``fogwire`` console script."""
    assert FOGWIRE.is_file(), f"{FOGWIRE} is missing: run `make setup`"

    def run(*args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(FOGWIRE), *args], env={**env, **extra_env}, capture_output=True, text=True, timeout=60, check=False
        )

    return run


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _by_name(listing: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    return {f"{entry['kind']}:{entry['name']}": entry for entry in listing}


def test_plugins_json_shows_the_good_one_ok_and_the_broken_one_with_its_import_error(fogwire: Run) -> None:
    result = fogwire("plugins", "--json")
    assert result.returncode == 0, result.stderr
    plugins = _by_name(json.loads(result.stdout))
    assert plugins["engine:testengine"] == {
        "kind": "engine",
        "name": "testengine",
        "distribution": "fogwire-testplugin-good",
        "version": "0.0.1",
        "status": "ok",
        "builtin": False,
    }
    assert plugins["engine:testbroken"] == {
        "kind": "engine",
        "name": "testbroken",
        "distribution": "fogwire-testplugin-broken",
        "version": "0.0.1",
        "status": BROKEN_CAUSE,
        "builtin": False,
    }
    assert plugins["config_source:file"]["status"] == "ok" and plugins["config_source:file"]["builtin"] is True
    assert plugins["reload_sink:log"]["status"] == "ok"
    assert "plugin engine 'testbroken' from fogwire-testplugin-broken skipped: " + BROKEN_CAUSE in result.stderr, (
        result.stderr
    )


def test_plugins_table(fogwire: Run) -> None:
    result = fogwire("plugins")
    assert result.returncode == 0
    rows = {line.split()[1]: line.split() for line in result.stdout.splitlines()[1:]}
    assert rows["testengine"][:5] == ["engine", "testengine", "fogwire-testplugin-good", "0.0.1", "ok"]
    assert rows["testbroken"][:4] == ["engine", "testbroken", "fogwire-testplugin-broken", "0.0.1"]
    assert " ".join(rows["testbroken"][4:]) == BROKEN_CAUSE


def test_every_command_still_works_with_a_broken_plugin_installed(fogwire: Run, tmp_path: Path) -> None:
    assert fogwire("--help").returncode == 0
    assert fogwire("--version").stdout.strip() == "fogwire 0.1.0"
    desired = tmp_path / "app.yaml"
    desired.write_text(
        "apiVersion: iofog.org/v3\nkind: Microservice\nmetadata: {name: web}\nspec: {images: {x86: 'busybox:1'}}\n"
    )
    validated = fogwire("validate", "-f", str(desired))
    assert (validated.returncode, validated.stdout) == (0, f"valid: {desired}\n"), validated.stderr
    init = fogwire("init-config")
    assert init.returncode == 0, init.stderr
    shown = fogwire("config", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["configFileExists"] is True
    assert fogwire("config", "show").returncode == 0


def test_strict_plugins_makes_fogwire_plugins_fail(fogwire: Run) -> None:
    result = fogwire("plugins", "--json", FOGWIRE_STRICT_PLUGINS="1", FOGWIRE_LOAD_PLUGINS="testengine,testbroken")
    assert result.returncode == 1
    assert result.stdout == ""
    assert (
        "fogwire plugins: error: FOGWIRE_STRICT_PLUGINS is set and engine 'testbroken' from distribution "
        f"'fogwire-testplugin-broken' failed: {BROKEN_CAUSE}"
    ) in result.stderr


def test_disabled_broken_plugin_is_listed_as_disabled_and_not_imported(fogwire: Run) -> None:
    result = fogwire("plugins", "--json", FOGWIRE_DISABLE_PLUGINS="fogwire-testplugin-broken")
    assert result.returncode == 0
    plugins = _by_name(json.loads(result.stdout))
    assert plugins["engine:testbroken"]["status"] == "disabled by FOGWIRE_DISABLE_PLUGINS"
    assert plugins["engine:testengine"]["status"] == "ok"
    assert "testbroken" not in result.stderr


def test_selecting_the_broken_plugin_fails_loudly_naming_its_distribution(env: dict[str, str]) -> None:
    result = _python(
        """
        from fogwire.config import parse_agent_config
        from fogwire.errors import PluginLoadError
        from fogwire.plugins import PluginHost

        config = parse_agent_config({"profiles": {"default": {"containerEngine": "testbroken"}}}, "config.yaml")
        try:
            PluginHost().engine_factory(config.profile.container_engine)
        except PluginLoadError as error:
            print(error)
        else:
            print("LOADED")
        """,
        env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "engine 'testbroken' failed to load from distribution 'fogwire-testplugin-broken' (0.0.1), "
        f"entry point 'testbroken' = 'fogwire_testplugin_broken.plugin': {BROKEN_CAUSE}"
    )


def test_selecting_the_good_plugin_imports_only_it_and_its_class_module_on_use(
    env: dict[str, str], tmp_path: Path
) -> None:
    result = _python(
        f"""
        import sys
        from pathlib import Path
        from fogwire.engine import Engine, EngineContext
        from fogwire.plugins import PluginHost

        factory = PluginHost().engine_factory("testengine")
        loaded = sorted(m for m in sys.modules if m.startswith(("fogwire_", "docker", "podman", "grpc", "proton")))
        print(loaded)
        tmp = Path({str(tmp_path)!r})
        engine = factory(EngineContext("agent-1", tmp / "data", tmp / "run", tmp / "log"))
        print(type(engine).__module__, type(engine).__name__, isinstance(engine, Engine), engine.context.agent_id)
        """,
        env,
    )
    assert result.returncode == 0, result.stderr
    modules_line, engine_line = result.stdout.splitlines()
    assert modules_line == "['fogwire_testplugin_good', 'fogwire_testplugin_good.plugin']"
    assert engine_line == "fogwire_testplugin_good.engine TestEngine True agent-1"


def test_python_dash_m_is_the_same_command(env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fogwire.cli", "plugins", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert _by_name(json.loads(result.stdout))["engine:testengine"]["status"] == "ok"


SDKS = ("docker", "podman", "grpc", "h2", "hpack", "google.protobuf", "proton", "aiohttp", "kubernetes", "requests")
"""Top-level modules of the SDKs our plugins wrap: loaded only when their plugin is used."""


def test_listing_every_plugin_imports_no_sdk(env: dict[str, str]) -> None:
    result = _python(
        f"""
        import sys
        from fogwire.plugins import PluginHost

        statuses = PluginHost().discover()
        print(len([s for s in statuses if s.ok and not s.builtin]))
        sdks = {SDKS!r}
        print(sorted(m for m in sys.modules if any(m == s or m.startswith(s + ".") for s in sdks)))
        """,
        env,
    )
    assert result.returncode == 0, result.stderr
    count, sdks = result.stdout.splitlines()
    assert int(count) >= 1, "at least fogwire-testplugin-good loads"
    assert sdks == "[]", f"fogwire plugins imported SDK modules: {sdks}"


NOSDK_MODULE = "fogwire_testplugin_missing_sdk"


def test_plugins_reports_a_factory_whose_sdk_is_missing_without_importing_it(fogwire: Run) -> None:
    result = fogwire("plugins", "--json")
    assert result.returncode == 0, result.stderr
    plugins = _by_name(json.loads(result.stdout))
    assert plugins["engine:testengine-nosdk"]["distribution"] == "fogwire-testplugin-good"
    assert plugins["engine:testengine-nosdk"]["status"] == f"missing dependency: module {NOSDK_MODULE} not installed"
    assert plugins["engine:testengine"]["status"] == "ok"


def _status_with_engine(fogwire: Run, tmp_path: Path, engine: str, *flags: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "etc" / "config.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    desired = tmp_path / "desired.yaml"
    desired.write_text("")
    config.write_text(
        json.dumps(
            {
                "profiles": {
                    "default": {
                        "containerEngine": engine,
                        "configSource": {"name": "file", "options": {"path": str(desired)}},
                    }
                }
            }
        )
    )
    return fogwire(*flags, "status")


def test_a_selected_plugin_whose_factory_fails_is_one_paragraph_naming_its_distribution(
    fogwire: Run, tmp_path: Path
) -> None:
    result = _status_with_engine(fogwire, tmp_path, "testengine-nosdk")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "fogwire status: error: engine 'testengine-nosdk' from distribution 'fogwire-testplugin-good' 0.0.1 "
        f"could not be set up: it needs module {NOSDK_MODULE!r}, which is not installed or fails to import "
        f"(ModuleNotFoundError: No module named {NOSDK_MODULE!r}); "
        "reinstall the distribution with its dependencies"
    )
    assert "Traceback" not in result.stderr


def test_debug_adds_the_traceback(fogwire: Run, tmp_path: Path) -> None:
    result = _status_with_engine(fogwire, tmp_path, "testengine-nosdk", "--debug")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert f"import {NOSDK_MODULE}" in result.stderr
    assert result.stderr.rstrip().endswith("reinstall the distribution with its dependencies")
