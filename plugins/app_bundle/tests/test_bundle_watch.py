"""The drop-directory watcher: waits for complete files, imports, moves to done/ or failed/ with a reason."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fogwire_bundle.importer import ImportResult, RegistryTarget, import_bundle
from fogwire_bundle.testing import Image, client_for, layout_bundle, prefix_fixture, random_layer
from fogwire_bundle.watch import BundleWatcher

from harness import services

prefix = prefix_fixture("bundle-watch")


@pytest.fixture
def bundle(tmp_path: Path, prefix: str) -> Path:
    layer = random_layer(tmp_path / "l.tar", 200_000, seed=31)
    return layout_bundle(tmp_path, [Image(f"127.0.0.1:1/{prefix}/app:1", [layer])], name="app.tar")


async def _until(predicate: object, timeout: float = 15.0) -> None:
    assert callable(predicate)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_partial_upload_is_waited_for_then_imported_and_moved_to_done(
    tmp_path: Path, bundle: Path, harness_registry: services.Registry, prefix: str
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    with client_for(harness_registry) as client:
        target = RegistryTarget(client, "", tmp_path / "resume.json")
        imported: list[Path] = []

        async def importer(path: Path) -> ImportResult:
            imported.append(path)
            return await import_bundle(path, target, work_dir=tmp_path / "work")

        watcher = BundleWatcher(drop, importer, interval=0.02, settle=0.2)
        task = asyncio.create_task(watcher.run())
        try:
            shutil.copy(bundle, drop / "app.tar.partial")
            await asyncio.sleep(0.6)
            assert imported == [] and (drop / "app.tar.partial").exists()
            shutil.copy(bundle.with_name("app.tar.sha256"), drop / "app.tar.sha256")
            os.rename(drop / "app.tar.partial", drop / "app.tar")
            await _until(lambda: (drop / "done" / "app.tar").exists())
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert imported == [drop / "app.tar"]
        assert (drop / "done" / "app.tar.sha256").exists() and not (drop / "app.tar.sha256").exists()
        assert [o.ok for o in watcher.outcomes] == [True]
        assert client.manifest_digest(f"{prefix}/app", "1") is not None


async def test_a_growing_file_is_not_taken_until_stable(tmp_path: Path, bundle: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()

    async def never(path: Path) -> ImportResult:
        raise AssertionError("not called")

    watcher = BundleWatcher(drop, never, interval=0.02, settle=0.3)
    data = bundle.read_bytes()
    target = drop / "app.tar"
    target.write_bytes(data[:1000])
    assert watcher.ready() == []  # first sight
    await asyncio.sleep(0.35)
    with target.open("ab") as f:  # still being copied in place
        f.write(data[1000:5000])
    assert watcher.ready() == []
    await asyncio.sleep(0.1)
    assert watcher.ready() == []  # changed 0.1 s ago
    await asyncio.sleep(0.3)
    assert watcher.ready() == [target]


async def test_bad_bundles_go_to_failed_with_a_reason_and_good_ones_to_done(
    tmp_path: Path, bundle: Path, harness_registry: services.Registry
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    shutil.copy(bundle, drop / "good.tar")
    (drop / "empty.tar").touch()
    data = bundle.read_bytes()
    (drop / "cut.tar").write_bytes(data[: len(data) // 2])
    with client_for(harness_registry) as client:
        target = RegistryTarget(client, "", tmp_path / "resume.json")
        watcher = BundleWatcher(
            drop, lambda p: import_bundle(p, target, work_dir=tmp_path / "work"), interval=0.02, settle=0.05
        )
        await asyncio.wait_for(watcher.run(once=True), 30)
    assert sorted(p.name for p in (drop / "done").iterdir()) == ["good.tar"]
    assert sorted(p.name for p in (drop / "failed").iterdir()) == [
        "cut.tar",
        "cut.tar.reason.txt",
        "empty.tar",
        "empty.tar.reason.txt",
    ]
    assert "truncated" in (drop / "failed" / "cut.tar.reason.txt").read_text()
    assert "empty (0 bytes)" in (drop / "failed" / "empty.tar.reason.txt").read_text()
    assert sorted(p.name for p in drop.iterdir()) == ["done", "failed"]
    assert list((tmp_path / "work").iterdir()) == []


def test_watch_command_once(tmp_path: Path, bundle: Path, harness_registry: services.Registry, prefix: str) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    shutil.copy(bundle, drop / "app.tar")
    (drop / "bad.tar").write_bytes(b"not a bundle at all" * 100)
    password = tmp_path / "pw"
    password.write_text(harness_registry.password + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "fogwire.cli", "bundle", "watch", str(drop), "--once", "--settle", "0.1",
         "--interval", "0.05", "--registry", f"http://{harness_registry.url}", "--registry-user",
         harness_registry.username, "--registry-password-file", str(password), "--json",
         "--work-dir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "FOGWIRE_STATE_DIR": str(tmp_path / "state")},
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # one bundle failed
    assert json.loads(done.stdout)["images"][0]["target"] == f"{harness_registry.url}/{prefix}/app:1"
    assert "bad.tar failed: " in done.stderr and "not a bundle" in done.stderr
    assert (drop / "done" / "app.tar").exists() and (drop / "failed" / "bad.tar.reason.txt").exists()
    assert harness_registry.password not in done.stderr + done.stdout


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "options (bundle-watch):DOC#1: options.dir: required field is missing"),
        ({"dir": 3}, "options (bundle-watch):DOC#1: options.dir: expected a string, got 3"),
        (
            {"dir": "/x", "folder": "/y"},
            "options (bundle-watch):DOC#1: options.folder: unknown field (check the spelling)",
        ),
    ],
)
def test_the_service_refuses_bad_options_with_their_path(
    tmp_path: Path, options: dict[str, object], message: str
) -> None:
    from fogwire_bundle.service import BundleWatchService

    from fogwire.errors import ConfigError
    from fogwire.services import ServiceContext

    context = ServiceContext(tmp_path / "state", tmp_path / "run", agent=None, options=options)  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as caught:
        BundleWatchService(context)
    assert str(caught.value) == message
