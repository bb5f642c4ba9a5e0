"""``plugins/_template`` stays a working skeleton, and is never installed."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "plugins" / "_template"


def test_template_has_the_plugin_layout() -> None:
    for part in (
        "pyproject.toml",
        "README.md",
        "src/fogwire_kind_name/__init__.py",
        "src/fogwire_kind_name/plugin.py",
        "src/fogwire_kind_name/engine.py",
        "tests/test_plugin.py",
    ):
        assert (TEMPLATE / part).is_file(), part
    project = tomllib.loads((TEMPLATE / "pyproject.toml").read_text())["project"]
    assert project["name"] == "fogwire-kind-name"
    assert project["dependencies"] == ["fogwire"]
    assert project["entry-points"] == {"fogwire.engines": {"name": "fogwire_kind_name.plugin"}}


def test_template_is_not_installed() -> None:
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("fogwire-kind-name")


def test_templates_own_tests_pass_against_the_current_core(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TEMPLATE / "src"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(TEMPLATE),
            str(TEMPLATE / "tests"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
