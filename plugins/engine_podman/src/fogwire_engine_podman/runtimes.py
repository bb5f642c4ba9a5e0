"""Named OCI runtimes on podman 4.3, whose REST API ignores the runtime a container asks for.

podman's create (the libpod and the docker-compatible API alike) drops a container's
``oci_runtime`` (containers/podman#28429, fixed in 2026): the container gets the
service's default runtime, even for a name podman doesn't know. podman's global
``--runtime`` flag does work: it sets the default runtime of the podman process
that creates the container. So the engine creates a workload that names another
runtime through a short-lived ``podman --runtime=NAME system service`` of its own
on the same storage as the engine's service (:func:`creating_service`); the
container records the runtime by name, and the engine's service runs it under
that runtime from then on. Both podman processes take the name from the host's
``containers.conf`` (``[engine.runtimes]``), which the engine's service reads when
it starts: a runtime added later needs that service restarted.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from fogwire.errors import EngineError
from fogwire_engine_podman.service import socket_answers

START_TIMEOUT_S = 30.0
"""How long the creating service may take to answer."""


def storage_args(info: Mapping[str, Any]) -> list[str]:
    """Global podman flags that put another podman process on the storage of the service whose ``/info`` this is.

    Its temporary directory, volume path and storage driver come from the storage's own
    database (naming the driver too is refused when the database recorded none).
    """
    host, store = info.get("host") or {}, info.get("store") or {}
    flags = {
        "--root": store.get("graphRoot"),
        "--runroot": store.get("runRoot"),
        "--cgroup-manager": host.get("cgroupManager"),
        "--events-backend": host.get("eventLogger"),
    }
    return [f"{flag}={value}" for flag, value in flags.items() if value]


def default_runtime(info: Mapping[str, Any]) -> str:
    """The name of the OCI runtime the service whose ``/info`` this is gives a container by default."""
    return str(((info.get("host") or {}).get("ociRuntime") or {}).get("name") or "")


@contextlib.contextmanager
def creating_service(workload: str, runtime: str, args: list[str]) -> Iterator[str]:
    """``podman --runtime=runtime system service`` with the global flags ``args``, for as long as the block runs.

    Yields its ``unix://`` URL, a socket in a private temporary directory (short:
    a unix socket's path has at most 107 bytes). Refused, naming ``workload`` and
    the field, when podman doesn't know ``runtime`` or the service doesn't answer.
    """
    podman = shutil.which("podman")
    if podman is None:
        raise EngineError(
            f"workload {workload!r}: OCI runtime {runtime!r} (field runtime) needs the podman program on this host: "
            "podman's API ignores a container's runtime, so the engine creates such a container with podman itself"
        )
    with tempfile.TemporaryDirectory(prefix="fogwire-podman-runtime-") as scratch:
        socket_path = Path(scratch) / "podman.sock"
        output_path = Path(scratch) / "podman.log"
        argv = [podman, *args, f"--runtime={runtime}", "system", "service", "--time=0", f"unix://{socket_path}"]
        with output_path.open("wb") as output:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=output, stderr=output, cwd=scratch, start_new_session=True
            )
        try:
            _wait_until_answering(process, socket_path, output_path, workload, runtime)
            yield f"unix://{socket_path}"
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_answering(
    process: subprocess.Popen[bytes], socket_path: Path, output_path: Path, workload: str, runtime: str
) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            said = output_path.read_text(errors="replace").strip()
            if "not found" in said:
                raise EngineError(
                    f"workload {workload!r}: podman has no OCI runtime {runtime!r} (field runtime; {said}); "
                    f'define it in containers.conf as [engine.runtimes] {runtime} = ["/path/to/binary"] '
                    "and restart the podman service"
                )
            raise EngineError(
                f"workload {workload!r}: the podman process that creates a container under OCI runtime {runtime!r} "
                f"(field runtime) exited with {process.returncode}: {said}"
            )
        if socket_answers(socket_path, 1.0):
            return
        time.sleep(0.05)
    raise EngineError(
        f"workload {workload!r}: the podman process that creates a container under OCI runtime {runtime!r} "
        f"(field runtime) did not answer within {START_TIMEOUT_S:.0f} s"
    )
