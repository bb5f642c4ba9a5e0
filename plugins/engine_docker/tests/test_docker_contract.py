"""The engine contract suite, run against the real dockerd the harness starts."""

from __future__ import annotations

from fogwire.testing.contract import EngineContract


class TestDockerContract(EngineContract):
    """Every contract test, on the ``docker`` engine."""
