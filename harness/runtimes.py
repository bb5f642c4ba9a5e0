"""The test OCI runtime: runc behind a wrapper that records each call, known to every harness engine.

dockerd learns it from the harness's ``daemon.json`` (``runtimes``), the containerd
engine from its ``runtimes`` option. (podman's REST API ignores a container's
runtime, so the podman plugin offers none.)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fogwire.testing import ContractRuntime

NAME = "fogwire-test-runc"
PATH = Path("/usr/local/libexec/fogwire-test/fogwire-test-runc")
CALLS = Path("/run/fogwire-test-runc/calls")

SCRIPT = f"""#!/bin/sh
# Written by fogwire's test harness: runc, with a record of each call (one line of arguments).
mkdir -p {CALLS.parent}
echo "$*" >> {CALLS}
exec runc "$@"
"""


def ensure_wrapper() -> Path:
    """Write the wrapper unless it is there as it should be; its path."""
    if not PATH.is_file() or PATH.read_text() != SCRIPT:
        PATH.parent.mkdir(parents=True, exist_ok=True)
        temporary = PATH.with_suffix(".tmp")
        temporary.write_text(SCRIPT)
        temporary.chmod(0o755)
        temporary.replace(PATH)
    return PATH


def contract_runtime() -> ContractRuntime:
    """The wrapper as the engine contract suite's ``fogwire_runtime`` fixture gives it."""
    from fogwire.testing import ContractRuntime

    ensure_wrapper()
    return ContractRuntime(NAME, CALLS)


def containerd_options() -> dict[str, dict[str, str]]:
    """The containerd engine's options that make it know the wrapper (its ``runtimes``)."""
    return {"runtimes": {NAME: str(ensure_wrapper())}}
