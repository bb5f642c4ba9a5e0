"""``fogwire daemon`` hands freed C-heap pages back (``malloc_trim``); an embedded ``Agent`` never does."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from fogwire.cli import agent_cmd


class StartedOnly:
    """The one attribute of an agent that ``_trim_memory`` reads."""

    def __init__(self) -> None:
        self.started = asyncio.Event()


def test_malloc_trim_is_found_on_glibc() -> None:
    trim = agent_cmd._malloc_trim()
    assert trim is not None
    assert trim(0) in (0, 1)  # 1: memory was released, 0: there was none to release


async def test_trim_runs_after_start_and_then_periodically(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, bool]] = []
    agent: Any = StartedOnly()

    def fake_trim(pad: int) -> int:
        calls.append((pad, agent.started.is_set()))
        return 0

    monkeypatch.setattr(agent_cmd, "_malloc_trim", lambda: fake_trim)
    monkeypatch.setattr(agent_cmd, "TRIM_AFTER_START_S", 0.05)
    monkeypatch.setattr(agent_cmd, "TRIM_EVERY_S", 0.05)
    task = asyncio.create_task(agent_cmd._trim_memory(agent))
    await asyncio.sleep(0.2)
    assert calls == []  # not before the agent has started
    agent.started.set()
    await asyncio.sleep(0.4)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert len(calls) >= 3
    assert all(call == (0, True) for call in calls)


async def test_no_trim_without_malloc_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_cmd, "_malloc_trim", lambda: None)
    agent: Any = StartedOnly()
    await asyncio.wait_for(agent_cmd._trim_memory(agent), 1)  # returns at once: musl, macOS


def test_embedding_the_agent_loads_no_process_tuning() -> None:
    code = textwrap.dedent(
        """
        import sys
        import fogwire.agent
        print("ctypes" in sys.modules)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.split() == ["False"]
