"""The engine contract suite: what every :class:`fogwire.engine.Engine` must do, on a real engine.

Long on purpose: it is the whole engine contract, one test per promise, so a third-
party engine author reads every promise in one place.

Use it in one of two ways:

* ``pytest --fogwire-engine NAME``: collects :class:`TestEngineContract` below.
* In a test module, subclass :class:`EngineContract` and override the
  ``fogwire_engine_name`` fixture (how this repo runs it for each engine)::

      import pytest
      from fogwire.testing.contract import EngineContract

      @pytest.fixture(scope="session")
      def fogwire_engine_name() -> str:
          return "docker"

      class TestDockerContract(EngineContract):
          pass

Everything is observed through the contract itself: what a workload sees is
read from its own output (``logs``), so the suite stays engine-neutral.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import secrets
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from fogwire.engine import (
    MANAGED_LABEL,
    NAME_LABEL,
    DeviceMapping,
    Engine,
    EngineEvent,
    EventKind,
    Health,
    HealthCheck,
    LogLine,
    PortMapping,
    PullPolicy,
    RegistryAuth,
    RestartPolicy,
    VolumeMount,
    WorkloadInfo,
    WorkloadSpec,
    WorkloadState,
)
from fogwire.errors import (
    EngineError,
    ImageNotFoundError,
    PortInUseError,
    RegistryAuthError,
    RegistryCertificateError,
    WorkloadNotFoundError,
)
from fogwire.testing import (
    ContractArchives,
    ContractRegistry,
    ContractRuntime,
    ContractTlsRegistry,
    UnmanagedContainers,
)

T = TypeVar("T")

WAIT_S = 30.0
"""The longest any single expectation is waited for."""

SERVE = "mkdir -p /tmp/www && echo fogwire-ok > /tmp/www/index.html && exec httpd -f -p {port} -h /tmp/www"
"""A shell command serving ``fogwire-ok`` over HTTP on ``port`` (busybox httpd)."""

SHOW_CAPS = ("sh", "-c", "grep -E '^Cap(Eff|Bnd):' /proc/self/status; echo caps-end")
"""A command printing the workload's capability masks."""

SHOW_IDS = ("sh", "-c", "id -u; id -g; echo ids-end")
"""A command printing the workload's uid and gid, one a line."""

CHOWN_BIT = 1 << 0
NET_ADMIN_BIT = 1 << 12


def unique(prefix: str = "fwc") -> str:
    """A workload name no other test uses."""
    return f"{prefix}-{secrets.token_hex(4)}"


def free_port() -> int:
    """A TCP and UDP port free on 127.0.0.1 right now."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


async def eventually(check: Callable[[], Awaitable[T | None]], what: str, timeout: float = WAIT_S) -> T:
    """Poll ``check`` until it returns something other than ``None`` (or fail naming ``what``)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.2)


async def http_get(url: str, timeout: float = 2.0) -> str | None:
    """The body at ``url``, or ``None`` if nothing answers yet."""

    def get() -> str | None:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                body: bytes = response.read()
                return body.decode()
        except (OSError, urllib.error.URLError):
            return None

    return await asyncio.to_thread(get)


async def ensure_image(engine: Engine, registry: ContractRegistry, reference: str | None = None) -> str:
    """Pull ``reference`` (default: the registry's first image) unless present; return it."""
    reference = reference or registry.image
    if await engine.image_digest(reference) is None:
        await engine.pull(reference, registry.auth)
    return reference


async def all_logs(engine: Engine, name: str, tail: int | None = None) -> list[LogLine]:
    """Every log line of ``name`` (the last ``tail`` with ``tail``), without following."""
    return [line async for line in engine.logs(name, tail=tail)]


async def wait_state(engine: Engine, name: str, *states: WorkloadState) -> WorkloadInfo:
    """Wait until ``name`` is in one of ``states``."""

    async def check() -> WorkloadInfo | None:
        info = await engine.inspect(name)
        return info if info is not None and info.state in states else None

    return await eventually(check, f"{name} to reach {'/'.join(s.value for s in states)}")


async def run_to_exit(engine: Engine, spec: WorkloadSpec, marker: str = "") -> tuple[WorkloadInfo, list[LogLine]]:
    """Create and start ``spec``, wait until it exits, return its final info and logs.

    With ``marker`` the logs are read until a line contains it (an engine may
    still be flushing output when it reports the exit).
    """
    await engine.create(spec)
    await engine.start_workload(spec.name)
    info = await wait_state(engine, spec.name, WorkloadState.EXITED, WorkloadState.DEAD)

    async def logs() -> list[LogLine] | None:
        lines = await all_logs(engine, spec.name)
        return lines if not marker or any(marker in line.text for line in lines) else None

    return info, await eventually(logs, f"{marker!r} in the logs of {spec.name}", timeout=10)


def texts(lines: list[LogLine], stream: str | None = None) -> list[str]:
    """The text of ``lines`` (of one stream if given)."""
    return [line.text for line in lines if stream is None or line.stream == stream]


def cap_mask(lines: list[LogLine], field: str = "CapEff") -> int:
    """The capability mask a workload printed from ``/proc/self/status``."""
    for text in texts(lines):
        if text.startswith(f"{field}:"):
            return int(text.split()[1], 16)
    pytest.fail(f"no {field} line in the workload's output: {texts(lines)}")


