"""Helpers shared by the kubernetes-source tests (a uniquely named module: every plugin's tests share one session)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fogwire_config_k8s.source import MountedFileSource

from fogwire.sources import ChangeNotice

FAST = {"debounce": 0.05, "debounce_max": 0.5, "startup_timeout": 2, "startup_poll": 0.02, "resync_interval": 0}
"""Options that keep tests quick; the periodic re-read is off so only inotify can trigger."""


def router_config(generation: int, *, listeners: int = 1) -> list[Any]:
    """A small valid skrouterd config; ``generation`` makes each one different."""
    config: list[Any] = [["router", {"id": f"gen-{generation}", "mode": "edge", "helloMaxAgeSeconds": "3"}]]
    for n in range(listeners):
        config.append(["listener", {"name": f"amqp-{n}", "host": "0.0.0.0", "port": 5672 + n, "role": "normal"}])
    return config


class ConfigMapVolume:
    """A ConfigMap volume updated exactly as the kubelet's AtomicWriter does.

    Layout: ``..<timestamp>/<key>`` holds the data, ``..data -> ..<timestamp>``,
    and the visible ``<key> -> ..data/<key>``. An update writes a new timestamped
    directory, points a ``..data_tmp`` symlink at it, renames that over ``..data``
    (the one atomic step), then removes the old directory.
    """

    def __init__(self, directory: Path, key: str = "skrouterd.json") -> None:
        self.directory = directory
        self.key = key
        directory.mkdir(parents=True, exist_ok=True)
        self._current: Path | None = None

    @property
    def path(self) -> Path:
        """The visible file a pod reads."""
        return self.directory / self.key

    def write(self, text: str) -> None:
        """Publish ``text`` as the new content of the key."""
        stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()) + f"{time.time_ns() % 10**9:09d}"
        new = self.directory / stamp
        new.mkdir(mode=0o755)
        (new / self.key).write_text(text)
        os.chmod(new / self.key, 0o644)
        tmp = self.directory / "..data_tmp"
        os.symlink(stamp, tmp)
        os.rename(tmp, self.directory / "..data")
        if not self.path.is_symlink():
            os.symlink(f"..data/{self.key}", self.path)
        if self._current is not None:
            shutil.rmtree(self._current)
        self._current = new


class Watch:
    """Runs ``source.changes()`` in a task and collects its notices."""

    def __init__(self, source: MountedFileSource) -> None:
        self.source = source
        self.notices: asyncio.Queue[ChangeNotice] = asyncio.Queue()
        self._changes = source.changes()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start consuming; returns once the watches are in place."""

        async def consume() -> None:
            async for notice in self._changes:
                await self.notices.put(notice)

        self._task = asyncio.create_task(consume())
        await asyncio.sleep(0.05)

    async def next(self, timeout: float = 3.0) -> ChangeNotice:
        """The next notice, or fail after ``timeout``."""
        async with asyncio.timeout(timeout):
            return await self.notices.get()

    async def none_within(self, seconds: float) -> None:
        """Assert no notice arrives within ``seconds``."""
        await asyncio.sleep(seconds)
        assert self.notices.empty(), f"unexpected notice: {self.notices.get_nowait()}"

    async def drain(self, quiet: float) -> list[ChangeNotice]:
        """Every notice until none arrived for ``quiet`` seconds."""
        got: list[ChangeNotice] = []
        while True:
            try:
                async with asyncio.timeout(quiet):
                    got.append(await self.notices.get())
            except TimeoutError:
                return got

    async def stop(self) -> None:
        """Stop the watcher (closing its inotify descriptor)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._changes.aclose()


SourceMaker = Callable[..., MountedFileSource]


def dump(config: Any) -> str:
    """The file text for ``config`` (4-space indent, as the wrapper writes it)."""
    return json.dumps(config, indent=4)


async def until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    """Wait until ``predicate()`` is true, or fail after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)
