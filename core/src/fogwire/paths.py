"""Where fogwire keeps its config, state, logs and runtime files.

As root: ``/etc/fogwire``, ``/var/lib/fogwire``, ``/var/log/fogwire``,
``/run/fogwire``. Otherwise the platform's user directories (platformdirs). Each
is overridable by environment variable and by a CLI flag (flags win).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path

import attrs

ENV_VARS = {
    "config_file": "FOGWIRE_CONFIG",
    "state_dir": "FOGWIRE_STATE_DIR",
    "log_dir": "FOGWIRE_LOG_DIR",
    "run_dir": "FOGWIRE_RUN_DIR",
}
"""The environment variable overriding each path."""


@attrs.frozen
class Paths:
    """The agent's directories and its config file."""

    config_file: Path
    state_dir: Path
    log_dir: Path
    run_dir: Path

    @property
    def config_dir(self) -> Path:
        """The directory holding the config file."""
        return self.config_file.parent

    @property
    def database(self) -> Path:
        """The SQLite state file."""
        return self.state_dir / "state.db"

    @property
    def api_socket(self) -> Path:
        """The unix socket the daemon serves its API on (the CLI talks to it there)."""
        return self.run_dir / "fogwire.sock"

    @property
    def api_token_file(self) -> Path:
        """The admin token of the daemon's API (0600; edgelet's ``/etc/edgelet/edgelet-api``)."""
        return self.config_dir / "api-token"

    def ensure(self) -> None:
        """Create the directories (0700 for state and run, which hold secrets and sockets)."""
        for directory, mode in ((self.state_dir, 0o700), (self.run_dir, 0o700), (self.log_dir, 0o755)):
            directory.mkdir(parents=True, exist_ok=True, mode=mode)


def default_paths(environ: Mapping[str, str] | None = None, *, is_root: bool | None = None) -> Paths:
    """The paths from the environment, else the defaults for this user."""
    env = os.environ if environ is None else environ
    root = (os.geteuid() == 0 if hasattr(os, "geteuid") else False) if is_root is None else is_root
    if root:
        defaults = {
            "config_file": Path("/etc/fogwire/config.yaml"),
            "state_dir": Path("/var/lib/fogwire"),
            "log_dir": Path("/var/log/fogwire"),
            "run_dir": Path("/run/fogwire"),
        }
    else:
        import platformdirs

        dirs = platformdirs.PlatformDirs("fogwire", appauthor=False)
        with warnings.catch_warnings():
            # Without XDG_RUNTIME_DIR, platformdirs falls back to /tmp/runtime-UID (what we want)
            # and warns on every process; the fallback is fine and documented, so stay quiet.
            warnings.simplefilter("ignore")
            run_dir = Path(dirs.user_runtime_dir)
        defaults = {
            "config_file": Path(dirs.user_config_dir) / "config.yaml",
            "state_dir": Path(dirs.user_state_dir),
            "log_dir": Path(dirs.user_log_dir),
            "run_dir": run_dir,
        }
    chosen = {key: Path(env[var]) if env.get(var) else defaults[key] for key, var in ENV_VARS.items()}
    return Paths(**chosen)


def with_overrides(paths: Paths, **overrides: str | os.PathLike[str] | None) -> Paths:
    """``paths`` with the given (flag) values replacing the environment and defaults."""
    changes = {key: Path(value) for key, value in overrides.items() if value}
    return attrs.evolve(paths, **changes)


def replace_file(path: Path, text: str, mode: int = 0o644) -> None:
    """Make ``path`` hold ``text`` (mode ``mode``), atomically: a reader sees the old or the new file, never half.

    Written to a temporary file beside it, flushed to disk, then renamed over it;
    the directory is made when missing. On any failure the temporary file goes
    and ``path`` is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
