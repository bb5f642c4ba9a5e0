"""The docker and podman engine distributions, as installed: listed ``ok`` by ``fogwire plugins --json``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.parametrize("name", ["docker", "podman"])
def test_fogwire_plugins_lists_the_engine_ok(name: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fogwire.cli", "plugins", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    listed = {(p["kind"], p["name"]): p for p in json.loads(done.stdout)}
    entry = listed[("engine", name)]
    assert entry["status"] == "ok"
    assert entry["distribution"] == f"fogwire-engine-{name}"


@pytest.mark.parametrize("name", ["docker", "podman"])
def test_selecting_one_engine_imports_no_sdk(name: str) -> None:
    code = (
        "import sys\n"
        "from fogwire.plugins import PluginHost\n"
        f"PluginHost(environ={{}}).engine_factory({name!r})\n"
        "print(sorted(m for m in ('docker', 'podman') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
