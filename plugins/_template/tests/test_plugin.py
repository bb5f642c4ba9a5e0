"""The plugin registers its name, declares the matching entry point and imports its SDK only on use."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from fogwire_kind_name import plugin

from fogwire.engine import Engine, EngineContext
from fogwire.plugins import PluginHost

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_registers_its_engine_into_a_fresh_host(tmp_path: Path) -> None:
    host = PluginHost(environ={}, find_entry_points=lambda group: [], extra_plugins=[plugin])
    factory = host.engine_factory("name")
    engine = factory(EngineContext("agent-1", tmp_path / "data", tmp_path / "run", tmp_path / "log", url=None))
    assert isinstance(engine, Engine)
    assert type(engine).__name__ == "NameEngine"


def test_entry_point_matches_the_registered_name() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    assert project["entry-points"]["fogwire.engines"] == {"name": "fogwire_kind_name.plugin"}


def test_entry_point_module_does_not_import_the_engine_module() -> None:
    code = "import sys, fogwire_kind_name.plugin; print('fogwire_kind_name.engine' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
