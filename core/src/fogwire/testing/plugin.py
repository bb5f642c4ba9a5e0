"""The pytest plugin of the engine contract suite (core's ``pytest11`` entry point).

Light on purpose: pytest loads it in every session of every project that has
fogwire installed. It adds the ``--fogwire-engine`` and ``--fogwire-engine-url``
options and, when pytest-asyncio is installed (the ``testing`` extra), registers
the suite's fixtures from :mod:`fogwire.testing.fixtures`. With
``--fogwire-engine NAME`` it also adds :mod:`fogwire.testing.contract` to the
paths pytest collects, so that one option runs the whole suite.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the suite's command-line options."""
    group = parser.getgroup("fogwire", "fogwire engine contract suite")
    group.addoption(
        "--fogwire-engine",
        dest="fogwire_engine",
        default=None,
        metavar="NAME",
        help="run the fogwire engine contract suite against the engine plugin NAME (its entry-point name)",
    )
    group.addoption(
        "--fogwire-engine-url",
        dest="fogwire_engine_url",
        default=None,
        metavar="URL",
        help="the engine's socket URL (EngineContext.url); default: the engine's own default",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the fixtures and, with ``--fogwire-engine``, collect the suite."""
    config.addinivalue_line("markers", "fogwire_contract: a test of the fogwire engine contract suite")
    engine = config.getoption("fogwire_engine")
    try:
        from fogwire.testing import fixtures
    except ImportError as error:
        if engine:
            raise pytest.UsageError(
                f"--fogwire-engine needs fogwire's testing extra ({error}); install it with: pip install 'fogwire[testing]'"
            ) from error
        return
    if not config.pluginmanager.is_registered(fixtures):
        config.pluginmanager.register(fixtures, "fogwire-contract-fixtures")
    if engine:
        import fogwire.testing.contract as contract

        path = str(Path(contract.__file__).resolve())
        if path not in config.args:
            config.args.append(path)
