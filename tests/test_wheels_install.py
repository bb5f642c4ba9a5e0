"""Users install per platform from wheels: ``pip install --find-links dist 'fogwire[linux]'`` in a clean venv.

Every distribution that exists (core and each ``plugins/*`` but ``_template``) is built
into a temporary ``dist/``. Which cases run is decided at collection time: each of
core's platform extras whose member distributions all exist, plus one case installing
core and every plugin distribution by name. In each fresh venv, ``fogwire plugins
--json`` must list every installed plugin distribution, all ``ok``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLATFORM_EXTRAS = ("linux", "desktop")


def _project(folder: Path) -> dict[str, object]:
    project: dict[str, object] = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return project


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return _norm(match.group(1))


CORE = _project(REPO / "core")
PLUGIN_FOLDERS = {
    _norm(str(_project(p.parent)["name"])): p.parent
    for p in sorted((REPO / "plugins").glob("*/pyproject.toml"))
    if not p.parent.name.startswith("_")
}
"""Distribution name → folder of every plugin that exists now."""

EXTRA_MEMBERS = {
    extra: sorted(_requirement_name(r) for r in CORE["optional-dependencies"][extra])  # type: ignore[index]
    for extra in PLATFORM_EXTRAS
}
COMPLETE_EXTRAS = [extra for extra, members in EXTRA_MEMBERS.items() if set(members) <= set(PLUGIN_FOLDERS)]
"""The platform extras all of whose member distributions exist (decided at collection)."""

CASES: dict[str, tuple[list[str], list[str]]] = {
    f"fogwire[{extra}]": ([f"fogwire[{extra}]"], EXTRA_MEMBERS[extra]) for extra in COMPLETE_EXTRAS
}
CASES["every distribution"] = (["fogwire", *sorted(PLUGIN_FOLDERS)], sorted(PLUGIN_FOLDERS))
"""Case id → (pip requirements, plugin distributions expected in ``fogwire plugins``)."""


HOST_PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
"""The dev venv's pip, pointed at other environments with ``--python`` (a venv without pip is made in 1 s, not 15)."""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("FOGWIRE_", "PYTHON", "VIRTUAL_ENV"))}


def _run(args: list[str], *, timeout: float, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def _build_requirements() -> list[str]:
    requirements: set[str] = set()
    for folder in [REPO / "core", *PLUGIN_FOLDERS.values()]:
        requirements.update(tomllib.loads((folder / "pyproject.toml").read_text())["build-system"]["requires"])
    return sorted(requirements)


def _build_wheels(out: Path, work: Path) -> None:
    """One build env holding every backend requirement, then every wheel built in it, without isolation."""
    env = work / "build-env"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env)], timeout=120)
    python = str(env / "bin" / "python")
    _run([*HOST_PIP, "--python", python, "install", "-q", "--prefer-binary", *_build_requirements()], timeout=600)
    folders = [str(REPO / "core"), *(str(f) for f in PLUGIN_FOLDERS.values())]
    _run(
        [*HOST_PIP, "--python", python, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), *folders],
        timeout=600,
    )


def _install(case: str, dist: Path, work: Path) -> Path:
    """A fresh venv with the case's requirements installed from ``dist``; returns the venv."""
    requirements, _ = CASES[case]
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=120)
    pins = work / "pins.txt"
    pins.write_text(
        f"fogwire=={CORE['version']}\n"
        + "".join(f"{name}=={_project(folder)['version']}\n" for name, folder in PLUGIN_FOLDERS.items())
    )
    _run(
        [
            *HOST_PIP,
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "-q",
            "--prefer-binary",
            "--find-links",
            str(dist),
            "--find-links",
            str(REPO / ".cache" / "wheels"),
            "-c",
            str(pins),
            *requirements,
        ],
        timeout=600,
    )
    return venv


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | BaseException]:
    """Wheels built once; then every case's venv installed at the same time (pip mostly waits on I/O)."""
    work = tmp_path_factory.mktemp("wheels")
    dist = work / "dist"
    _build_wheels(dist, work)
    wheels = {_norm(w.name.split("-")[0]) for w in dist.glob("*.whl")}
    assert wheels == {"fogwire", *PLUGIN_FOLDERS}
    results: dict[str, Path | BaseException] = {}
    with ThreadPoolExecutor(max_workers=len(CASES)) as pool:
        futures = {case: pool.submit(_install, case, dist, work / f"case{i}") for i, case in enumerate(sorted(CASES))}
        for case, future in futures.items():
            try:
                results[case] = future.result()
            except BaseException as error:  # reported by the case's own test
                results[case] = error
    return results


def test_cases_are_decided_from_what_exists() -> None:
    assert "every distribution" in CASES
    for extra, members in EXTRA_MEMBERS.items():
        assert members, f"core's extra {extra!r} names no distribution"
        assert (extra in COMPLETE_EXTRAS) == all(m in PLUGIN_FOLDERS for m in members)


@pytest.mark.parametrize("case", sorted(CASES))
def test_clean_venv_install_lists_plugins_ok(
    case: str, installed: dict[str, Path | BaseException], tmp_path: Path
) -> None:
    requirements, expected = CASES[case]
    venv = installed[case]
    if isinstance(venv, BaseException):
        raise venv
    fogwire = venv / "bin" / "fogwire"
    assert _run([str(fogwire), "--version"], timeout=60, cwd=tmp_path).stdout == f"fogwire {CORE['version']}\n"
    listing = json.loads(_run([str(fogwire), "plugins", "--json"], timeout=60, cwd=tmp_path).stdout)
    third_party = [p for p in listing if not p["builtin"]]
    assert sorted({_norm(p["distribution"]) for p in third_party}) == expected
    not_ok = [p for p in third_party if p["status"] != "ok"]
    assert not_ok == [], f"plugins not ok after installing {requirements}: {not_ok}"
    builtins = {(p["kind"], p["name"]) for p in listing if p["builtin"]}
    assert {("config_source", "file"), ("reload_sink", "log")} <= builtins
    listed = _run([*HOST_PIP, "--python", str(venv / "bin" / "python"), "list", "--format", "json"], timeout=60).stdout
    names = {_norm(p["name"]) for p in json.loads(listed)}
    assert not {"fogwire-testplugin-good", "fogwire-testplugin-broken"} & names, "the venv must be clean"
    assert "pytest" not in names
