"""podman 4.3's inspect racing a process's exit is recognised, and nothing else is.

The race itself (containers/podman#16383) can't be provoked on demand: it needs
the process to exit between podman opening and reading ``/proc/PID/cgroup``.
What fogwire decides from the answer is what is tested here, with the
messages podman gave in its own CI and in ours.
"""

from __future__ import annotations

import pytest
from fogwire_engine_podman.engine import is_exit_race


@pytest.mark.parametrize(
    "message",
    [
        "read /proc/10470/cgroup: no such process",
        "open /proc/66223/cgroup: no such file or directory",
        "container abc: read /proc/1/cgroup: no such process",
    ],
)
def test_the_exit_race_is_recognised(message: str) -> None:
    assert is_exit_race(message)


@pytest.mark.parametrize(
    "message",
    [
        "no such container",
        "read /proc/10470/status: no such process",
        "open /proc/self/cgroup: permission denied",
        "crun: executable file `x` not found in $PATH: No such file or directory: OCI runtime attempted to invoke a command that was not found",
    ],
)
def test_other_failures_are_not_taken_for_it(message: str) -> None:
    assert not is_exit_race(message)
