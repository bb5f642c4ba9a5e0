"""A process's CPU time and memory, read from its cgroup."""

from __future__ import annotations

import os

from fogwire.cgroups import usage_of_pid


def test_this_process_has_cpu_time_and_memory() -> None:
    usage = usage_of_pid(os.getpid())
    assert usage is not None
    assert usage.memory_bytes > 0 and usage.cpu_seconds > 0


def test_a_process_that_is_gone_has_none() -> None:
    assert usage_of_pid(2**22 + 1) is None
