"""Helpers of the controller tests: provisioning a state dir as the CLI does, and waiting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from fogwire_config_controller import credentials
from fogwire_config_controller.client import ControllerClient
from fogwire_config_controller.testing import StandInController

T = TypeVar("T")


async def provision(controller: StandInController, state_dir: Path, name: str = "node-1", fog_type: int = 1) -> str:
    """Create a node at ``controller`` and provision ``state_dir`` for it (what ``fogwire provision`` does)."""
    node = controller.create_node(name)
    key = controller.provisioning_key(node)
    client = ControllerClient(controller.url)
    reply = await client.request("POST", "agent/provision", {"key": key, "type": fog_type}, authenticated=False)
    answer = reply.data
    credentials.save(state_dir, credentials.Credentials.from_answer(client.base, answer, fog_type))
    return node


async def eventually(check: Callable[[], T | None], what: str, timeout: float = 20.0) -> T:
    """Poll ``check`` until it returns something other than ``None``/``False``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)
