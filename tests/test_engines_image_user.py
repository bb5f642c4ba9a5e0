"""Who a workload's process runs as is the same on every engine.

The image's ``User`` is honoured, names resolved from the image's own files:
Docker and Podman resolve a named user themselves; the containerd plugin reads
``/etc/passwd`` and ``/etc/group`` from the workload's snapshot.
``WorkloadSpec.user`` (ioFog ``runAsUser``) overrides the image's ``User`` and
is resolved the same way. Each case runs ``id`` in a workload of an image built
here and compares what the process really ran as.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fogwire.engine import Engine, EngineContext, RegistryAuth, WorkloadSpec, WorkloadState
from fogwire.errors import EngineError
from fogwire.plugins import PluginHost
from harness import agents, images, services

ENGINES = agents.installed_engines()
REPOSITORY = "fogwire/user-test"
#: image User -> what ``id -u``, ``id -g`` and ``id -G`` print in the workload
IMAGE_CASES = {
    "nobody": ("65534", "65534", {"65534", "50"}),
    "nobody:root": ("65534", "0", {"0"}),
    "65534": ("65534", "65534", {"65534", "50"}),
    "1234:50": ("1234", "50", {"50"}),
}
#: (image User, spec user) -> what ``id -u``, ``id -g`` and ``id -G`` print
SPEC_CASES = {
    ("root", "nobody"): ("65534", "65534", {"65534", "50"}),
    ("root", "nobody:root"): ("65534", "0", {"0"}),
    ("root", "65534"): ("65534", "65534", {"65534", "50"}),
    ("root", "1234:50"): ("1234", "50", {"50"}),
    ("nobody", "root"): ("0", "0", {"0"}),
    ("nobody", "0:0"): ("0", "0", {"0"}),
    ("nobody", "0"): ("0", "0", {"0"}),
}
IMAGE_USERS = sorted({*IMAGE_CASES, "ghost", "root"})


@pytest.fixture(scope="module")
def user_images(harness_images: images.TestImages) -> dict[str, str]:
    """One image per image ``User`` in the harness registry: user -> reference."""
    return {
        user: harness_images.push_variant(REPOSITORY, f"u{i}", marker=f"user {user}", user=user)
        for i, user in enumerate(IMAGE_USERS)
    }


@pytest.fixture
def auth(harness_images: images.TestImages) -> RegistryAuth:
    """The harness registry's credentials."""
    return RegistryAuth(harness_images.registry, harness_images.username, harness_images.password, insecure=True)


@pytest.fixture(params=ENGINES)
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engine]:
    context = EngineContext(
        agent_id=f"user-{secrets.token_hex(3)}",
        data_dir=tmp_path / "data",
        run_dir=tmp_path / "run",
        log_dir=tmp_path / "log",
        url=services.engine_url(request.param),
    )
    started = PluginHost().engine_factory(request.param)(context)
    await started.start()
    try:
        yield started
    finally:
        for workload in await started.list_managed():
            await started.remove(workload.name)
        await started.close()


async def run_id(engine: Engine, image: str, auth: RegistryAuth, user: str | None = None) -> list[str]:
    """Run ``id -u; id -g; id -G`` in ``image`` (as ``user``) and return the lines it printed."""
    await engine.obtain_image(image, auth)
    name = f"user-{secrets.token_hex(4)}"
    command = ("sh", "-c", "id -u; id -g; id -G; echo id-end")
    await engine.create(WorkloadSpec(name=name, image=image, command=command, user=user))
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
    while "id-end" not in lines and time.monotonic() < deadline:  # logs may trail the exit a little
        lines = [line.text.strip() async for line in engine.logs(name)]
        await asyncio.sleep(0.1)
    return lines


@pytest.mark.parametrize("image_user", list(IMAGE_CASES))
async def test_the_image_user_is_the_process_user(
    engine: Engine, user_images: dict[str, str], auth: RegistryAuth, image_user: str
) -> None:
    uid, gid, groups = IMAGE_CASES[image_user]
    lines = await run_id(engine, user_images[image_user], auth)
    assert lines[:2] == [uid, gid], f"User {image_user!r} ran as {lines}"
    assert set(lines[2].split()) == groups, f"User {image_user!r} has groups {lines[2]!r}"


@pytest.mark.parametrize(("image_user", "user"), list(SPEC_CASES))
async def test_the_spec_user_overrides_the_image_user(
    engine: Engine, user_images: dict[str, str], auth: RegistryAuth, image_user: str, user: str
) -> None:
    uid, gid, groups = SPEC_CASES[(image_user, user)]
    lines = await run_id(engine, user_images[image_user], auth, user)
    assert lines[:2] == [uid, gid], f"user {user!r} on an image of User {image_user!r} ran as {lines}"
    assert set(lines[2].split()) == groups, f"user {user!r} has groups {lines[2]!r}"


async def test_a_user_missing_from_the_image_is_a_clear_error(
    engine: Engine, user_images: dict[str, str], auth: RegistryAuth
) -> None:
    image = user_images["ghost"]
    await engine.obtain_image(image, auth)
    name = f"user-{secrets.token_hex(4)}"
    with pytest.raises(EngineError, match="ghost"):
        await engine.create(WorkloadSpec(name=name, image=image, command=("true",)))
        await engine.start_workload(name)
