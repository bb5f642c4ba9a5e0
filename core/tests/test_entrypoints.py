"""``fogwire._entrypoints.find`` reads the same entry points as ``importlib_metadata``, without importing it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import importlib_metadata
import pytest

from fogwire import _entrypoints


def oracle(group: str) -> list[tuple[str, str, str, str]]:
    return sorted(
        (ep.name, ep.value, ep.dist.name if ep.dist else "?", ep.dist.version if ep.dist else "?")
        for ep in importlib_metadata.entry_points(group=group)
    )


def found(group: str) -> list[tuple[str, str, str, str]]:
    return sorted((r.name, r.value, r.distribution, r.version) for r in _entrypoints.find(group))


def write_dist(
    root: Path, dirname: str, name: str, version: str, entry_points: str, *, metadata: str = "METADATA"
) -> None:
    info = root / dirname
    info.mkdir(parents=True)
    (info / metadata).write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: x: y\n\nbody\n")
    (info / "entry_points.txt").write_text(entry_points)


def test_every_installed_group_matches_importlib_metadata() -> None:
    groups = {ep.group for dist in importlib_metadata.distributions() for ep in dist.entry_points}
    assert {"console_scripts", "pytest11"} <= groups
    for group in sorted(groups):
        assert found(group) == oracle(group), group
    scripts = [r for r in _entrypoints.find("console_scripts") if r.name == "fogwire"]
    assert [(r.distribution, r.value) for r in scripts] == [("fogwire", "fogwire.cli.main:entry")]
    from fogwire.cli.main import entry

    assert scripts[0].load() is entry


def test_first_distribution_of_a_name_wins_and_load_resolves_attributes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    write_dist(
        first,
        "Demo_Dist-1.0.dist-info",
        "Demo.Dist",
        "1.0",
        "# comment\n[fogwire.test_group]\nalpha = fw_demo_mod:Outer.inner [extra]\n\n[other]\nbeta = fw_demo_mod\n",
    )
    write_dist(second, "demo_dist-2.0.dist-info", "demo-dist", "2.0", "[fogwire.test_group]\ngamma = fw_demo_mod\n")
    write_dist(
        second, "eggy-3.0.egg-info", "eggy", "3.0", "[fogwire.test_group]\ndelta = fw_demo_mod\n", metadata="PKG-INFO"
    )
    (first / "fw_demo_mod.py").write_text("class Outer:\n    inner = 'the inner value'\n")
    monkeypatch.syspath_prepend(str(second))
    monkeypatch.syspath_prepend(str(first))
    monkeypatch.delitem(sys.modules, "fw_demo_mod", raising=False)

    assert found("fogwire.test_group") == [
        ("alpha", "fw_demo_mod:Outer.inner [extra]", "Demo.Dist", "1.0"),
        ("delta", "fw_demo_mod", "eggy", "3.0"),
    ]
    assert found("fogwire.test_group") == oracle("fogwire.test_group")
    assert found("other") == oracle("other")
    records = {r.name: r for r in _entrypoints.find("fogwire.test_group")}
    assert records["alpha"].load() == "the inner value"
    assert records["delta"].load() is sys.modules["fw_demo_mod"]


def test_a_zip_on_sys_path_is_left_to_importlib_metadata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "plugins.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("zipped-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: zipped\nVersion: 1.0\n\n")
        zf.writestr("zipped-1.0.dist-info/entry_points.txt", "[fogwire.test_zip]\nz = zipped_mod\n")
    monkeypatch.syspath_prepend(str(archive))
    assert found("fogwire.test_zip") == [("z", "zipped_mod", "zipped", "1.0")]


def test_find_imports_neither_importlib_metadata_nor_email() -> None:
    code = textwrap.dedent(
        """
        import sys
        from fogwire import _entrypoints
        names = [r.name for r in _entrypoints.find("console_scripts")]
        assert "fogwire" in names, names
        print(sorted(m for m in sys.modules if m.split(".")[0] in {"importlib_metadata", "email", "zipfile", "zipp"}
                     or m == "importlib.metadata"))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.splitlines()[-1] == "[]"
