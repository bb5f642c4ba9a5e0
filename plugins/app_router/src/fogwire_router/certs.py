"""SSL profile directories under ``SSL_PROFILE_PATH``, checked and turned into rotations.

Each first-level directory ``<path>/<profile>/`` holding ``ca.crt`` is a profile
(``tls.crt`` and ``tls.key`` are added when present), as in the original wrapper.
The directory is polled (content digests), which sees atomic renames, the
ConfigMap/Secret ``..data`` symlink swap and in-place writes alike.

On a change, the new files are checked before anything is sent: the CA parses, and
the certificate and key parse and belong together (Python's ``ssl`` loads them as a
chain and refuses a mismatched pair). A good change raises the profile's
``ordinal`` by one, so new connections use the new certificates, and sets
``oldestValidOrdinal`` to ``ordinal - keep`` (``keep`` = 1 by default): connections
made with the previous certificates keep running and drain, older ones are closed by
the router. A bad or mismatched pair is reported once and ignored: the router keeps
the certificates it loaded.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
from pathlib import Path

import attrs

from fogwire_router.model import RouterConfig, SslProfile, replace_entities

log = logging.getLogger(__name__)


@attrs.frozen
class ProfileFiles:
    """One profile directory's files and the digest of their content."""

    name: str
    ca_cert_file: str
    cert_file: str | None
    private_key_file: str | None
    digest: str


def check_profile(files: ProfileFiles) -> str | None:
    """Why the profile's files can't be used, or ``None`` when they parse and the pair matches."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_verify_locations(cafile=files.ca_cert_file)
    except (ssl.SSLError, OSError) as error:
        return f"{files.ca_cert_file} is not a readable PEM CA certificate ({error})"
    if (files.cert_file is None) != (files.private_key_file is None):
        return "tls.crt and tls.key must both be present (or both absent)"
    if files.cert_file is not None and files.private_key_file is not None:
        try:
            context.load_cert_chain(files.cert_file, files.private_key_file)
        except (ssl.SSLError, OSError) as error:
            return f"{files.cert_file} and {files.private_key_file} don't parse or don't belong together ({error})"
    return None


def scan(root: Path) -> dict[str, ProfileFiles]:
    """Every profile directory under ``root`` (none when ``root`` does not exist)."""
    found: dict[str, ProfileFiles] = {}
    try:
        entries = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return found
    for directory in entries:
        ca = directory / "ca.crt"
        if not ca.is_file():
            continue
        crt, key = directory / "tls.crt", directory / "tls.key"
        digest = hashlib.sha256()
        for path in (ca, crt, key):
            try:
                digest.update(path.read_bytes())
            except OSError:
                digest.update(b"-")
        found[directory.name] = ProfileFiles(
            directory.name,
            str(ca),
            str(crt) if crt.is_file() else None,
            str(key) if key.is_file() else None,
            digest.hexdigest(),
        )
    return found


class CertProfiles:
    """The profiles on disk, their ordinals, and their merge into a router config."""

    def __init__(self, root: Path, *, keep: int = 1) -> None:
        self.root = root
        self.keep = keep
        self.profiles: dict[str, ProfileFiles] = {}
        self.ordinals: dict[str, int] = {}
        self._rejected: dict[str, str] = {}

    def refresh(self) -> bool:
        """Rescan; return True when a usable profile appeared, changed or went away."""
        changed = False
        current = scan(self.root)
        for name in list(self.profiles):
            if name not in current:
                log.info("ssl profile directory %s/%s removed", self.root, name)
                del self.profiles[name]
                changed = True
        for name, files in current.items():
            known = self.profiles.get(name)
            if known is not None and known.digest == files.digest:
                continue
            if self._rejected.get(name) == files.digest:
                continue
            problem = check_profile(files)
            if problem:
                self._rejected[name] = files.digest
                kept = "the router keeps its current certificates" if known else "the profile is not used"
                log.error("ssl profile %r in %s: %s; %s", name, self.root / name, problem, kept)
                continue
            self._rejected.pop(name, None)
            if known is not None:
                self.ordinals[name] = self.ordinals.get(name, 0) + 1
                log.info("ssl profile %r: new certificates, ordinal %d", name, self.ordinals[name])
            else:
                log.info("ssl profile %r found in %s", name, self.root / name)
            self.profiles[name] = files
            changed = True
        return changed

    def merge(self, config: RouterConfig) -> RouterConfig:
        """``config`` with the disk profiles' paths and ordinals (new profiles added)."""
        if not self.profiles:
            return config

        def update(by_key: dict[str, SslProfile]) -> dict[str, SslProfile]:
            for name, files in self.profiles.items():
                base = by_key.get(name) or SslProfile(name=name)
                ordinal = self.ordinals.get(name)
                by_key[name] = attrs.evolve(
                    base,
                    ca_cert_file=files.ca_cert_file,
                    cert_file=files.cert_file,
                    private_key_file=files.private_key_file,
                    ordinal=ordinal if ordinal is not None else base.ordinal,
                    oldest_valid_ordinal=max(0, ordinal - self.keep)
                    if ordinal is not None
                    else base.oldest_valid_ordinal,
                )
            return by_key

        return replace_entities(config, "sslProfile", update)
