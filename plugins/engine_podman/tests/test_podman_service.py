"""The podman plugin starts, supervises and stops its own ``podman system service``."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fogwire_engine_podman.engine import PodmanEngine, parse_options
from fogwire_engine_podman.service import socket_answers

from fogwire.engine import EngineContext
from fogwire.errors import ConfigError
from harness import images, services


async def test_starts_supervises_and_stops_its_own_service(
    short_dir: Path,
    own_service_context: Callable[[str], EngineContext],
    unclosed_after_gc: Callable[[], list[str]],
) -> None:
    engine = PodmanEngine(own_service_context("service-test"))
    await engine.start()
    try:
        service = engine.service
        assert service is not None and service.process is not None
        assert engine.url == f"unix://{short_dir / 'run' / 'podman.sock'}"
        assert socket_answers(service.socket_path)
        assert await engine.list_managed() == []
        first = service.process.pid
        os.kill(first, signal.SIGKILL)
        for _ in range(200):
            if service.restarts == 1 and socket_answers(service.socket_path):
                break
            await asyncio.sleep(0.1)
        assert service.restarts == 1 and service.process.pid != first
        assert await engine.list_managed() == []
    finally:
        await engine.close()
    assert service.process.returncode is not None
    assert not service.socket_path.exists()
    assert engine.service is None
    # the event watch may have reconnected while the service was down (about one run in ten):
    # a failed connect must not leave its socket to a later test's garbage collection
    assert unclosed_after_gc() == []


def test_options_are_checked() -> None:
    assert parse_options({}).ulimits == {"nofile": "1024:1024", "nproc": "4096:4096"}
    assert parse_options({"ulimits": {"nofile": "2048:4096"}}).ulimits == {"nofile": "2048:4096"}
    with pytest.raises(ConfigError) as caught:
        parse_options({"ulimits": {"nofile": "lots"}, "unknown": 1})
    assert "ulimits" in str(caught.value) or "unknown" in str(caught.value)


async def test_configured_ulimits_reach_the_workload(
    short_dir: Path, harness_podman: services.Podman, harness_images: images.TestImages
) -> None:
    from fogwire.engine import RegistryAuth, WorkloadSpec, WorkloadState

    context = EngineContext(
        agent_id=f"ulimits-{os.getpid()}",
        data_dir=short_dir,
        run_dir=short_dir,
        log_dir=short_dir,
        url=harness_podman.url,
        options={"ulimits": {"nofile": "2048:2048"}},
    )
    engine = PodmanEngine(context)
    await engine.start()
    try:
        auth = RegistryAuth(harness_images.registry, harness_images.username, harness_images.password, insecure=True)
        await engine.obtain_image(harness_images.ref_v1, auth)
        name = f"ulimits-{os.getpid()}"
        await engine.create(
            WorkloadSpec(
                name=name, image=harness_images.ref_v1, command=("sh", "-c", "echo n=$(ulimit -n) u=$(ulimit -u)")
            )
        )
        await engine.start_workload(name)
        for _ in range(100):
            info = await engine.inspect(name)
            if info is not None and info.state is WorkloadState.EXITED:
                break
            await asyncio.sleep(0.1)
        lines = [line.text async for line in engine.logs(name)]
        assert lines == ["n=2048 u=4096"]
    finally:
        for workload in await engine.list_managed():
            await engine.remove(workload.name)
        await engine.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"oom_watch": "off"}, "engineOptions.oom_watch: unknown field: it is spelled 'oomWatch'"),
        ({"oomWatch": "sometimes"}, "engineOptions.oomWatch: expected one of"),
        ({"timeoutS": "60"}, "engineOptions.timeoutS: expected an integer ≥ 1, got '60'"),
        ({"ulimits": {"nofile": "lots"}}, "engineOptions.ulimits.nofile: expected 'soft:hard'"),
    ],
)
def test_a_bad_option_names_its_camel_case_path(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_options(options)
    assert str(caught.value).startswith(f"engineOptions (podman):DOC#1: {message}")


def test_camel_case_options_are_read() -> None:
    options = parse_options({"serviceArgs": ["--root", "/x"], "insecureRegistries": ["h:1"], "oomWatch": "off"})
    assert (options.service_args, options.insecure_registries, options.oom_watch) == (["--root", "/x"], ["h:1"], "off")
