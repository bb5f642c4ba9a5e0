"""Users install per platform from wheels: ``pip install --find-links dist 'fogwire[linux]'`` in a clean venv.

Every distribution that exists (core and each ``plugins/*`` but ``_template``) is built
into a temporary ``dist/``. Which cases run is decided at collection time: each of
core's platform extras whose member distributions all exist, plus one case installing
core and, by name, every plugin distribution no complete extra covers. In each fresh
venv, ``fogwire plugins --json`` must list every installed plugin distribution, all ``ok``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
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
_REST = sorted(set(PLUGIN_FOLDERS) - {m for extra in COMPLETE_EXTRAS for m in EXTRA_MEMBERS[extra]})
if _REST or not CASES:
    CASES[" + ".join(["fogwire", *_REST])] = (["fogwire", *_REST], _REST)
"""Case id → (pip requirements, plugin distributions expected in ``fogwire plugins``): every
distribution that exists is installed by one case, through its platform extra when that is complete."""


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


BUILD_ENV = REPO / ".cache" / "wheel-build-env"
"""Kept between runs (like ``.cache/wheels``): every build backend's requirements, installed once."""


def _build_env() -> Path:
    """The build env, (re)made only when the build requirements or the interpreter changed."""
    stamp = "\n".join([sys.version, *_build_requirements()])
    stamp_file = BUILD_ENV / ".fogwire-stamp"
    if stamp_file.is_file() and stamp_file.read_text() == stamp:
        return BUILD_ENV
    shutil.rmtree(BUILD_ENV, ignore_errors=True)
    _run([sys.executable, "-m", "venv", "--without-pip", str(BUILD_ENV)], timeout=120)
    python = str(BUILD_ENV / "bin" / "python")
    _run([*HOST_PIP, "--python", python, "install", "-q", "--no-compile", *_build_requirements()], timeout=600)
    stamp_file.write_text(stamp)
    return BUILD_ENV


def _build_wheels(out: Path) -> None:
    """Every wheel built without isolation in the one build env holding every backend's requirements."""
    python = str(_build_env() / "bin" / "python")
    folders = [str(REPO / "core"), *(str(f) for f in PLUGIN_FOLDERS.values())]
    _run(
        [*HOST_PIP, "--python", python, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), *folders],
        timeout=600,
    )


WHEELHOUSE = REPO / ".cache" / "test-wheelhouse"
"""Third-party wheels the cases need, kept between runs so installs need no network (pip's HTTP
cache stays empty on this machine); refreshed from the index only when an offline install fails."""
_wheelhouse_lock = threading.Lock()


def _refresh_wheelhouse(requirements: list[str], links: list[str]) -> None:
    with _wheelhouse_lock:
        WHEELHOUSE.mkdir(parents=True, exist_ok=True)
        _run([*HOST_PIP, "wheel", "-q", "--prefer-binary", "-w", str(WHEELHOUSE), *links, *requirements], timeout=600)
        for wheel in WHEELHOUSE.glob("*.whl"):  # our own come from this run's dist/, never from here
            if _norm(wheel.name.split("-")[0]) in {"fogwire", *PLUGIN_FOLDERS}:
                wheel.unlink()


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
    links = ["--find-links", str(dist), "--find-links", str(REPO / ".cache" / "wheels"), "-c", str(pins)]
    install = [*HOST_PIP, "--python", str(venv / "bin" / "python"), "install", "-q", "--no-compile", "--prefer-binary"]
    offline = [*install, "--no-index", "--find-links", str(WHEELHOUSE), *links, *requirements]
    try:
        _run(offline, timeout=600)
    except AssertionError:
        _refresh_wheelhouse(requirements, links)
        _run(offline, timeout=600)
    return venv


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | BaseException]:
    """Wheels built once; then every case's venv installed at the same time (pip mostly waits on I/O)."""
    work = tmp_path_factory.mktemp("wheels")
    dist = work / "dist"
    _build_wheels(dist)
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
    covered = {name for _, expected in CASES.values() for name in expected}
    assert covered == set(PLUGIN_FOLDERS)
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
    if "fogwire-engine-containerd" in expected:
        # its *_pb2 modules are committed, not generated by a build hook: the wheel must carry them
        engine = "import fogwire_engine_containerd.engine"
        _run([str(venv / "bin" / "python"), "-c", engine], timeout=60, cwd=tmp_path)
    builtins = {(p["kind"], p["name"]) for p in listing if p["builtin"]}
    assert {("config_source", "file"), ("reload_sink", "log")} <= builtins
    listed = _run([*HOST_PIP, "--python", str(venv / "bin" / "python"), "list", "--format", "json"], timeout=60).stdout
    names = {_norm(p["name"]) for p in json.loads(listed)}
    assert not {"fogwire-testplugin-good", "fogwire-testplugin-broken"} & names, "the venv must be clean"
    assert "pytest" not in names
