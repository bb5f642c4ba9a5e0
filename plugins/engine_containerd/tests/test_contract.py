"""The shared engine contract suite (``fogwire.testing``), unchanged, in both modes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from fogwire.testing.contract import EngineContract
from harness import runtimes


class TestExternalContainerdContract(EngineContract):
    """Against the harness's external containerd (``containerEngineUrl`` set)."""

    @pytest.fixture
    def fogwire_engine_url(self, harness_containerd_url: str) -> str:
        return harness_containerd_url


class TestEmbeddedContainerdContract(EngineContract):
    """Against the plugin's own embedded containerd (no URL; forced even if a system one answers)."""

    @pytest.fixture
    def fogwire_engine_url(self) -> None:
        return None

    @pytest.fixture
    def fogwire_engine_options(self) -> Mapping[str, Any]:
        return {"embedded": True, **runtimes.containerd_options()}
