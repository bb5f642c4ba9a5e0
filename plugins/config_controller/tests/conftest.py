"""Fixtures: a stand-in controller of each auth generation, and a source on a state dir of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from fogwire_config_controller.source import ControllerSource
from fogwire_config_controller.testing import StandInController

from fogwire.sources import SourceContext


@pytest.fixture(params=["legacy", "jwt"])
async def controller(request: pytest.FixtureRequest) -> AsyncIterator[StandInController]:
    """A running stand-in controller: eclipse-iofog v3.0.x tokens, then Datasance EdDSA JWTs."""
    stand_in = StandInController(auth=request.param)
    await stand_in.start()
    try:
        yield stand_in
    finally:
        await stand_in.close()


@pytest.fixture
async def legacy_controller() -> AsyncIterator[StandInController]:
    """A running stand-in controller speaking the v3.0.x token generation only."""
    stand_in = StandInController(auth="legacy")
    await stand_in.start()
    try:
        yield stand_in
    finally:
        await stand_in.close()


@pytest.fixture
def make_source(tmp_path: Path) -> Callable[..., ControllerSource]:
    """``make_source(url, **profile)``: a controller source on ``tmp_path`` with fast polling."""

    def make(url: str | None = None, options: dict[str, Any] | None = None, **profile: Any) -> ControllerSource:
        settings = {"controllerUrl": url, "changeFrequency": 1, "statusFrequency": 1, **profile}
        return ControllerSource(SourceContext(tmp_path, tmp_path, options or {}, {}, settings))

    return make
