"""The mounted-file source against real files: kubelet's swap, renames, in-place writes and faults."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from pathlib import Path

import pytest
from fogwire_config_k8s.source import MountedFileSource
from k8slib import FAST, ConfigMapVolume, SourceMaker, dump, router_config, until

from fogwire.errors import SourceError
from fogwire.sources import SourceContext


async def test_in_place_write(tmp_path: Path, make_source: SourceMaker, watching) -> None:
    path = tmp_path / "skrouterd.json"
    path.write_text(dump(router_config(1)))
    source = make_source(path)
    assert (await source.fetch()).payload == router_config(1)
    watch = await watching(source)
    with open(path, "w") as handle:  # truncate and rewrite the same inode
        handle.write(dump(router_config(2)))
    notice = await watch.next()
    assert "file changed" in notice.reason
    assert (await source.fetch()).payload == router_config(2)


async def test_atomic_rename(tmp_path: Path, make_source: SourceMaker, watching) -> None:
    path = tmp_path / "skrouterd.json"
    path.write_text(dump(router_config(1)))
    source = make_source(path)
    await source.fetch()
    watch = await watching(source)
    for generation in (2, 3, 4):
        tmp = tmp_path / ".skrouterd.json.tmp"
        tmp.write_text(dump(router_config(generation)))
        os.replace(tmp, path)
        await watch.next()
        assert (await source.fetch()).payload == router_config(generation)


async def test_configmap_symlink_swap_as_kubelet_does_it(tmp_path: Path, make_source: SourceMaker, watching) -> None:
    volume = ConfigMapVolume(tmp_path / "config")
    volume.write(dump(router_config(1)))
    assert volume.path.is_symlink() and os.readlink(volume.path) == "..data/skrouterd.json"
    source = make_source(volume.path)
    assert (await source.fetch()).payload == router_config(1)
    watch = await watching(source)
    for generation in range(2, 7):
        old_target = volume.path.resolve()
        volume.write(dump(router_config(generation)))
        assert volume.path.resolve() != old_target and not old_target.exists()
        await watch.next()
        assert (await source.fetch()).payload == router_config(generation)
        assert source.degraded is None


async def test_qdrouterd_conf_names_the_file(tmp_path: Path, make_source: SourceMaker) -> None:
    path = tmp_path / "elsewhere.json"
    path.write_text(dump(router_config(1)))
    source = MountedFileSource(SourceContext(tmp_path, tmp_path, FAST, {"QDROUTERD_CONF": str(path)}))
    assert source.path == path
    assert MountedFileSource(SourceContext(tmp_path, tmp_path, {}, {})).path == Path("/tmp/skrouterd.json")
    assert (await source.fetch()).origin == str(path)


async def test_burst_is_coalesced_and_the_last_content_wins(tmp_path: Path, make_source: SourceMaker, watching) -> None:
    volume = ConfigMapVolume(tmp_path / "config")
    volume.write(dump(router_config(0)))
    source = make_source(volume.path, debounce=0.1, debounce_max=1.0)
    await source.fetch()
    watch = await watching(source)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for generation in range(1, 101):  # 100 updates in about 0.3 s (longer on a loaded machine)
        if generation % 2:
            volume.write(dump(router_config(generation)))
        else:
            tmp = volume.directory / "..data" / "skrouterd.json"
            tmp.write_text(dump(router_config(generation)))  # an in-place write through the symlink
        await asyncio.sleep(0.003)
    elapsed = loop.time() - started
    notices = await watch.drain(quiet=0.5)
    # at most one read per debounce_max while the burst lasts, plus the one after it
    assert 1 <= len(notices) <= int(elapsed / 1.0) + 2, (len(notices), elapsed)
    assert (await source.fetch()).payload == router_config(100)


async def test_unchanged_content_is_skipped(tmp_path: Path, make_source: SourceMaker, watching) -> None:
    path = tmp_path / "skrouterd.json"
    path.write_text(dump(router_config(1)))
    source = make_source(path)
    first = await source.fetch()
    watch = await watching(source)
    path.write_text(json.dumps(router_config(1), separators=(",", ":")))  # same content, other bytes
    os.utime(path)
    await watch.none_within(0.4)
    path.write_text(dump(router_config(2)))
    await watch.next()
    latest = await source.fetch()
    assert latest.digest != first.digest and latest.payload == router_config(2)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "is empty"),
        ("   \n", "is empty"),
        ('[["router", {"id": "half', "is not valid JSON (half-written?)"),
        (
            json.dumps([["listener", {"name": "a", "port": 1}], ["listener", {"name": "a", "port": 2}]]),
            "[1]: duplicate listener 'a' (also at [0])",
        ),
        (json.dumps([["listener", {"name": "a", "siteID": "x"}]]), "[0].listener.siteID: unknown field"),
        (json.dumps({"router": {}}), "expected a list of [entityType, {attributes}] pairs, got dict"),
    ],
)
async def test_unusable_content_keeps_the_last_good_config(
    tmp_path: Path, make_source: SourceMaker, watching, caplog: pytest.LogCaptureFixture, text: str, reason: str
) -> None:
    path = tmp_path / "skrouterd.json"
    path.write_text(dump(router_config(1)))
    source = make_source(path)
    good = await source.fetch()
    watch = await watching(source)
    with caplog.at_level(logging.WARNING, logger="fogwire_config_k8s.source"):
        path.write_text(text)
        await watch.none_within(0.4)
        assert (await source.fetch()) == good
    assert source.degraded is not None and reason in source.degraded
    assert any(reason in r.getMessage() and "keeping the last good config" in r.getMessage() for r in caplog.records)
    path.write_text(dump(router_config(2)))
    await watch.next()
    assert (await source.fetch()).payload == router_config(2)
    assert source.degraded is None


async def test_half_written_file_then_completed(tmp_path: Path, make_source: SourceMaker, watching) -> None:
    path = tmp_path / "skrouterd.json"
    path.write_text(dump(router_config(1)))
    source = make_source(path)
    await source.fetch()
    watch = await watching(source)
    text = dump(router_config(2))
    with open(path, "w") as handle:
        handle.write(text[: len(text) // 2])
        handle.flush()
        await asyncio.sleep(0.3)  # the writer stalls longer than the debounce
        assert (await source.fetch()).payload == router_config(1)
        handle.write(text[len(text) // 2 :])
    await watch.next()
    assert (await source.fetch()).payload == router_config(2)


async def test_deletion_keeps_last_good_and_recreation_is_picked_up(
    tmp_path: Path, make_source: SourceMaker, watching
) -> None:
    path = tmp_path / "skrouterd.json"
    path.write_text(dump(router_config(1)))
    source = make_source(path)
    good = await source.fetch()
    watch = await watching(source)
    path.unlink()
    await watch.none_within(0.3)
    assert await source.fetch() == good
    assert source.degraded is not None and "does not exist" in source.degraded
    path.write_text(dump(router_config(1)))  # the same content back: nothing new to apply
    await until(lambda: source.degraded is None)
    await watch.none_within(0.3)
    path.unlink()
    await asyncio.sleep(0.2)
    path.write_text(dump(router_config(3)))
    await watch.next()
    assert (await source.fetch()).payload == router_config(3)


async def test_configmap_directory_removed_and_remounted(tmp_path: Path, make_source: SourceMaker, watching) -> None:
    volume = ConfigMapVolume(tmp_path / "config")
    volume.write(dump(router_config(1)))
    source = make_source(volume.path)
    await source.fetch()
    watch = await watching(source)
    shutil.rmtree(volume.directory)
    await until(lambda: source.degraded is not None)
    assert "does not exist" in str(source.degraded)
    await watch.none_within(0.3)
    remounted = ConfigMapVolume(tmp_path / "config")
    remounted.write(dump(router_config(2)))
    await watch.next()
    assert (await source.fetch()).payload == router_config(2)


async def test_symlink_to_another_directory_is_followed(tmp_path: Path, make_source: SourceMaker, watching) -> None:
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    real = real_dir / "router.json"
    real.write_text(dump(router_config(1)))
    link = tmp_path / "skrouterd.json"
    link.symlink_to(real)
    source = make_source(link)
    await source.fetch()
    watch = await watching(source)
    tmp = real_dir / "router.json.tmp"
    tmp.write_text(dump(router_config(2)))
    os.replace(tmp, real)
    await watch.next()
    assert (await source.fetch()).payload == router_config(2)


async def test_absent_at_start_is_waited_for(tmp_path: Path, make_source: SourceMaker) -> None:
    path = tmp_path / "skrouterd.json"
    source = make_source(path, startup_timeout=5)
    fetching = asyncio.create_task(source.fetch())
    await until(lambda: source.degraded is not None)
    assert "does not exist" in str(source.degraded)
    assert not fetching.done()
    path.write_text(dump(router_config(1)))
    assert (await asyncio.wait_for(fetching, 2)).payload == router_config(1)


async def test_absent_at_start_fails_clearly_after_the_timeout(tmp_path: Path, make_source: SourceMaker) -> None:
    path = tmp_path / "skrouterd.json"
    source = make_source(path, startup_timeout=0.2)
    with pytest.raises(
        SourceError, match=r"gave up after 0.2s waiting for a valid skrouterd config: .* does not exist"
    ):
        await source.fetch()


async def test_invalid_at_start_fails_with_the_problem_path(tmp_path: Path, make_source: SourceMaker) -> None:
    path = tmp_path / "skrouterd.json"
    path.write_text(json.dumps([["listener", {"host": "0.0.0.0", "port": 99999}]]))
    source = make_source(path, startup_timeout=0.2)
    with pytest.raises(SourceError) as caught:
        await source.fetch()
    message = str(caught.value)
    assert "[0].listener.name: required field is missing" in message
    assert "[0].listener.port: expected a port 0-65535, got 99999" in message


async def test_periodic_reread_catches_what_no_event_announced(
    tmp_path: Path, make_source: SourceMaker, watching
) -> None:
    watched = tmp_path / "dir"
    watched.mkdir()
    path = watched / "skrouterd.json"
    path.write_text(dump(router_config(1)))
    source = make_source(path, resync_interval=0.2)
    await source.fetch()
    watch = await watching(source)
    # the same change, made so that inotify sees nothing on the watched names: write a sibling and hard-link it
    sibling = tmp_path / "staged.json"
    sibling.write_text(dump(router_config(2)))
    os.unlink(path)
    os.link(sibling, path)  # a CREATE event names the file; drain it, then change content via the other link
    await watch.next()
    with open(sibling, "w") as handle:  # writes through the other directory entry: no event in watched/
        handle.write(dump(router_config(3)))
    notice = await watch.next(timeout=2)
    assert "periodic re-read" in notice.reason
    assert (await source.fetch()).payload == router_config(3)


async def test_a_large_file_is_read_off_the_loop(tmp_path: Path, make_source: SourceMaker, watching) -> None:
    volume = ConfigMapVolume(tmp_path / "config")
    volume.write(dump(router_config(1)))
    source = make_source(volume.path)
    await source.fetch()
    watch = await watching(source)
    big = router_config(2, listeners=400)
    assert len(dump(big)) > 32 * 1024
    volume.write(dump(big))
    await watch.next()
    assert (await source.fetch()).payload == big
