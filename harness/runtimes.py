"""The test OCI runtime: runc behind a wrapper that records each call, known to every harness engine.

dockerd learns it from the harness's ``daemon.json`` (``runtimes``), the containerd
engine from its ``runtimes`` option, podman from the containers.conf drop-in
``scripts/setup.sh`` writes (:data:`PODMAN_CONF`; the harness restarts its podman
service when podman's configuration changed since it started).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fogwire.testing import ContractRuntime

NAME = "fogwire-test-runc"
PATH = Path("/usr/local/libexec/fogwire-test/fogwire-test-runc")
CALLS = Path("/run/fogwire-test-runc/calls")
PODMAN_CONF = Path("/etc/containers/containers.conf.d/50-fogwire-test-runtime.conf")

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


def podman_contract_runtime() -> ContractRuntime:
    """:func:`contract_runtime`, once podman's configuration names the wrapper (``make setup`` writes it)."""
    if f'{NAME} = ["{PATH}"]' not in (PODMAN_CONF.read_text() if PODMAN_CONF.is_file() else ""):
        raise RuntimeError(f"{PODMAN_CONF} does not define the test runtime {NAME} as {PATH}: run `make setup`")
    return contract_runtime()


def containerd_options() -> dict[str, dict[str, str]]:
    """The containerd engine's options that make it know the wrapper (its ``runtimes``)."""
    return {"runtimes": {NAME: str(ensure_wrapper())}}
