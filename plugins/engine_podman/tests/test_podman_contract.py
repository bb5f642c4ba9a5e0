"""The engine contract suite, run against the real podman service the harness starts."""

from __future__ import annotations

from fogwire.testing.contract import EngineContract


class TestPodmanContract(EngineContract):
    """Every contract test, on the ``podman`` engine."""