class EventRecorder:
    """Records ``engine.events()`` in the background while a test acts.

    Entering starts the stream; by the contract the engine delivers every event
    that happens from then on.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.events: list[EngineEvent] = []
        self._task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

    async def _run(self) -> None:
        try:
            async for event in self.engine.events():
                self.events.append(event)
        except asyncio.CancelledError:
            raise
        except BaseException as error:
            self.error = error

    async def __aenter__(self) -> EventRecorder:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass

    async def wait(self, what: str, match: Callable[[EngineEvent], bool]) -> EngineEvent:
        """The first recorded event for which ``match`` is true, waiting for it."""

        async def check() -> EngineEvent | None:
            if self.error is not None:
                raise self.error
            return next((e for e in self.events if match(e)), None)

        return await eventually(check, what)


class EngineContract:
    """The contract suite; subclass it (with a ``Test`` name) to run it."""

    pytestmark = [pytest.mark.asyncio, pytest.mark.fogwire_contract]

    # ------------------------------------------------------------------ images

    async def test_pull_with_credentials_returns_the_local_digest(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry
    ) -> None:
        digest = await fogwire_engine.pull(fogwire_registry.image, fogwire_registry.auth)
        assert digest is not None and digest.startswith("sha256:")
        assert await fogwire_engine.image_digest(fogwire_registry.image) == digest
        other = await fogwire_engine.pull(fogwire_registry.other_image, fogwire_registry.auth)
        assert other is not None and other != digest

    async def test_image_digest_of_an_absent_image_is_none(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry
    ) -> None:
        assert await fogwire_engine.image_digest(f"{fogwire_registry.server}/fogwire/{unique('absent')}:1") is None

    async def test_pulling_an_image_that_does_not_exist_raises_image_not_found(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry
    ) -> None:
        reference = f"{fogwire_registry.server}/fogwire/{unique('missing')}:1"
        with pytest.raises(ImageNotFoundError) as caught:
            await fogwire_engine.pull(reference, fogwire_registry.auth)
        assert reference.split("/")[-1].split(":")[0] in str(caught.value)

    async def test_wrong_credentials_raise_registry_auth_error_without_the_password(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        password = f"wrong-{secrets.token_hex(8)}"
        auth = RegistryAuth(
            fogwire_registry.auth.server,
            fogwire_registry.auth.username,
            password,
            insecure=fogwire_registry.auth.insecure,
        )
        with pytest.raises(RegistryAuthError) as caught:
            await fogwire_engine.pull(fogwire_registry.other_image, auth)
        error = caught.value
        assert fogwire_registry.server in str(error)
        secrets_forms = {password, base64.b64encode(password.encode()).decode().rstrip("=")}
        chain: list[BaseException] = []
        link: BaseException | None = error
        while link is not None and len(chain) < 10:
            chain.append(link)
            link = link.__cause__ or link.__context__
        for form in secrets_forms:
            for exc in chain:
                assert form not in str(exc) and form not in repr(exc)
            assert form not in caplog.text
            assert form not in repr(auth)

    async def test_never_policy_with_an_absent_image_fails_clearly(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry
    ) -> None:
        reference = f"{fogwire_registry.server}/fogwire/{unique('never')}:1"
        with pytest.raises(ImageNotFoundError) as caught:
            await fogwire_engine.obtain_image(reference, fogwire_registry.auth, PullPolicy.NEVER)
        assert reference in str(caught.value)
        assert await fogwire_engine.image_digest(reference) is None

    async def test_never_policy_uses_a_present_image_without_pulling(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry
    ) -> None:
        await ensure_image(fogwire_engine, fogwire_registry)
        wrong = RegistryAuth(fogwire_registry.server, "nobody", "not-the-password", insecure=True)
        result = await fogwire_engine.obtain_image(fogwire_registry.image, wrong, PullPolicy.NEVER)
        assert result.source == "local" and result.fallback_reason is None
        assert result.digest == await fogwire_engine.image_digest(fogwire_registry.image)

    async def test_pull_policy_pulls_from_the_registry(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry
    ) -> None:
        result = await fogwire_engine.obtain_image(fogwire_registry.image, fogwire_registry.auth)
        assert result.source == "registry" and result.fallback_reason is None
        assert result.digest == await fogwire_engine.image_digest(fogwire_registry.image)

    async def test_failed_pull_falls_back_to_the_local_copy_and_says_so(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry
    ) -> None:
        await ensure_image(fogwire_engine, fogwire_registry)
        password = f"wrong-{secrets.token_hex(8)}"
        wrong = RegistryAuth(fogwire_registry.server, fogwire_registry.auth.username, password, insecure=True)
        result = await fogwire_engine.obtain_image(fogwire_registry.image, wrong)
        assert result.source == "local"
        assert result.fallback_reason and password not in result.fallback_reason
        assert result.digest == await fogwire_engine.image_digest(fogwire_registry.image)

    async def test_failed_pull_without_a_local_copy_raises(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry
    ) -> None:
        with pytest.raises(ImageNotFoundError):
            await fogwire_engine.obtain_image(
                f"{fogwire_registry.server}/fogwire/{unique('gone')}:1", fogwire_registry.auth
            )

    # ------------------------------------------------------------------ a registry's own CA

    async def test_pull_from_a_registry_with_a_ca_of_its_own(
        self, fogwire_engine: Engine, fogwire_tls_registry: ContractTlsRegistry
    ) -> None:
        tls = fogwire_tls_registry
        digest = await asyncio.wait_for(fogwire_engine.pull(tls.image, tls.auth), WAIT_S)
        assert digest is not None and digest.startswith("sha256:")
        assert await fogwire_engine.image_digest(tls.image) == digest
        for directory in tls.cert_dirs:
            assert not directory.exists(), f"{directory} is left behind after the pull"

    async def test_pull_without_the_registrys_ca_fails_with_a_certificate_error(
        self, fogwire_engine: Engine, fogwire_tls_registry: ContractTlsRegistry
    ) -> None:
        tls = fogwire_tls_registry
        auth = tls.auth
        without = RegistryAuth(auth.server, auth.username, auth.password, auth.email)
        with pytest.raises(RegistryCertificateError) as caught:
            await asyncio.wait_for(fogwire_engine.pull(tls.image, without), WAIT_S)
        assert tls.server in str(caught.value)
        assert auth.password not in str(caught.value)
        for directory in tls.cert_dirs:
            assert not directory.exists(), f"{directory} is left behind after the pull"

    async def test_pull_with_another_ca_fails_with_a_certificate_error(
        self, fogwire_engine: Engine, fogwire_tls_registry: ContractTlsRegistry, fogwire_workdir: Path
    ) -> None:
        from fogwire.testing.pki import make_pki

        tls = fogwire_tls_registry
        other = make_pki(fogwire_workdir / "other-ca", prefix="other-").ca_cert.read_text()
        auth = tls.auth
        wrong = RegistryAuth(auth.server, auth.username, auth.password, auth.email, ca_pem=other)
        with pytest.raises(RegistryCertificateError) as caught:
            await asyncio.wait_for(fogwire_engine.pull(tls.image, wrong), WAIT_S)
        assert tls.server in str(caught.value)
        for directory in tls.cert_dirs:
            assert not directory.exists(), f"{directory} is left behind after the pull"

    @pytest.mark.parametrize("kind", ["docker_archive", "oci_archive"])
    async def test_load_image_archive(
        self, fogwire_engine: Engine, fogwire_image_archives: ContractArchives, kind: str
    ) -> None:
        path: Path = getattr(fogwire_image_archives, kind)
        result = await fogwire_engine.load_image_archive(path)
        assert result.references, f"loading {path} reported no image"
        for reference in result.references:
            assert await fogwire_engine.image_digest(reference) is not None
        if kind == "oci_archive":
            assert any(r.endswith(fogwire_image_archives.oci_reference_suffix) for r in result.references)
        name = unique("load")
        info, lines = await run_to_exit(
            fogwire_engine,
            WorkloadSpec(name=name, image=result.references[0], command=("echo", "loaded-ok")),
            marker="loaded-ok",
        )
        assert info.exit_code == 0

    async def test_load_of_a_broken_archive_raises(self, fogwire_engine: Engine, fogwire_workdir: Path) -> None:
        broken = fogwire_workdir / "broken.tar"
        broken.write_bytes(b"this is not a tarball" * 10)
        with pytest.raises(EngineError):
            await fogwire_engine.load_image_archive(broken)

    async def test_prune_removes_only_unused_images_not_kept(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry
    ) -> None:
        await ensure_image(fogwire_engine, fogwire_registry)
        await ensure_image(fogwire_engine, fogwire_registry, fogwire_registry.other_image)
        name = unique("prune")
        await fogwire_engine.create(WorkloadSpec(name=name, image=fogwire_registry.image, command=("true",)))
        kept = await fogwire_engine.prune_images(keep=[fogwire_registry.other_image])
        assert await fogwire_engine.image_digest(fogwire_registry.other_image) is not None
        assert await fogwire_engine.image_digest(fogwire_registry.image) is not None
        assert fogwire_registry.other_image not in kept.removed
        result = await fogwire_engine.prune_images()
        assert await fogwire_engine.image_digest(fogwire_registry.other_image) is None
        assert await fogwire_engine.image_digest(fogwire_registry.image) is not None, "an image in use was pruned"
        assert any(fogwire_registry.other_image in r or r.startswith("sha256:") for r in result.removed)

    async def test_prune_volumes_removes_only_this_agents_unused_volumes_not_kept(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry
    ) -> None:
        await ensure_image(fogwire_engine, fogwire_registry)
        in_use, unused, kept = unique("fwc-vuse"), unique("fwc-vgone"), unique("fwc-vkept")
        writers = {}
        for volume in (in_use, unused, kept):
            spec = WorkloadSpec(
                name=unique("volmk"),
                image=fogwire_registry.image,
                command=("sh", "-c", "echo data > /vol/file; echo done"),
                mounts=(VolumeMount(volume, "/vol", kind="volume"),),
            )
            await run_to_exit(fogwire_engine, spec, marker="done")
            writers[volume] = spec.name
        await fogwire_engine.remove(writers[unused])
        await fogwire_engine.remove(writers[kept])
        removed = await fogwire_engine.prune_volumes(keep=[kept])
        assert unused in removed, removed
        assert in_use not in removed and kept not in removed, removed
        reader = WorkloadSpec(
            name=unique("volrd"),
            image=fogwire_registry.image,
            command=("sh", "-c", "cat /a/file /b/file; ls /c; echo listed"),
            mounts=(
                VolumeMount(in_use, "/a", kind="volume"),
                VolumeMount(kept, "/b", kind="volume"),
                VolumeMount(unused, "/c", kind="volume"),
            ),
        )
        _, lines = await run_to_exit(fogwire_engine, reader, marker="listed")
        assert texts(lines, "stdout") == ["data", "data", "listed"], (
            "kept volumes keep their data; the pruned one is new"
        )
        for name in (writers[in_use], reader.name):
            await fogwire_engine.remove(name)
        assert {in_use, kept, unused} <= set(await fogwire_engine.prune_volumes())

    # ------------------------------------------------------------------ lifecycle

    async def test_lifecycle_create_start_inspect_stop_remove(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry
    ) -> None:
        await ensure_image(fogwire_engine, fogwire_registry)
        name = unique()
        spec = WorkloadSpec(
            name=name, image=fogwire_registry.image, command=("sleep", "3600"), labels={"io.example.tier": "edge"}
        )
        created = await fogwire_engine.create(spec)
        assert created.name == name and created.state is WorkloadState.CREATED
        assert created.labels[MANAGED_LABEL] == fogwire_engine.context.agent_id
        assert created.labels[NAME_LABEL] == name
        assert created.labels["io.example.tier"] == "edge"
        assert created.exit_code is None and created.started_at is None
        await fogwire_engine.start_workload(name)
        running = await fogwire_engine.inspect(name)
        assert running is not None and running.state is WorkloadState.RUNNING
        assert running.started_at is not None and running.started_at.tzinfo is not None
        assert abs(running.started_at.timestamp() - time.time()) < 60
        assert running.image_digest == await fogwire_engine.image_digest(fogwire_registry.image)
        assert running.image == fogwire_registry.image
        assert running.health is Health.NONE and not running.oom_killed
        assert [w.name for w in await fogwire_engine.list_managed()] == [name]
        await fogwire_engine.stop(name, timeout_s=1)
        stopped = await fogwire_engine.inspect(name)
        assert stopped is not None and stopped.state is WorkloadState.EXITED
        assert stopped.exit_code is not None and stopped.finished_at is not None
        await fogwire_engine.start_workload(name)
        assert (await wait_state(fogwire_engine, name, WorkloadState.RUNNING)).state is WorkloadState.RUNNING
        await fogwire_engine.remove(name)
        assert await fogwire_engine.inspect(name) is None
        assert await fogwire_engine.list_managed() == []

    async def test_creating_over_an_existing_name_fails(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry
    ) -> None:
        await ensure_image(fogwire_engine, fogwire_registry)
        spec = WorkloadSpec(name=unique(), image=fogwire_registry.image, command=("sleep", "3600"))
        await fogwire_engine.create(spec)
        with pytest.raises(EngineError) as caught:
            await fogwire_engine.create(spec)
        assert spec.name in str(caught.value)

    async def test_create_from_an_absent_image_raises_image_not_found(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry
    ) -> None:
        spec = WorkloadSpec(name=unique(), image=f"{fogwire_registry.server}/fogwire/{unique('nope')}:1")
        with pytest.raises(ImageNotFoundError):
            await fogwire_engine.create(spec)
        assert await fogwire_engine.inspect(spec.name) is None

    async def test_remove_is_idempotent(self, fogwire_engine: Engine, fogwire_registry: ContractRegistry) -> None:
        await ensure_image(fogwire_engine, fogwire_registry)
        name = unique()
        await fogwire_engine.create(WorkloadSpec(name=name, image=fogwire_registry.image, command=("sleep", "3600")))
        await fogwire_engine.start_workload(name)
        await fogwire_engine.remove(name)
        await fogwire_engine.remove(name)
        await fogwire_engine.remove(unique("never-existed"))
        assert await fogwire_engine.inspect(name) is None

    async def test_operations_on_an_absent_workload_raise_not_found(self, fogwire_engine: Engine) -> None:
        name = unique("absent")
        assert await fogwire_engine.inspect(name) is None
        with pytest.raises(WorkloadNotFoundError):
            await fogwire_engine.start_workload(name)
        with pytest.raises(WorkloadNotFoundError):
            await fogwire_engine.stop(name)
        with pytest.raises(WorkloadNotFoundError):
            await all_logs(fogwire_engine, name)

    async def test_a_workload_that_exits_at_once_reports_its_exit_code(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry
    ) -> None:
        await ensure_image(fogwire_engine, fogwire_registry)
        name = unique("exit")
        info, lines = await run_to_exit(
            fogwire_engine,
            WorkloadSpec(name=name, image=fogwire_registry.image, command=("sh", "-c", "echo bye; exit 3")),
            marker="bye",
        )
        assert info.state is WorkloadState.EXITED
        assert info.exit_code == 3
        assert info.started_at is not None and info.finished_at is not None
        # dockerd stamps StartedAt after the start call returns: a process that exits
        # at once can have FinishedAt a few milliseconds before it.
        assert (info.finished_at - info.started_at).total_seconds() > -1
        assert not info.oom_killed
        assert texts(lines, "stdout") == ["bye"]

    async def test_two_operations_on_one_workload_at_the_same_time(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry
    ) -> None:
        await ensure_image(fogwire_engine, fogwire_registry)
        spec = WorkloadSpec(name=unique("race"), image=fogwire_registry.image, command=("sleep", "3600"))
        outcomes = await asyncio.gather(
            fogwire_engine.create(spec), fogwire_engine.create(spec), return_exceptions=True
        )
        assert sum(isinstance(o, WorkloadInfo) for o in outcomes) == 1
        assert sum(isinstance(o, EngineError) for o in outcomes) == 1
        await asyncio.gather(fogwire_engine.start_workload(spec.name), fogwire_engine.start_workload(spec.name))
        assert (await wait_state(fogwire_engine, spec.name, WorkloadState.RUNNING)).state is WorkloadState.RUNNING
        infos = await asyncio.gather(fogwire_engine.inspect(spec.name), fogwire_engine.stop(spec.name, timeout_s=1))
        assert infos[0] is not None
        stopped = await fogwire_engine.inspect(spec.name)
        assert stopped is not None and stopped.state is WorkloadState.EXITED
        await asyncio.gather(fogwire_engine.start_workload(spec.name), fogwire_engine.remove(spec.name))
        await asyncio.gather(fogwire_engine.remove(spec.name), fogwire_engine.remove(spec.name))
        assert await fogwire_engine.inspect(spec.name) is None

    # ------------------------------------------------------------------ what a workload gets

    async def test_env_entrypoint_and_command(self, fogwire_engine: Engine, fogwire_registry: ContractRegistry) -> None:
        await ensure_image(fogwire_engine, fogwire_registry)
        spec = WorkloadSpec(
            name=unique("env"),
            image=fogwire_registry.image,
            entrypoint=("/bin/sh", "-c"),
            command=('echo "FOO=$FOO BAR=$BAR"; echo args-end', "ignored-arg0"),
            env={"FOO": "foo value", "BAR": "b=r"},
        )
        info, lines = await run_to_exit(fogwire_engine, spec, marker="args-end")
        assert info.exit_code == 0
        assert "FOO=foo value BAR=b=r" in texts(lines, "stdout")
        only_command = WorkloadSpec(name=unique("cmd"), image=fogwire_registry.image, command=("echo", "one", "two"))
        _, lines = await run_to_exit(fogwire_engine, only_command, marker="one two")
        assert texts(lines) == ["one two"]

    async def test_published_tcp_port_on_a_host_ip(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry
    ) -> None:
        await ensure_image(fogwire_engine, fogwire_registry)
        port = free_port()
        name = unique("http")
        await fogwire_engine.create(
            WorkloadSpec(
                name=name,
                image=fogwire_registry.image,
                command=("sh", "-c", SERVE.format(port=8080)),
                ports=(PortMapping(8080, port, "tcp", "127.0.0.1"),),
            )
        )
        await fogwire_engine.start_workload(name)
        body = await eventually(lambda: http_get(f"http://127.0.0.1:{port}/"), f"HTTP on 127.0.0.1:{port}")
        assert body.strip() == "fogwire-ok"

    async def test_published_udp_port(self, fogwire_engine: Engine, fogwire_registry: ContractRegistry) -> None:
        await ensure_image(fogwire_engine, fogwire_registry)
        port = free_port()
        name = unique("udp")
        # busybox has no UDP server applet; a datagram reaching a container port nobody
        # listens on is counted as NoPorts in the container's own network namespace,
        # which proves the mapping delivered it inside.
        await fogwire_engine.create(
            WorkloadSpec(
                name=name,
                image=fogwire_registry.image,
                command=(
                    "sh",
                    "-c",
                    "while true; do awk '/^Udp: [0-9]/ {print \"noports=\" $3}' /proc/net/snmp; sleep 0.3; done",
                ),
                ports=(PortMapping(9000, port, "udp", "127.0.0.1"),),
            )
        )
        await fogwire_engine.start_workload(name)
        await wait_state(fogwire_engine, name, WorkloadState.RUNNING)

        async def delivered() -> bool | None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"fogwire-udp", ("127.0.0.1", port))
            lines = texts(await all_logs(fogwire_engine, name, tail=5))
            counts = [int(t.split("=")[1]) for t in lines if t.startswith("noports=")]
            return True if any(c > 0 for c in counts) else None

        assert await eventually(delivered, f"a datagram through udp 127.0.0.1:{port}") is True

    async def test_bind_mounts_rw_and_ro_and_a_named_volume(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry, fogwire_workdir: Path
    ) -> None:
        await ensure_image(fogwire_engine, fogwire_registry)
        rw = fogwire_workdir / "rw"
        ro = fogwire_workdir / "ro"
        rw.mkdir()
        ro.mkdir()
        (ro / "in.txt").write_text("from-the-host\n")
        volume = unique("fwc-vol")
        script = (
            "cat /ro/in.txt; echo from-the-workload > /rw/out.txt; "
            "if echo x > /ro/x 2>/dev/null; then echo ro-writable; else echo ro-denied; fi; "
            "echo kept-in-volume > /vol/data; echo done"
        )
        spec = WorkloadSpec(
            name=unique("mounts"),
            image=fogwire_registry.image,
            command=("sh", "-c", script),
            mounts=(
                VolumeMount(str(rw), "/rw"),
                VolumeMount(str(ro), "/ro", read_only=True),
                VolumeMount(volume, "/vol", kind="volume"),
            ),
        )
        info, lines = await run_to_exit(fogwire_engine, spec, marker="done")
        assert info.exit_code == 0, texts(lines)
        assert texts(lines, "stdout") == ["from-the-host", "ro-denied", "done"]
        assert (rw / "out.txt").read_text() == "from-the-workload\n"
        assert not (ro / "x").exists()
        reader = WorkloadSpec(
            name=unique("volread"),
            image=fogwire_registry.image,
            command=(
                "sh",
                "-c",
                "cat /vol/data; if touch /vol/y 2>/dev/null; then echo vol-writable; else echo vol-ro; fi",
            ),
            mounts=(VolumeMount(volume, "/vol", kind="volume", read_only=True),),
        )
        _, lines = await run_to_exit(fogwire_engine, reader, marker="vol-")
        assert texts(lines, "stdout") == ["kept-in-volume", "vol-ro"]

    async def test_host_network(self, fogwire_engine: Engine, fogwire_registry: ContractRegistry) -> None:
        await ensure_image(fogwire_engine, fogwire_registry)
        port = free_port()
        name = unique("hostnet")
        await fogwire_engine.create(
            WorkloadSpec(
                name=name,
                image=fogwire_registry.image,
                command=("sh", "-c", SERVE.format(port=port)),
                host_network=True,
            )
        )
        await fogwire_engine.start_workload(name)
        body = await eventually(lambda: http_get(f"http://127.0.0.1:{port}/"), f"HTTP on the host's port {port}")
        assert body.strip() == "fogwire-ok"

    async def test_capabilities_added_and_dropped(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry
    ) -> None:
        await ensure_image(fogwire_engine, fogwire_registry)
        _, plain = await run_to_exit(
            fogwire_engine,
            WorkloadSpec(name=unique("caps"), image=fogwire_registry.image, command=SHOW_CAPS),
            "caps-end",
        )
        _, changed = await run_to_exit(
            fogwire_engine,
            WorkloadSpec(
                name=unique("capchg"),
                image=fogwire_registry.image,
                command=SHOW_CAPS,
                cap_add=("NET_ADMIN",),
                cap_drop=("CHOWN",),
            ),
            "caps-end",
        )
        assert not cap_mask(plain) & NET_ADMIN_BIT
        assert cap_mask(plain) & CHOWN_BIT
        assert cap_mask(changed) & NET_ADMIN_BIT
        assert not cap_mask(changed) & CHOWN_BIT

    async def test_privileged(self, fogwire_engine: Engine, fogwire_registry: ContractRegistry) -> None:
        """A privileged workload gets every capability the host allows.

        On a host whose capability bounding set is partial (some sandboxes lack
        CAP_SYS_RESOURCE) an engine may be unable to start privileged workloads at
        all (dockerd 20.10); it must then fail with an error that says so.
        """
        await ensure_image(fogwire_engine, fogwire_registry)
        _, plain = await run_to_exit(
            fogwire_engine,
            WorkloadSpec(name=unique("caps"), image=fogwire_registry.image, command=SHOW_CAPS),
            "caps-end",
        )
        spec = WorkloadSpec(name=unique("priv"), image=fogwire_registry.image, command=SHOW_CAPS, privileged=True)
        try:
            _, privileged = await run_to_exit(fogwire_engine, spec, "caps-end")
        except EngineError as error:
            host_bounding = _own_capability_bounding_set()
            assert host_bounding is not None and bin(host_bounding).count("1") < host_bounding.bit_length(), (
                f"privileged failed on a host with a full bounding set: {error}"
            )
            assert "privileged" in str(error) and spec.name in str(error)
            return
        assert cap_mask(privileged) & NET_ADMIN_BIT
        assert bin(cap_mask(privileged)).count("1") > bin(cap_mask(plain)).count("1") + 10

    async def test_extra_hosts(self, fogwire_engine: Engine, fogwire_registry: ContractRegistry) -> None:
        await ensure_image(fogwire_engine, fogwire_registry)
        spec = WorkloadSpec(
            name=unique("hosts"),
            image=fogwire_registry.image,
            command=("sh", "-c", "grep fogwire-peer /etc/hosts; echo hosts-end"),
            extra_hosts={"fogwire-peer": "10.11.12.13"},
        )
        _, lines = await run_to_exit(fogwire_engine, spec, marker="hosts-end")
        assert any(t.split()[:2] == ["10.11.12.13", "fogwire-peer"] for t in texts(lines))

    async def test_cpu_and_memory_limits(self, fogwire_engine: Engine, fogwire_registry: ContractRegistry) -> None:
        await ensure_image(fogwire_engine, fogwire_registry)
        script = (
            "if [ -f /sys/fs/cgroup/cpu.max ]; then echo cpu $(cat /sys/fs/cgroup/cpu.max); "
            "echo mem $(cat /sys/fs/cgroup/memory.max); else "
            "echo cpu $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us); "
            "echo mem $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes); fi; echo limits-end"
        )
        spec = WorkloadSpec(
            name=unique("limits"),
            image=fogwire_registry.image,
            command=("sh", "-c", script),
            cpu_limit=0.5,
            memory_limit_mib=48,
        )
        _, lines = await run_to_exit(fogwire_engine, spec, marker="limits-end")
        values = {t.split()[0]: t.split()[1:] for t in texts(lines)}
        quota, period = (int(v) for v in values["cpu"])
        assert quota / period == pytest.approx(0.5)
        assert int(values["mem"][0]) == 48 * 1024 * 1024

    @pytest.mark.parametrize("user", ["65534:65534", "nobody"])
    async def test_user_runs_the_process_as_that_user(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry, user: str
    ) -> None:
        """``user="uid:gid"`` runs as those ids; ``user="nobody"`` takes them from the image's ``/etc/passwd``."""
        await ensure_image(fogwire_engine, fogwire_registry)
        spec = WorkloadSpec(name=unique("user"), image=fogwire_registry.image, command=SHOW_IDS, user=user)
        info, lines = await run_to_exit(fogwire_engine, spec, "ids-end")
        assert info.exit_code == 0, texts(lines)
        assert texts(lines, "stdout")[:2] == ["65534", "65534"]

    async def test_a_user_the_image_lacks_fails_create_or_start(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry
    ) -> None:
        """An unknown user name never runs as root: ``create`` or ``start_workload`` raises, naming it."""
        await ensure_image(fogwire_engine, fogwire_registry)
        spec = WorkloadSpec(name=unique("ghost"), image=fogwire_registry.image, command=SHOW_IDS, user="fwghost")
        with pytest.raises(EngineError, match="fwghost"):
            await fogwire_engine.create(spec)
            await fogwire_engine.start_workload(spec.name)
        await fogwire_engine.remove(spec.name)

    async def test_without_user_the_image_user_runs(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry
    ) -> None:
        """No ``user``: the image's ``User`` (root for the test image), not some engine default."""
        await ensure_image(fogwire_engine, fogwire_registry)
        spec = WorkloadSpec(name=unique("uimg"), image=fogwire_registry.image, command=SHOW_IDS)
        info, lines = await run_to_exit(fogwire_engine, spec, "ids-end")
        assert info.exit_code == 0, texts(lines)
        assert texts(lines, "stdout")[:2] == ["0", "0"]

    async def test_cpuset_pins_the_workload(self, fogwire_engine: Engine, fogwire_registry: ContractRegistry) -> None:
        """``cpuset_cpus="0"`` leaves the process only CPU 0."""
        await ensure_image(fogwire_engine, fogwire_registry)
        spec = WorkloadSpec(
            name=unique("cpuset"),
            image=fogwire_registry.image,
            command=("sh", "-c", "grep Cpus_allowed_list /proc/self/status; echo cpuset-end"),
            cpuset_cpus="0",
        )
        info, lines = await run_to_exit(fogwire_engine, spec, "cpuset-end")
        assert info.exit_code == 0, texts(lines)
        allowed = [t.split(":", 1)[1].strip() for t in texts(lines) if t.startswith("Cpus_allowed_list:")]
        assert allowed == ["0"]

    async def test_a_named_oci_runtime_runs_the_workload(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry, fogwire_runtime: ContractRuntime | None
    ) -> None:
        """``runtime`` names the OCI runtime (engines with that feature): the workload runs under it; an unknown one is refused."""
        if "runtime" not in type(fogwire_engine).features:
            pytest.skip(f"{type(fogwire_engine).__name__} does not offer named OCI runtimes")
        if fogwire_runtime is None:
            pytest.fail("the engine offers named runtimes: provide a fogwire_runtime fixture (a runc wrapper it knows)")
        await ensure_image(fogwire_engine, fogwire_registry)
        spec = WorkloadSpec(
            name=unique("runtime"),
            image=fogwire_registry.image,
            command=("sh", "-c", "echo under-the-runtime"),
            runtime=fogwire_runtime.name,
        )
        info, lines = await run_to_exit(fogwire_engine, spec, "under-the-runtime")
        assert info.exit_code == 0, texts(lines)
        calls = fogwire_runtime.calls.read_text().splitlines()
        created = [c for c in calls if " create " in f" {c} " and c.split()[-1] == info.id]
        assert created, f"{fogwire_runtime.name} never created {info.id}"
        unknown = WorkloadSpec(name=unique("noruntime"), image=fogwire_registry.image, runtime="no-such-runtime")
        with pytest.raises(EngineError, match="no-such-runtime") as refused:
            await fogwire_engine.create(unknown)
            await fogwire_engine.start_workload(unknown.name)
        assert "runtime" in str(refused.value)

    async def test_host_pid_and_ipc_namespaces(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry
    ) -> None:
        """``pid_mode``/``ipc_mode`` ``"host"`` (engines with those features): the host's namespaces, not new ones."""
        features = type(fogwire_engine).features
        if not {"pid_mode", "ipc_mode"} <= features:
            pytest.skip(f"{type(fogwire_engine).__name__} does not offer host PID/IPC namespaces")
        await ensure_image(fogwire_engine, fogwire_registry)
        show = "readlink /proc/self/ns/pid; readlink /proc/self/ns/ipc; echo ns-end"
        shared = WorkloadSpec(
            name=unique("hostns"),
            image=fogwire_registry.image,
            command=("sh", "-c", show),
            pid_mode="host",
            ipc_mode="host",
        )
        info, lines = await run_to_exit(fogwire_engine, shared, "ns-end")
        assert info.exit_code == 0, texts(lines)
        host = [os.readlink("/proc/self/ns/pid"), os.readlink("/proc/self/ns/ipc")]
        assert texts(lines, "stdout")[:2] == host
        own = WorkloadSpec(name=unique("ownns"), image=fogwire_registry.image, command=("sh", "-c", show))
        info, lines = await run_to_exit(fogwire_engine, own, "ns-end")
        assert set(texts(lines, "stdout")[:2]).isdisjoint(host)

    async def test_a_host_device_under_another_name(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry
    ) -> None:
        """``devices``: the host's ``/dev/null`` as ``/dev/fogwire-null``, a working character device 1,3."""
        if "devices" not in type(fogwire_engine).features:
            pytest.skip(f"{type(fogwire_engine).__name__} does not offer devices")
        await ensure_image(fogwire_engine, fogwire_registry)
        script = "ls -l /dev/fogwire-null; echo written > /dev/fogwire-null && echo write-ok; echo dev-end"
        spec = WorkloadSpec(
            name=unique("device"),
            image=fogwire_registry.image,
            command=("sh", "-c", script),
            devices=(DeviceMapping("/dev/null", "/dev/fogwire-null", "rw"),),
        )
        info, lines = await run_to_exit(fogwire_engine, spec, "dev-end")
        assert info.exit_code == 0, texts(lines)
        out = texts(lines, "stdout")
        assert out[0].startswith("c") and "1," in out[0] and "3" in out[0], out
        assert "write-ok" in out

    async def test_cdi_devices_as_their_spec_says(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry, fogwire_workdir: Path
    ) -> None:
        """``cdiDevices``, through core (document → resolve → spec): a CDI spec's device node, env and mount.

        The spec (in a directory of the test's own, as the agent's ``cdiSpecDirs``)
        exposes ``/dev/null`` as ``/dev/fogwire-cdi-null``, sets variables at its top
        level and on the device, and bind-mounts a host directory read-only.
        """
        if "devices" not in type(fogwire_engine).features:
            pytest.skip(f"{type(fogwire_engine).__name__} does not offer devices")
        await ensure_image(fogwire_engine, fogwire_registry)
        shared = fogwire_workdir / "cdi-shared"
        shared.mkdir()
        (shared / "hello").write_text("from-the-cdi-mount\n")
        device = {
            "name": "null",
            "containerEdits": {
                "env": ["FOGWIRE_CDI=device"],
                "deviceNodes": [{"path": "/dev/fogwire-cdi-null", "hostPath": "/dev/null", "permissions": "rw"}],
                "mounts": [{"hostPath": str(shared), "containerPath": "/cdi", "options": ["ro", "nosuid", "bind"]}],
            },
        }
        script = (
            "ls -l /dev/fogwire-cdi-null; echo x > /dev/fogwire-cdi-null && echo write-ok; "
            "echo env=$FOGWIRE_CDI/$FOGWIRE_CDI_SPEC; cat /cdi/hello; "
            "if touch /cdi/x 2>/dev/null; then echo mount-writable; else echo mount-ro; fi; echo cdi-end"
        )
        spec, problems = _resolve_cdi(fogwire_engine, fogwire_registry, fogwire_workdir, device, script)
        assert spec is not None, problems
        info, lines = await run_to_exit(fogwire_engine, spec, "cdi-end")
        assert info.exit_code == 0, texts(lines)
        out = texts(lines, "stdout")
        assert out[0].startswith("c") and "1," in out[0] and "3" in out[0], out
        assert out[1:] == ["write-ok", "env=device/spec", "from-the-cdi-mount", "mount-ro", "cdi-end"]
        assert not (shared / "x").exists()

    async def test_cdi_hooks_run_or_the_microservice_is_refused(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry, fogwire_workdir: Path
    ) -> None:
        """A CDI device's OCI hook: run (a ``createRuntime`` hook writes a file on the host) by an engine offering
        ``hooks``; any other engine's microservice is refused before it is created, naming the engine and field."""
        await ensure_image(fogwire_engine, fogwire_registry)
        marker = fogwire_workdir / "hook-ran"
        hook = fogwire_workdir / "cdi-hook"
        hook.write_text('#!/bin/sh\ncat > /dev/null\necho "$2" > "$1"\n')  # the OCI state arrives on stdin
        hook.chmod(0o755)
        device = {
            "name": "hooked",
            "containerEdits": {
                "hooks": [{"hookName": "createRuntime", "path": str(hook), "args": ["cdi-hook", str(marker), "ran"]}]
            },
        }
        spec, problems = _resolve_cdi(fogwire_engine, fogwire_registry, fogwire_workdir, device, "echo hook-end")
        if "hooks" not in type(fogwire_engine).features:
            assert spec is None
            engine = type(fogwire_engine).name or type(fogwire_engine).__name__
            assert f"the {engine} engine can't honour spec.microservices[0].container.cdiDevices" in problems
            return
        assert spec is not None, problems
        info, lines = await run_to_exit(fogwire_engine, spec, "hook-end")
        assert info.exit_code == 0, texts(lines)
        assert marker.read_text() == "ran\n"

    async def test_restart_policy_on_failure(self, fogwire_engine: Engine, fogwire_registry: ContractRegistry) -> None:
        await ensure_image(fogwire_engine, fogwire_registry)
        name = unique("restart")
        await fogwire_engine.create(
            WorkloadSpec(
                name=name,
                image=fogwire_registry.image,
                command=("sh", "-c", "echo attempt; exit 1"),
                restart=RestartPolicy("on-failure", 2),
            )
        )
        await fogwire_engine.start_workload(name)

        async def done() -> WorkloadInfo | None:
            info = await fogwire_engine.inspect(name)
            ok = info is not None and info.restart_count == 2 and info.state is WorkloadState.EXITED
            return info if ok else None

        info = await eventually(done, f"{name} to be restarted twice and then stay exited")
        assert info.exit_code == 1
        await asyncio.sleep(1.5)
        after = await fogwire_engine.inspect(name)
        assert after is not None and after.restart_count == 2 and after.state is WorkloadState.EXITED

    async def test_health_check_healthy_and_unhealthy_with_events(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry
    ) -> None:
        await ensure_image(fogwire_engine, fogwire_registry)
        good, bad = unique("healthy"), unique("unhealthy")
        async with EventRecorder(fogwire_engine) as recorder:
            for name, test in ((good, "test -f /tmp/ready"), (bad, "false")):
                await fogwire_engine.create(
                    WorkloadSpec(
                        name=name,
                        image=fogwire_registry.image,
                        command=("sh", "-c", "touch /tmp/ready; exec sleep 3600"),
                        health_check=HealthCheck(("CMD-SHELL", test), interval_s=1, timeout_s=5, retries=2),
                    )
                )
                await fogwire_engine.start_workload(name)
            starting = await fogwire_engine.inspect(good)
            assert starting is not None and starting.health in (Health.STARTING, Health.HEALTHY)

            async def health(name: str, want: Health) -> WorkloadInfo | None:
                info = await fogwire_engine.inspect(name)
                return info if info is not None and info.health is want else None

            await eventually(lambda: health(good, Health.HEALTHY), f"{good} to be healthy")
            await eventually(lambda: health(bad, Health.UNHEALTHY), f"{bad} to be unhealthy")
            for name, want in ((good, Health.HEALTHY), (bad, Health.UNHEALTHY)):
                await recorder.wait(
                    f"a health event {want.value} of {name}",
                    lambda e, n=name, w=want: e.kind is EventKind.HEALTH and e.workload == n and e.health is w,  # type: ignore[misc]
                )

    async def test_a_workload_killed_by_its_memory_limit(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry
    ) -> None:
        await ensure_image(fogwire_engine, fogwire_registry)
        name = unique("oom")
        async with EventRecorder(fogwire_engine) as recorder:
            await fogwire_engine.create(
                WorkloadSpec(
                    name=name,
                    image=fogwire_registry.image,
                    command=("dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"),
                    memory_limit_mib=16,
                )
            )
            await fogwire_engine.start_workload(name)
            info = await wait_state(fogwire_engine, name, WorkloadState.EXITED, WorkloadState.DEAD)
            assert info.exit_code == 137
            oom = await eventually(
                lambda: _oom_info(fogwire_engine, name), f"{name} to be reported as killed for memory", timeout=30
            )
            assert oom.oom_killed
            await recorder.wait(f"an oom event of {name}", lambda e: e.kind is EventKind.OOM and e.workload == name)
            die = await recorder.wait(
                f"a die event of {name}", lambda e: e.kind is EventKind.DIE and e.workload == name
            )
            assert die.exit_code == 137

    # ------------------------------------------------------------------ logs and events

    async def test_a_log_bound_keeps_the_output_under_it(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry
    ) -> None:
        await ensure_image(fogwire_engine, fogwire_registry)
        name = unique("logcap")
        # about 4 MiB of output: 40000 lines of 100 characters, then a last line
        script = (
            "i=0; while [ $i -lt 40000 ]; do echo \"line $i $(printf '%090d' 0)\"; i=$((i+1)); done; echo last-line"
        )
        await fogwire_engine.create(
            WorkloadSpec(name=name, image=fogwire_registry.image, command=("sh", "-c", script), log_max_mib=1)
        )
        await fogwire_engine.start_workload(name)
        await wait_state(fogwire_engine, name, WorkloadState.EXITED)
        lines = await eventually(
            lambda: _when(all_logs(fogwire_engine, name), lambda got: got and got[-1].text == "last-line"),
            f"{name}'s last line in its log",
        )
        kept = sum(len(line.text) + 1 for line in lines)
        assert 0 < kept <= int(1.6 * 1024 * 1024), f"{kept} bytes of output kept under a 1 MiB bound"

    async def test_logs_tail_and_streams(self, fogwire_engine: Engine, fogwire_registry: ContractRegistry) -> None:
        await ensure_image(fogwire_engine, fogwire_registry)
        name = unique("logs")
        script = "for i in 1 2 3 4 5; do echo out$i; done; sleep 0.2; echo err1 >&2; sleep 0.2; echo out-end"
        _, lines = await run_to_exit(
            fogwire_engine,
            WorkloadSpec(name=name, image=fogwire_registry.image, command=("sh", "-c", script)),
            "out-end",
        )
        assert texts(lines, "stdout") == ["out1", "out2", "out3", "out4", "out5", "out-end"]
        assert texts(lines, "stderr") == ["err1"]
        assert texts(await all_logs(fogwire_engine, name, tail=2)) == ["err1", "out-end"]
        assert texts(await all_logs(fogwire_engine, name, tail=0)) == []

    async def test_logs_follow(self, fogwire_engine: Engine, fogwire_registry: ContractRegistry) -> None:
        await ensure_image(fogwire_engine, fogwire_registry)
        name = unique("follow")
        script = "i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.2; done"
        await fogwire_engine.create(WorkloadSpec(name=name, image=fogwire_registry.image, command=("sh", "-c", script)))
        await fogwire_engine.start_workload(name)
        await eventually(lambda: _has_lines(fogwire_engine, name, 2), f"two lines from {name}")
        seen: list[int] = []

        async def follow() -> None:
            stream = fogwire_engine.logs(name, tail=1, follow=True)
            async for line in stream:
                seen.append(int(line.text.removeprefix("tick")))
                if len(seen) == 5:
                    break
            await stream.aclose()  # type: ignore[attr-defined]

        await asyncio.wait_for(follow(), WAIT_S)
        assert seen == list(range(seen[0], seen[0] + 5)), seen
        assert seen[0] >= 1

    async def test_events_start_and_die_of_managed_workloads_only(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry, fogwire_unmanaged: UnmanagedContainers
    ) -> None:
        await ensure_image(fogwire_engine, fogwire_registry)
        name = unique("events")
        stranger = unique("stranger")
        async with EventRecorder(fogwire_engine) as recorder:
            try:
                await fogwire_unmanaged.create(stranger, fogwire_registry.image)
                await fogwire_engine.create(
                    WorkloadSpec(name=name, image=fogwire_registry.image, command=("sh", "-c", "sleep 0.5; exit 4"))
                )
                await fogwire_engine.start_workload(name)
                start = await recorder.wait(
                    f"a start event of {name}", lambda e: e.kind is EventKind.START and e.workload == name
                )
                die = await recorder.wait(
                    f"a die event of {name}", lambda e: e.kind is EventKind.DIE and e.workload == name
                )
                assert die.exit_code == 4
                assert start.time <= die.time
                assert abs(die.time.timestamp() - time.time()) < 60
                assert all(e.workload != stranger for e in recorder.events)
                assert {e.workload for e in recorder.events} == {name}
            finally:
                await fogwire_unmanaged.remove(stranger)

    # ------------------------------------------------------------------ what the agent does not manage

    async def test_list_managed_shows_only_this_agents_workloads(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry, fogwire_unmanaged: UnmanagedContainers
    ) -> None:
        await ensure_image(fogwire_engine, fogwire_registry)
        mine = sorted(unique("mine") for _ in range(3))
        stranger = unique("stranger")
        try:
            await fogwire_unmanaged.create(stranger, fogwire_registry.image)
            for name in mine:
                await fogwire_engine.create(
                    WorkloadSpec(name=name, image=fogwire_registry.image, command=("sleep", "60"))
                )
            await fogwire_engine.start_workload(mine[0])
            listed = await fogwire_engine.list_managed()
            assert sorted(w.name for w in listed) == mine
            by_name = {w.name: w for w in listed}
            assert by_name[mine[0]].state is WorkloadState.RUNNING
            assert by_name[mine[1]].state is WorkloadState.CREATED
            assert all(w.labels[MANAGED_LABEL] == fogwire_engine.context.agent_id for w in listed)
        finally:
            await fogwire_unmanaged.remove(stranger)

    async def test_an_unmanaged_container_is_invisible_and_untouched(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry, fogwire_unmanaged: UnmanagedContainers
    ) -> None:
        await ensure_image(fogwire_engine, fogwire_registry)
        stranger = unique("stranger")
        try:
            await fogwire_unmanaged.create(stranger, fogwire_registry.image)
            assert await fogwire_unmanaged.state(stranger) == "running"
            assert await fogwire_engine.inspect(stranger) is None
            assert stranger not in [w.name for w in await fogwire_engine.list_managed()]
            await fogwire_engine.remove(stranger)
            with pytest.raises(WorkloadNotFoundError):
                await fogwire_engine.stop(stranger, timeout_s=1)
            with pytest.raises(WorkloadNotFoundError):
                await fogwire_engine.start_workload(stranger)
            with pytest.raises(EngineError):
                await fogwire_engine.create(WorkloadSpec(name=stranger, image=fogwire_registry.image))
            with pytest.raises(WorkloadNotFoundError):
                await all_logs(fogwire_engine, stranger)
            await fogwire_engine.prune_images()
            assert await fogwire_unmanaged.state(stranger) == "running"
            assert await fogwire_engine.image_digest(fogwire_registry.image) is not None
        finally:
            await fogwire_unmanaged.remove(stranger)

    async def test_a_host_port_already_taken_raises_port_in_use(
        self, fogwire_engine: Engine, fogwire_registry: ContractRegistry
    ) -> None:
        await ensure_image(fogwire_engine, fogwire_registry)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            name = unique("port")
            spec = WorkloadSpec(
                name=name,
                image=fogwire_registry.image,
                command=("sh", "-c", SERVE.format(port=8080)),
                ports=(PortMapping(8080, port, "tcp", "127.0.0.1"),),
            )
            with pytest.raises(PortInUseError) as caught:
                await fogwire_engine.create(spec)
                await fogwire_engine.start_workload(name)
            assert str(port) in str(caught.value)
            info = await fogwire_engine.inspect(name)
            assert info is None or info.state is not WorkloadState.RUNNING


