"""Fixtures: an in-process management peer on a free port, and a sink connected to it."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from mgmt_peer import ManagementState, PeerThread
from skrouterlib import Peer, base_sections, free_port

from fogwire.sinks import SinkContext


@pytest.fixture
def peer() -> Iterator[Peer]:
    port = free_port()
    state = ManagementState()
    state.configure(base_sections(port))
    running = Peer(state, port, PeerThread(state).start())
    yield running
    running.thread.stop()


@pytest.fixture
async def sink(peer: Peer, tmp_path: Path) -> AsyncIterator[Any]:
    from fogwire_sink_skrouter.sink import SkrouterSink

    made = SkrouterSink(SinkContext(tmp_path, tmp_path, options={"url": peer.url, "timeout": 2}))
    yield made
    await made.close()
