"""Shared fixtures of core's tests: fake entry points, isolated paths, the CLI in-process."""

from __future__ import annotations

import logging
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from fogwire import _entrypoints
from fogwire.cli.main import main


@attrs.define
class FakeEntryPoints:
    """Entry points handed to :class:`fogwire.plugins.PluginHost` instead of installed ones.

    Each record's ``load`` counts its calls, so a test can assert that an entry
    point the config did not select was never imported.
    """

    records: list[_entrypoints.EntryPointRecord] = attrs.field(factory=list)
    loads: dict[tuple[str, str], int] = attrs.field(factory=dict)
    finds: list[str] = attrs.field(factory=list)

    def add(
        self,
        group: str,
        name: str,
        target: object | Callable[[], object],
        *,
        distribution: str = "fogwire-test-dist",
        version: str = "1.0",
        value: str | None = None,
    ) -> None:
        """Declare entry point ``name`` in ``group`` of ``distribution``.

        ``target`` is what loading returns (a module or object), or a callable run
        on load (to raise like a module that fails on import).
        """

        def load() -> object:
            self.loads[(distribution, name)] = self.loads.get((distribution, name), 0) + 1
            if isinstance(target, types.ModuleType) or not callable(target):
                return target
            return target()

        self.records.append(
            _entrypoints.EntryPointRecord(
                group=group,
                name=name,
                value=value or f"{distribution.replace('-', '_')}.plugin",
                distribution=distribution,
                version=version,
                load=load,
            )
        )

    def loaded(self, distribution: str, name: str) -> int:
        """How many times the entry point was loaded."""
        return self.loads.get((distribution, name), 0)

    def __call__(self, group: str) -> list[_entrypoints.EntryPointRecord]:
        self.finds.append(group)
        return sorted((r for r in self.records if r.group == group), key=lambda r: (r.name, r.distribution))


@pytest.fixture
def fake_eps() -> FakeEntryPoints:
    """An empty set of fake entry points; pass it as ``find_entry_points``."""
    return FakeEntryPoints()


@pytest.fixture
def isolated_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every fogwire path at ``tmp_path`` through the environment; returns ``tmp_path``.

    Also clears the plugin-policy variables so a developer's shell can't change results.
    """
    monkeypatch.setenv("FOGWIRE_CONFIG", str(tmp_path / "etc" / "config.yaml"))
    monkeypatch.setenv("FOGWIRE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("FOGWIRE_LOG_DIR", str(tmp_path / "log"))
    monkeypatch.setenv("FOGWIRE_RUN_DIR", str(tmp_path / "run"))
    for var in ("FOGWIRE_DISABLE_PLUGINS", "FOGWIRE_LOAD_PLUGINS", "FOGWIRE_STRICT_PLUGINS", "FOGWIRE_LOG_FORMAT"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@attrs.frozen
class CliResult:
    """What one in-process ``fogwire`` run returned and printed."""

    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[..., CliResult]]:
    """Run ``fogwire ARGS...`` in-process; returns exit code, stdout and stderr.

    ``SystemExit`` from argparse (``--help``, usage errors) becomes the exit code.
    The root logger's handlers, which the CLI replaces, are restored afterwards.
    """
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    yield run
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