def _resolve_cdi(
    engine: Engine, registry: ContractRegistry, workdir: Path, device: dict[str, Any], script: str
) -> tuple[WorkloadSpec | None, str]:
    """A microservice using CDI device ``device`` resolved as the agent would: ``(spec, "")`` or ``(None, problem)``.

    The device sits in a spec (kind ``fogwire.test/contract``, with a top-level
    variable) in ``workdir/cdi``; the reconciler checks the engine's features.
    """
    from fogwire.convert import make_converter
    from fogwire.model.desired import assemble
    from fogwire.reconcile import Reconciler
    from fogwire.resolve import device_arch
    from fogwire.store import Store

    specs = workdir / "cdi"
    specs.mkdir(exist_ok=True)
    spec = {
        "cdiVersion": "0.6.0",
        "kind": "fogwire.test/contract",
        "containerEdits": {"env": ["FOGWIRE_CDI_SPEC=spec"]},
        "devices": [device],
    }
    (specs / f"{device['name']}.json").write_text(json.dumps(spec))
    name = unique("cdi")
    microservice = {
        "name": name,
        "images": {"x86": registry.image, "arm": registry.image},
        "container": {"commands": ["sh", "-c", script], "cdiDevices": [f"fogwire.test/contract={device['name']}"]},
    }
    app = {
        "apiVersion": "iofog.org/v3",
        "kind": "Application",
        "metadata": {"name": name},
        "spec": {"microservices": [microservice]},
    }
    desired = assemble(make_converter(), [app], "contract")
    store = Store.open(workdir / f"{name}.db")
    try:
        reconciler = Reconciler(engine, store, arch=device_arch(), cdi_spec_dirs=(str(specs),))
        resolved, problems = reconciler.resolve_all(desired)
    finally:
        store.close()
    if name in problems:
        return None, problems[name]
    return resolved[name].spec, ""


def _own_capability_bounding_set() -> int | None:
    """This process's capability bounding set (the suite runs on the engine's host)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapBnd:"):
                    return int(line.split()[1], 16)
    except OSError:
        return None
    return None


async def _when(value: Awaitable[T], ok: Callable[[T], object]) -> T | None:
    """``value`` awaited, or ``None`` when ``ok`` says it is not there yet."""
    got = await value
    return got if ok(got) else None


async def _oom_info(engine: Engine, name: str) -> WorkloadInfo | None:
    info = await engine.inspect(name)
    return info if info is not None and info.oom_killed else None


async def _has_lines(engine: Engine, name: str, count: int) -> bool | None:
    return True if len(await all_logs(engine, name)) >= count else None


class TestEngineContract(EngineContract):
    """The suite as ``pytest --fogwire-engine NAME`` collects it."""
