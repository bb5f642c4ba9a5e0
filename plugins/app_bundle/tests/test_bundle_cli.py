"""``fogwire bundle`` as a user runs it: flags, Registry documents, --json, progress, errors."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest
from fogwire_bundle.testing import Image, layout_bundle, prefix_fixture, random_layer

from harness import images, services


def fogwire(*args: str, state: Path, stderr: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fogwire.cli", *args],
        capture_output=stderr is None,
        stderr=stderr,
        stdout=subprocess.PIPE if stderr is not None else None,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "FOGWIRE_STATE_DIR": str(state)},
    )


prefix = prefix_fixture("bundle-cli")


@pytest.fixture
def registry_doc(tmp_path: Path, harness_registry: services.Registry) -> Path:
    doc = tmp_path / "registry.yaml"
    doc.write_text(
        "apiVersion: iofog.org/v3\nkind: Registry\nspec:\n"
        f"  url: http://{harness_registry.url}\n  username: {harness_registry.username}\n"
        f"  password: {harness_registry.password}\n  private: true\n"
    )
    return doc


def test_create_and_import_with_a_registry_document_and_json(
    tmp_path: Path, harness_images: images.TestImages, registry_doc: Path, prefix: str
) -> None:
    out = tmp_path / "site.tar.zst"
    created = fogwire(
        "bundle", "create", "-o", str(out), "--compress", "zstd", "--registry-file", str(registry_doc), "--json",
        harness_images.ref_v1, harness_images.ref_v2, state=tmp_path / "state",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    summary = json.loads(created.stdout)
    assert summary["format"] == "tar.zst" and summary["blobs"] == 6
    assert [i["digest"] for i in summary["images"]] == [harness_images.digest_v1, harness_images.digest_v2]
    assert created.stderr == ""  # --json: no progress lines

    imported = fogwire(
        "bundle", "import", str(out), "--registry", f"http://{harness_images.registry}/{prefix}",
        "--registry-file", str(registry_doc), "--json", state=tmp_path / "state",
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    result = json.loads(imported.stdout)
    assert result["kind"] == "fogwire" and result["blobsMoved"] == 4
    assert [i["target"] for i in result["images"]] == [
        f"{harness_images.registry}/{prefix}/fogwire/busybox:1",
        f"{harness_images.registry}/{prefix}/fogwire/busybox:2",
    ]
    assert harness_images.password not in created.stderr + imported.stderr + imported.stdout


def test_plain_progress_lines_when_not_a_terminal(tmp_path: Path, registry_doc: Path, prefix: str) -> None:
    bundle = layout_bundle(tmp_path, [Image(f"127.0.0.1:1/{prefix}/a:1", [random_layer(tmp_path / "l", 5000, 1)])])
    done = fogwire(
        "bundle", "import", str(bundle), "--registry", "127.0.0.1:5001", "--insecure",
        "--registry-file", str(registry_doc), state=tmp_path / "state",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert f"verifying {bundle.name}: started" in lines
    assert any(line.startswith(f"127.0.0.1:1/{prefix}/a:1 -> 127.0.0.1:5001/{prefix}/a:1: done") for line in lines)
    assert "\r" not in done.stderr
    assert done.stdout.splitlines()[-1].startswith(f"imported {bundle} (fogwire, tar) into registry 127.0.0.1:5001")


def test_live_progress_on_a_terminal(tmp_path: Path, registry_doc: Path, prefix: str) -> None:
    layer = random_layer(tmp_path / "l", 24 << 20, 2)
    bundle = layout_bundle(tmp_path, [Image(f"127.0.0.1:1/{prefix}/big:1", [layer])])
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fogwire.cli", "bundle", "import", str(bundle), "--registry",
             "http://127.0.0.1:5001", "--registry-file", str(registry_doc)],
            stdout=subprocess.DEVNULL, stderr=slave,
            env={**os.environ, "FOGWIRE_STATE_DIR": str(tmp_path / "state")},
        )  # fmt: skip
        os.close(slave)
        chunks = []
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            assert ready, "no output"
            try:
                data = os.read(master, 65536)
            except OSError:  # the pty closed: the process is gone
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(60) == 0
    finally:
        os.close(master)
    text = b"".join(chunks).decode()
    assert "\r" in text and "ETA" in text and "MiB/s" in text
    assert f"127.0.0.1:1/{prefix}/big:1 -> 127.0.0.1:5001/{prefix}/big:1: done" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["import", "{empty}", "--registry", "127.0.0.1:5001"], "is empty (0 bytes)"),
        (["import", "{empty}"], "say where to import: --engine NAME"),
        (["create", "-o", "{out}", "--engine", "docker", "busybox:1"], "the engine contract has no image export"),
        (["create", "-o", "{out}", "--registry-user", "u", "busybox:1"], "needs --registry-password-file"),
        (["create", "-o", "{out}", "--platform", "amd64", "busybox:1"], "is not os/arch[/variant]"),
    ],
    ids=["empty", "no-target", "engine-source", "no-password", "bad-platform"],
)
def test_errors_are_one_line_with_exit_1(tmp_path: Path, args: list[str], message: str) -> None:
    empty = tmp_path / "empty.tar"
    empty.touch()
    argv = [a.format(empty=empty, out=tmp_path / "o.tar") for a in args]
    done = fogwire("bundle", *argv, state=tmp_path / "state")
    assert done.returncode == 1
    assert done.stderr.startswith("fogwire bundle: error: ") and message in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "o.tar").exists()


def test_help_lists_the_actions() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fogwire.cli", "bundle", "--help"], capture_output=True, text=True, check=True
    )
    for action in ("create", "import", "watch"):
        assert action in done.stdout
