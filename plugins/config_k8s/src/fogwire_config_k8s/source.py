"""The ``kubernetes`` config source: skrouterd's JSON config from a mounted file.

In Kubernetes mode an operator mounts the router's ConfigMap so the config lands
at ``QDROUTERD_CONF`` (default ``/tmp/skrouterd.json``). The kubelet updates a
ConfigMap volume atomically (its AtomicWriter): the new files go into a fresh
``..<timestamp>`` directory, a ``..data_tmp`` symlink to it is renamed over
``..data``, and the visible name is a symlink ``<file> -> ..data/<file>`` that
never changes itself. A watch on the file (or the symlink) misses that swap, and
an inotify watch on a file loses its inode after the first atomic rename
(``python-clients.md`` §6). So this source watches the **directory** with raw
inotify (``inotify_simple``, read from the event loop with ``add_reader``: no
thread, sub-millisecond) and reacts to events on the file's name, on ``..data``,
or on the name the file resolves to.

Events are coalesced (a trailing ``debounce`` of quiet, at most ``debounce_max``
after the first event), then the file is read, parsed and validated. Only a
valid config whose content differs from the last good one becomes current and
is notified. An empty, half-written, invalid or deleted file never replaces the
last good config: :meth:`MountedFileSource.fetch` keeps returning it, a warning
is logged and :attr:`MountedFileSource.degraded` says why, until a good file is
back (re-creation is picked up like any write).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import attrs
from fogwire_router.model import router_converter

from fogwire.errors import SourceError
from fogwire.payloads import JSONValue
from fogwire.sources import ChangeNotice, ConfigSnapshot, ConfigSource, SourceContext
from fogwire_config_k8s.validate import InvalidConfigError, validate_skrouterd_config

log = logging.getLogger(__name__)

DEFAULT_PATH = "/tmp/skrouterd.json"
_INLINE_LIMIT = 32 * 1024
"""Files up to this size are read and validated on the loop (well under a millisecond); larger ones in a thread."""
CONFIGMAP_DATA = "..data"
"""The symlink a ConfigMap volume swaps atomically on every update."""


@attrs.frozen
class Settings:
    """Options of the ``kubernetes`` source (all durations in seconds).

    ``path``: the config file (option, else ``QDROUTERD_CONF``, else
    ``/tmp/skrouterd.json``). ``debounce``: quiet time that ends a burst;
    ``debounce_max``: the longest a burst delays a read. ``startup_timeout``: how
    long the first :meth:`~MountedFileSource.fetch` waits for a valid file;
    ``startup_poll``: how often it looks meanwhile. ``resync_interval``: re-read
    this often even without an event (0: never), a safety net for filesystems
    without inotify (some network mounts).
    """

    path: Path
    debounce: float = 0.1
    debounce_max: float = 1.0
    startup_timeout: float = 30.0
    startup_poll: float = 0.25
    resync_interval: float = 60.0

    @classmethod
    def from_context(cls, options: Mapping[str, Any], environ: Mapping[str, str]) -> Settings:
        """Read the options and ``QDROUTERD_CONF``; raise :class:`SourceError` naming a bad one."""
        known = {"path", "debounce", "debounce_max", "startup_timeout", "startup_poll", "resync_interval"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise SourceError(
                f"kubernetes config source: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        path = str(options.get("path") or environ.get("QDROUTERD_CONF") or DEFAULT_PATH)
        values: dict[str, float] = {}
        for key in known - {"path"}:
            if key in options:
                try:
                    values[key] = float(options[key])
                except (TypeError, ValueError):
                    raise SourceError(
                        f"kubernetes config source option {key!r} must be a number of seconds, got {options[key]!r}"
                    ) from None
                if values[key] < 0:
                    raise SourceError(f"kubernetes config source option {key!r} must not be negative")
        return cls(path=Path(path), **values)


class _Unusable(SourceError):
    """The file can't be used right now (absent, empty, not JSON, invalid)."""


