"""iofogctl's Volume documents: honoured on the agents they name (the folder copied into place), skipped elsewhere."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from fogwire.convert import make_converter
from fogwire.errors import ConfigError, FogwireError
from fogwire.model.desired import assemble
from fogwire.model.iofog import VolumeSpec
from fogwire.volumes import push_volume


def volume(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "iofog.org/v3", "kind": "Volume", "metadata": {"name": "certs"}, "spec": spec}


def test_a_volume_naming_this_agent_is_kept_and_one_for_others_is_a_notice() -> None:
    mine = volume(source="/srv/a", destination="/data/a", agents=["edge-1", "edge-2"], permissions="644")
    theirs = volume(source="/srv/b", destination="/data/b", agents=["edge-2"])
    desired = assemble(make_converter(), [mine, theirs], "fleet.yaml", agent_name="edge-1")
    assert desired.volumes == (VolumeSpec("/srv/a", "/data/a", ("edge-1", "edge-2"), "644", "certs"),)
    assert desired.notices == ("fleet.yaml:DOC#2: Volume 'certs' is for agents edge-2, not 'edge-1'; skipped here",)


def test_without_an_agent_name_no_volume_is_copied() -> None:
    desired = assemble(make_converter(), [volume(source="/a", destination="/b", agents=["edge-1"])], "f.yaml")
    assert desired.volumes == ()
    assert "this node has no agentName" in desired.notices[0]


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"source": "/a", "destination": "/b", "agents": ["e"], "permissions": "rw"}, "spec.permissions"),
        ({"source": "/a", "destination": "/b", "agents": ["e"], "perms": "644"}, "spec.perms"),
        ({"destination": "/b", "agents": ["e"]}, "spec.source"),
    ],
)
def test_a_bad_volume_is_refused_by_its_path(spec: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as error:
        assemble(make_converter(), [volume(**spec)], "fleet.yaml", agent_name="e")
    assert f"fleet.yaml:DOC#1: {path}" in str(error.value)


def test_push_copies_the_tree_with_the_permissions_and_replaces_files(tmp_path: Path) -> None:
    source, destination = tmp_path / "src", tmp_path / "dest"
    (source / "sub").mkdir(parents=True)
    (source / "a.pem").write_text("one")
    (source / "sub" / "b.txt").write_text("two")
    destination.mkdir()
    (destination / "a.pem").write_text("old")
    (destination / "kept").write_text("not ours")
    assert push_volume(VolumeSpec(str(source), str(destination), ("e",), "640")) == 2
    assert (destination / "a.pem").read_text() == "one"
    assert (destination / "sub" / "b.txt").read_text() == "two"
    assert stat.S_IMODE((destination / "sub" / "b.txt").stat().st_mode) == 0o640
    assert (destination / "kept").read_text() == "not ours", "nothing at the destination is deleted"
    assert sorted(p.name for p in destination.iterdir()) == ["a.pem", "kept", "sub"], "no temporary file left"


def test_a_source_that_is_not_here_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FogwireError, match="is not a folder on this node"):
        push_volume(VolumeSpec(str(tmp_path / "nowhere"), str(tmp_path / "dest"), ("e",)))
    assert push_volume(VolumeSpec(str(tmp_path), str(tmp_path), ("e",))) == 0
