"""Named image users: the layer directories of a snapshot, whiteouts, opaque directories, passwd/group rules."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from fogwire_engine_containerd._users import ProcessUser, layer_dirs, needs_lookup, read_image_file, resolve_user

from fogwire.errors import EngineError

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n"
GROUP = "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nstaff:x:50:app,nobody\nvideo:x:44:app\n"


def write(layer: Path, relative: str, text: str) -> None:
    path = layer / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def image(tmp_path: Path) -> list[Path]:
    base = tmp_path / "lower"
    write(base, "etc/passwd", PASSWD)
    write(base, "etc/group", GROUP)
    return [base]


def test_which_users_need_the_image_files() -> None:
    assert not needs_lookup("")
    assert not needs_lookup("1000:1000")
    assert needs_lookup("1000")  # the gid and groups come from its passwd entry
    assert needs_lookup("app")
    assert needs_lookup("app:50")
    assert needs_lookup("1000:staff")


def test_layer_dirs_of_overlay_and_bind_mounts() -> None:
    overlay = SimpleNamespace(
        type="overlay",
        source="overlay",
        options=["index=off", "workdir=/s/3/work", "upperdir=/s/3/fs", "lowerdir=/s/2/fs:/s/1/fs"],
    )
    assert layer_dirs([overlay]) == [Path("/s/3/fs"), Path("/s/2/fs"), Path("/s/1/fs")]
    view = SimpleNamespace(type="overlay", source="overlay", options=["lowerdir=/s/2/fs:/s/1/fs"])
    assert layer_dirs([view]) == [Path("/s/2/fs"), Path("/s/1/fs")]
    bind = SimpleNamespace(type="bind", source="/s/1/fs", options=["ro", "rbind"])
    assert layer_dirs([bind]) == [Path("/s/1/fs")]


def test_names_groups_and_numbers_resolve_as_docker_does(image: list[Path]) -> None:
    assert resolve_user("app", image) == ProcessUser(1000, 1000, (44, 50))
    assert resolve_user("1000", image) == ProcessUser(1000, 1000, (44, 50))
    assert resolve_user("app:staff", image) == ProcessUser(1000, 50, ())
    assert resolve_user("app:7", image) == ProcessUser(1000, 7, ())
    assert resolve_user("4242", image) == ProcessUser(4242, 0, ())
    assert resolve_user("4242:staff", image) == ProcessUser(4242, 50, ())


def test_missing_user_or_group_is_named(image: list[Path]) -> None:
    with pytest.raises(EngineError, match="'ghost' is not in the image's /etc/passwd"):
        resolve_user("ghost", image)
    with pytest.raises(EngineError, match="'wheel' is not in the image's /etc/group"):
        resolve_user("app:wheel", image)


def test_the_top_layer_wins(image: list[Path], tmp_path: Path) -> None:
    top = tmp_path / "upper"
    write(top, "etc/passwd", "app:x:2000:2000::/:/bin/sh\n")
    assert resolve_user("app", [top, *image]).uid == 2000
    assert resolve_user("app", image).uid == 1000


def test_a_whiteout_deletes_the_file_below(image: list[Path], tmp_path: Path) -> None:
    top = tmp_path / "upper"
    (top / "etc").mkdir(parents=True)
    os.mknod(top / "etc" / "passwd", stat.S_IFCHR | 0o600, os.makedev(0, 0))
    assert read_image_file([top, *image], "etc/passwd") is None
    with pytest.raises(EngineError, match="'app' is not in the image's /etc/passwd"):
        resolve_user("app", [top, *image])


def test_an_opaque_directory_hides_the_layers_below(image: list[Path], tmp_path: Path) -> None:
    top = tmp_path / "upper"
    (top / "etc").mkdir(parents=True)
    try:
        os.setxattr(top / "etc", "trusted.overlay.opaque", b"y")
    except OSError as error:  # needs root and a file system with trusted xattrs (tmpfs, ext4, xfs)
        pytest.fail(f"cannot set the overlay opaque xattr here: {error}")
    assert read_image_file([top, *image], "etc/group") is None
    write(top, "etc/group", "staff:x:51:app\n")
    assert read_image_file([top, *image], "etc/group") == "staff:x:51:app\n"