class MountedFileSource(ConfigSource[JSONValue]):
    """The skrouterd config at ``QDROUTERD_CONF``, watched through its directory.

    ``degraded`` is ``None`` while the file on disk is the config in use, else
    why it is not (deleted, empty, not JSON, invalid with the problem's path).
    """

    name = "kubernetes"

    def __init__(self, context: SourceContext) -> None:
        super().__init__(context)
        self.settings = Settings.from_context(context.options, context.environ)
        self.path = self.settings.path
        self.degraded: str | None = None
        self._good: ConfigSnapshot[JSONValue] | None = None
        self._read_identity: tuple[int, ...] | None = None
        self._converter = router_converter(context.converter)
        platform = context.environ.get("SKUPPER_PLATFORM")
        if platform is not None and platform != "kubernetes":
            log.warning(
                "SKUPPER_PLATFORM=%s but the kubernetes config source was selected; reading %s", platform, self.path
            )

    @property
    def last_good(self) -> ConfigSnapshot[JSONValue] | None:
        """The config in use: the last valid content read, or ``None`` before the first."""
        return self._good

    # -- reading --------------------------------------------------------------

    def _read(self) -> ConfigSnapshot[JSONValue]:
        origin = str(self.path)
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raise _Unusable(f"{origin} does not exist (deleted, or not mounted yet)") from None
        except OSError as error:
            raise _Unusable(f"cannot read {origin}: {error.strerror or error}") from None
        if not raw.strip():
            raise _Unusable(f"{origin} is empty")
        try:
            payload = json.loads(raw)
        except ValueError as error:
            raise _Unusable(f"{origin} is not valid JSON (half-written?): {error}") from None
        return ConfigSnapshot.of(origin, validate_skrouterd_config(payload, origin, self._converter))

    async def _refresh_async(self) -> bool:
        """:meth:`_refresh` on the loop for a small file (a ConfigMap is tmpfs: microseconds), else in a thread."""
        try:
            size = os.stat(self.path).st_size
        except OSError:
            size = 0
        if size <= _INLINE_LIMIT:
            return self._refresh()
        return await asyncio.to_thread(self._refresh)

    def _identity(self) -> tuple[int, ...] | None:
        """What changes whenever the file (or what its symlinks point to) is replaced or written."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _refresh(self) -> bool:
        """Read the file; take it if valid and new. True when a new config was taken."""
        identity = self._identity()
        try:
            snapshot = self._read()
        except (_Unusable, InvalidConfigError) as error:
            self._read_identity = None
            reason = str(error)
            if self._good is not None and reason != self.degraded:
                log.warning("%s; keeping the last good config", reason)
            self.degraded = reason
            return False
        if self.degraded is not None and self._good is not None:
            log.info("%s is valid again", self.path)
        self.degraded = None
        self._read_identity = identity
        if self._good is not None and snapshot.digest == self._good.digest:
            return False
        self._good = snapshot
        return True

    async def _wait_first(self) -> ConfigSnapshot[JSONValue]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.startup_timeout
        said = ""
        while True:
            await self._refresh_async()
            if self._good is not None:
                return self._good
            reason = self.degraded or "no config"
            if loop.time() >= deadline:
                raise SourceError(
                    f"gave up after {self.settings.startup_timeout:g}s waiting for a valid skrouterd config: {reason}"
                )
            if reason != said:
                log.warning("waiting up to %gs for a valid config: %s", self.settings.startup_timeout, reason)
                said = reason
            await asyncio.sleep(min(self.settings.startup_poll, max(0.0, deadline - loop.time())))

    async def fetch(self) -> ConfigSnapshot[JSONValue]:
        """The current config: the file if it is valid, else the last good one.

        The first call waits up to ``startup_timeout`` for a valid file, then
        raises :class:`SourceError` saying what is wrong (absent, empty, invalid
        with the problem's path).
        """
        if self._good is None:
            return await self._wait_first()
        # the usual case: the watcher has just read this very file; a stat is enough to know
        if self.degraded is None and self._read_identity is not None and self._identity() == self._read_identity:
            return self._good
        await self._refresh_async()
        return self._good

    # -- watching -------------------------------------------------------------

    def _targets(self) -> tuple[set[Path], set[str]]:
        """Directories to watch and names that matter in them."""
        directories = {self.path.parent}
        names = {self.path.name, CONFIGMAP_DATA}
        try:
            resolved = self.path.resolve(strict=True)
        except OSError:
            return directories, names
        names.add(resolved.name)
        # a ConfigMap's real file lives in ..<timestamp>/, which is deleted on the next swap:
        # watching the parent's ..data is what sees the swap, not that directory
        if not resolved.parent.name.startswith("..") and resolved.parent != self.path.parent:
            directories.add(resolved.parent)
        return directories, names

    async def changes(self) -> AsyncIterator[ChangeNotice]:
        """Yield a notice each time a new, valid, different config is on disk."""
        from inotify_simple import INotify, flags

        mask = (
            flags.CREATE
            | flags.MOVED_TO
            | flags.MOVED_FROM
            | flags.CLOSE_WRITE
            | flags.MODIFY
            | flags.DELETE
            | flags.ATTRIB
            | flags.DELETE_SELF
            | flags.MOVE_SELF
        )
        loop = asyncio.get_running_loop()
        inotify = INotify(nonblocking=True)
        pending = asyncio.Event()
        watches: dict[int, Path] = {}
        names: set[str] = set()

        def on_readable() -> None:
            try:
                events = inotify.read(timeout=0)
            except BlockingIOError:
                return
            for event in events:
                if event.mask & flags.Q_OVERFLOW:
                    pending.set()
                elif event.mask & (flags.IGNORED | flags.DELETE_SELF | flags.MOVE_SELF):
                    watches.pop(event.wd, None)
                    pending.set()
                elif event.name in names:
                    pending.set()

        def rewatch() -> None:
            directories, wanted = self._targets()
            names.clear()
            names.update(wanted)
            have = set(watches.values())
            for directory in directories - have:
                try:
                    watches[inotify.add_watch(directory, mask)] = directory
                except OSError as error:
                    log.debug("cannot watch %s yet (%s); polling", directory, error)
            for wd, directory in list(watches.items()):
                if directory not in directories:
                    with contextlib.suppress(OSError):
                        inotify.rm_watch(wd)
                    watches.pop(wd, None)

        loop.add_reader(inotify.fileno(), on_readable)
        try:
            while True:
                rewatch()
                missing = self._targets()[0] - set(watches.values())
                idle = self.settings.startup_poll if missing else (self.settings.resync_interval or None)
                try:
                    async with asyncio.timeout(idle):
                        await pending.wait()
                except TimeoutError:
                    why = "watched directory appeared" if missing else "periodic re-read"
                else:
                    why = "file changed"
                    await self._debounce(pending)
                pending.clear()
                if await self._refresh_async():
                    assert self._good is not None
                    yield ChangeNotice(f"{self.path}: {why} ({self._good.digest[:19]})")
        finally:
            loop.remove_reader(inotify.fileno())
            inotify.close()

    async def _debounce(self, pending: asyncio.Event) -> None:
        """Wait for ``debounce`` seconds of quiet, but no longer than ``debounce_max`` in all."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.settings.debounce_max
        while True:
            pending.clear()
            quiet = min(self.settings.debounce, give_up - loop.time())
            if quiet <= 0:
                return
            try:
                async with asyncio.timeout(quiet):
                    await pending.wait()
            except TimeoutError:
                return


__all__ = ["DEFAULT_PATH", "MountedFileSource", "Settings"]
