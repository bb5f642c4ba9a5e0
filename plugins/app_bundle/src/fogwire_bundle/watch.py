"""Watch a drop directory and import every bundle that lands in it.

A file counts as landed when it no longer ends in ``.partial`` (the usual "upload,
then rename" convention) and its size and mtime have not changed for ``settle``
seconds (for copies that write in place). It is then imported and moved, with its
``.sha256`` sidecar, to ``DIR/done/`` or to ``DIR/failed/`` with
``<name>.reason.txt`` beside it. Polling keeps it portable (any filesystem, USB
sticks, network shares) and cheap at the default interval.

:class:`BundleWatcher` is what ``fogwire bundle watch`` runs and what the daemon
can run as a task: ``await watcher.run()`` until cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs

from fogwire_bundle.importer import ImportResult

log = logging.getLogger(__name__)

IGNORED_SUFFIXES = (".partial", ".sha256", ".reason.txt", ".tmp")
"""Files in the drop directory that are never imported by themselves."""

Importer = Callable[[Path], Awaitable[ImportResult]]


@attrs.frozen
class WatchOutcome:
    """One bundle the watcher handled: where it went, and why if it failed."""

    bundle: str
    moved_to: str
    ok: bool
    reason: str = ""
    result: ImportResult | None = None


class BundleWatcher:
    """Import bundles dropped into ``directory``; see the module docstring."""

    def __init__(
        self,
        directory: Path,
        importer: Importer,
        *,
        interval: float = 2.0,
        settle: float = 2.0,
        on_done: Callable[[WatchOutcome], Awaitable[None] | None] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.importer = importer
        self.interval = interval
        self.settle = settle
        self.on_done = on_done
        self.done_dir = self.directory / "done"
        self.failed_dir = self.directory / "failed"
        self._seen: dict[str, tuple[int, int, float]] = {}
        self.outcomes: list[WatchOutcome] = []

    def _candidates(self) -> list[Path]:
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return []
        out: list[Path] = []
        for entry in entries:
            name = entry.name
            if name.startswith(".") or name.endswith(IGNORED_SUFFIXES) or not entry.is_file(follow_symlinks=False):
                continue
            out.append(Path(entry.path))
        return sorted(out)

    def ready(self) -> list[Path]:
        """Bundles whose size and mtime have been stable for ``settle`` seconds."""
        now = time.monotonic()
        ready: list[Path] = []
        present: set[str] = set()
        for path in self._candidates():
            try:
                info = path.stat()
            except FileNotFoundError:
                continue
            present.add(path.name)
            key = (info.st_size, info.st_mtime_ns)
            previous = self._seen.get(path.name)
            if previous is None or previous[:2] != key:
                self._seen[path.name] = (*key, now)
                continue
            if now - previous[2] >= self.settle:
                ready.append(path)
        for name in list(self._seen):
            if name not in present:
                del self._seen[name]
        return ready

    async def handle(self, path: Path) -> WatchOutcome:
        """Import one landed bundle and move it to ``done/`` or ``failed/``."""
        self._seen.pop(path.name, None)
        try:
            result = await self.importer(path)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            reason = str(error) or type(error).__name__
            log.error("bundle %s failed: %s", path.name, reason)
            moved = self._move(path, self.failed_dir)
            (self.failed_dir / f"{path.name}.reason.txt").write_text(reason + "\n")
            outcome = WatchOutcome(str(path), str(moved), False, reason)
        else:
            moved = self._move(path, self.done_dir)
            log.info("bundle %s imported: %d image(s)", path.name, len(result.images))
            outcome = WatchOutcome(str(path), str(moved), True, "", result)
        self.outcomes.append(outcome)
        if self.on_done is not None:
            maybe = self.on_done(outcome)
            if maybe is not None:
                await maybe
        return outcome

    def _move(self, path: Path, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / path.name
        if target.exists():
            target = directory / f"{path.name}.{time.strftime('%Y%m%dT%H%M%S')}"
        os.replace(path, target)
        sidecar = path.with_name(path.name + ".sha256")
        with contextlib.suppress(FileNotFoundError):
            os.replace(sidecar, target.with_name(target.name + ".sha256"))
        return target

    async def scan_once(self) -> list[WatchOutcome]:
        """Handle every bundle that is ready now."""
        return [await self.handle(path) for path in self.ready()]

    async def run(self, *, once: bool = False) -> None:
        """Scan every ``interval`` seconds until cancelled (``once``: until the directory is drained)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        log.info("watching %s for bundles", self.directory)
        while True:
            await self.scan_once()
            if once and not self._candidates():
                return
            await asyncio.sleep(self.interval)
