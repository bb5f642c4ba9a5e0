"""An image's ``User`` is honoured alike by every engine: names resolved from the image's own files.

Docker and Podman resolve a named user themselves; the containerd plugin reads
``/etc/passwd`` and ``/etc/group`` from the workload's snapshot. Each case runs
``id`` in a workload of an image built here with that ``User`` and compares what
the process really ran as.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import secrets
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from fogwire.engine import Engine, EngineContext, RegistryAuth, WorkloadSpec, WorkloadState
from fogwire.errors import EngineError
from fogwire.plugins import PluginHost
from harness import images, services

ENGINES = sorted(
    {ep.name for ep in importlib.metadata.entry_points(group="fogwire.engines")} & {"docker", "containerd", "podman"}
)
REPOSITORY = "fogwire/user-test"
#: image User -> what ``id -u``, ``id -g`` and ``id -G`` print in the workload
CASES = {
    "nobody": ("65534", "65534", {"65534", "50"}),
    "nobody:root": ("65534", "0", {"0"}),
    "65534": ("65534", "65534", {"65534", "50"}),
    "1234:50": ("1234", "50", {"50"}),
}
TAGS = {user: f"u{i}" for i, user in enumerate([*CASES, "ghost"])}


@pytest.fixture(scope="module")
def user_images(harness_images: images.TestImages) -> Iterator[dict[str, str]]:
    """One image per ``User`` case in the harness registry: user -> reference."""
    creds = f"{harness_images.username}:{harness_images.password}"
    refs = {}
    with tempfile.TemporaryDirectory(prefix="fwuser-") as tmp:
        for user, tag in TAGS.items():
            layout = Path(tmp) / tag
            images.build_busybox_layout(layout, tag, marker=f"user {user}", user=user)
            ref = f"{harness_images.registry}/{REPOSITORY}:{tag}"
            done = subprocess.run(
                ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", creds,
                 f"oci:{layout}:{tag}", f"docker://{ref}"],
                capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            refs[user] = ref
    yield refs


def engine_url(kind: str) -> str:
    if kind == "docker":
        return services.start_dockerd().host
    if kind == "containerd":
        return services.start_containerd().url
    return services.start_podman().url


@pytest.fixture(params=ENGINES)
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engine]:
    context = EngineContext(
        agent_id=f"user-{secrets.token_hex(3)}",
        data_dir=tmp_path / "data",
        run_dir=tmp_path / "run",
        log_dir=tmp_path / "log",
        url=engine_url(request.param),
    )
    started = PluginHost().engine_factory(request.param)(context)
    await started.start()
    try:
        yield started
    finally:
        for workload in await started.list_managed():
            await started.remove(workload.name)
        await started.close()


async def run_id(engine: Engine, image: str, auth: RegistryAuth) -> list[str]:
    """Run ``id -u; id -g; id -G`` in ``image`` and return the three lines it printed."""
    await engine.obtain_image(image, auth)
    name = f"user-{secrets.token_hex(4)}"
    await engine.create(WorkloadSpec(name=name, image=image, command=("sh", "-c", "id -u; id -g; id -G")))
    await engine.start_workload(name)
    deadline = time.monotonic() + 30
    while True:
        info = await engine.inspect(name)
        assert info is not None
        if info.state is WorkloadState.EXITED:
            break
        assert time.monotonic() < deadline, f"{name} did not exit: {info.state}"
        await asyncio.sleep(0.1)
    assert info.exit_code == 0
    lines: list[str] = []
    deadline = time.monotonic() + 10
    while len(lines) < 3 and time.monotonic() < deadline:  # logs may trail the exit a little
        lines = [line.text.strip() async for line in engine.logs(name)]
        await asyncio.sleep(0.1)
    return lines


@pytest.mark.parametrize("user", list(CASES))
async def test_the_image_user_is_the_process_user(
    engine: Engine, user_images: dict[str, str], harness_images: images.TestImages, user: str
) -> None:
    auth = RegistryAuth(harness_images.registry, harness_images.username, harness_images.password, insecure=True)
    uid, gid, groups = CASES[user]
    lines = await run_id(engine, user_images[user], auth)
    assert lines[:2] == [uid, gid], f"User {user!r} ran as {lines}"
    assert set(lines[2].split()) == groups, f"User {user!r} has groups {lines[2]!r}"


async def test_a_user_missing_from_the_image_is_a_clear_error(
    engine: Engine, user_images: dict[str, str], harness_images: images.TestImages
) -> None:
    auth = RegistryAuth(harness_images.registry, harness_images.username, harness_images.password, insecure=True)
    image = user_images["ghost"]
    await engine.obtain_image(image, auth)
    name = f"user-{secrets.token_hex(4)}"
    with pytest.raises(EngineError, match="ghost"):
        await engine.create(WorkloadSpec(name=name, image=image, command=("true",)))
        await engine.start_workload(name)
