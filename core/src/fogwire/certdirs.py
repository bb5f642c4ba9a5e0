"""A registry's CA where a container daemon reads it: ``<root>/<host:port>/*.crt``, for the pull only.

dockerd reads a registry's CAs from ``/etc/docker/certs.d/<host:port>/``, podman from
``/etc/containers/certs.d/<host:port>/``, both at each pull and only there (no pull
option carries a CA). So an engine that lets its daemon pull writes the CA of a
Registry with its own (``requiresCert``) into that directory before the pull and
removes it once no pull needs it: :meth:`RegistryCertDirs.trusting`.

Only what fogwire made is ever changed. A directory fogwire makes carries a marker
file (:data:`MARKER`); a directory without it is the operator's and is used as it is,
never written or removed. In ours, each CA is ``fogwire-<hash>.crt`` (two Registries,
or an old and a new certificate, can be trusted at once) and each pull in progress
holds a file ``.fogwire-hold-<hash>-<token>`` under a shared ``flock``: a holder whose
lock nobody keeps (its process died) is stale. When the last live holder goes, the CA
files, the marker and the directory go. Every change happens under an exclusive
``flock`` on ``<root>`` itself, so agents sharing a daemon (and its directory) never
remove a CA another's pull is using. Writing there needs root, as the daemons do.

Blocking (file locks and writes): engines call it from their worker threads.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from fogwire.errors import EngineError
from fogwire.paths import replace_file

log = logging.getLogger(__name__)

MARKER = ".fogwire"
"""The file marking a per-registry directory as fogwire's (absent: the operator's)."""
MARKER_TEXT = "Made by fogwire for the pulls from this registry; removed with its CA files when none needs them.\n"
HOLD_PREFIX = ".fogwire-hold-"
CA_PREFIX = "fogwire-"
NEW_DIR = ".fogwire-new-"
"""A directory being made (renamed into place when complete): left only by a crash."""

_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def registry_host(reference: str) -> str:
    """The registry ``host[:port]`` of an image reference, as a daemon names its directory (``docker.io`` for Hub)."""
    first, sep, _ = reference.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def _ca_name(ca_pem: str) -> tuple[str, str]:
    text = ca_pem.strip() + "\n"
    return hashlib.sha256(text.encode()).hexdigest()[:16], text


class RegistryCertDirs:
    """The per-registry CA directories under ``root`` a daemon reads (``/etc/docker/certs.d``)."""

    def __init__(self, root: Path, *, daemon: str) -> None:
        self.root = root
        self.daemon = daemon
        """The daemon reading ``root`` (``dockerd``), for messages."""
        self._told: set[str] = set()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.root.mkdir(mode=0o755, parents=True, exist_ok=True)
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as error:
            raise self._cannot(self.root, error) from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _cannot(self, path: Path, error: OSError) -> EngineError:
        why = "the agent runs as root to do this" if error.errno in (errno.EACCES, errno.EPERM) else "check the path"
        return EngineError(
            f"cannot put a registry CA where {self.daemon} reads it ({path}): {error.strerror or error}; {why}, "
            f"or place the CA there yourself and set the engine option registryCertsDir to null"
        )

    @contextlib.contextmanager
    def trusting(self, host: str, ca_pem: str) -> Iterator[Path | None]:
        """Make the daemon trust ``ca_pem`` for registry ``host`` while the block runs.

        Yields the directory holding the CA, or ``None`` when ``host`` has a directory
        of the operator's (used as it is). Idempotent and safe to nest or run from
        several threads and processes at once.
        """
        if not _HOST.fullmatch(host):
            raise EngineError(f"registry {host!r} is not a host[:port] a CA directory can be named after")
        directory = self.root / host
        with self._locked():
            hold = self._hold(directory, ca_pem)
        try:
            yield None if hold is None else directory
        finally:
            if hold is not None:
                with self._locked():
                    os.close(hold[0])
                    hold[1].unlink(missing_ok=True)
                    self._tidy(directory)

    def _hold(self, directory: Path, ca_pem: str) -> tuple[int, Path] | None:
        digest, text = _ca_name(ca_pem)
        try:
            if directory.exists() and not (directory / MARKER).exists():
                if directory.name not in self._told:
                    self._told.add(directory.name)
                    log.info(
                        "%s is not fogwire's: %s uses the CA files in it as they are; the Registry's certificate "
                        "is not written there",
                        directory,
                        self.daemon,
                    )
                return None
            if not directory.exists():
                fresh = self.root / f"{NEW_DIR}{directory.name}-{secrets.token_hex(4)}"
                fresh.mkdir(mode=0o755)
                replace_file(fresh / MARKER, MARKER_TEXT)
                os.rename(fresh, directory)
                log.info("registry %s: its CA is written to %s for %s", directory.name, directory, self.daemon)
            ca_file = directory / f"{CA_PREFIX}{digest}.crt"
            if not ca_file.exists() or ca_file.read_text() != text:
                replace_file(ca_file, text)
            holder = directory / f"{HOLD_PREFIX}{digest}-{secrets.token_hex(8)}"
            fd = os.open(holder, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as error:
            raise self._cannot(directory, error) from error
        fcntl.flock(fd, fcntl.LOCK_SH)
        return fd, holder

    def _tidy(self, directory: Path) -> None:
        """Drop stale holders, the CAs no live holder needs and, with none left, the directory (ours only)."""
        if not (directory / MARKER).exists():
            return
        in_use: set[str] = set()
        for holder in directory.glob(f"{HOLD_PREFIX}*"):
            if _held(holder):
                in_use.add(holder.name.removeprefix(HOLD_PREFIX).split("-", 1)[0])
            else:
                holder.unlink(missing_ok=True)
        for ca_file in directory.glob(f"{CA_PREFIX}*.crt"):
            if ca_file.stem.removeprefix(CA_PREFIX) not in in_use:
                ca_file.unlink(missing_ok=True)
        if in_use:
            return
        (directory / MARKER).unlink(missing_ok=True)
        try:
            directory.rmdir()
            log.info("registry %s: its CA is removed from %s", directory.name, self.root)
        except OSError:
            log.warning("%s holds files fogwire did not write: left in place, now as the operator's", directory)

    def sweep(self) -> None:
        """Tidy every directory of ours under ``root`` (what a crashed pull left), best effort: it never raises.

        Engines call it at start; nothing happens when ``root`` is absent.
        """
        if not self.root.is_dir():
            return
        try:
            with self._locked():
                for entry in self.root.iterdir():
                    if entry.name.startswith(NEW_DIR):
                        shutil.rmtree(entry, ignore_errors=True)
                    elif entry.is_dir():
                        self._tidy(entry)
        except (OSError, EngineError) as error:
            log.warning("could not tidy the registry CA directories under %s: %s", self.root, error)


def _held(holder: Path) -> bool:
    """True while some pull keeps ``holder`` locked."""
    try:
        fd = os.open(holder, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
