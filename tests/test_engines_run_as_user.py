"""``WorkloadSpec.user`` (ioFog ``runAsUser``) overrides the image's ``User`` alike on every engine.

The images here have a ``User`` of their own (``root`` or ``nobody``), so each
case shows the spec's user winning over it, resolved from the image's files
exactly as an image ``User`` is (``tests/test_engines_image_user.py``): the same
uid, gid and groups, whichever engine runs it.
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
from fogwire.plugins import PluginHost
from harness import images, services

ENGINES = sorted(
    {ep.name for ep in importlib.metadata.entry_points(group="fogwire.engines")} & {"docker", "containerd", "podman"}
)
REPOSITORY = "fogwire/run-as-user-test"
IMAGE_USERS = {"root": "r0", "nobody": "r1"}
"""The image's own User -> tag."""
#: (image User, spec user) -> what ``id -u``, ``id -g`` and ``id -G`` print
CASES = {
    ("root", "nobody"): ("65534", "65534", {"65534", "50"}),
    ("root", "nobody:root"): ("65534", "0", {"0"}),
    ("root", "65534"): ("65534", "65534", {"65534", "50"}),
    ("root", "1234:50"): ("1234", "50", {"50"}),
    ("nobody", "root"): ("0", "0", {"0"}),
    ("nobody", "0:0"): ("0", "0", {"0"}),
    ("nobody", "0"): ("0", "0", {"0"}),
}


@pytest.fixture(scope="module")
def user_images(harness_images: images.TestImages) -> Iterator[dict[str, str]]:
    """One image per image ``User`` in the harness registry: user -> reference."""
    creds = f"{harness_images.username}:{harness_images.password}"
    refs = {}
    with tempfile.TemporaryDirectory(prefix="fwrunas-") as tmp:
        for user, tag in IMAGE_USERS.items():
            layout = Path(tmp) / tag
            images.build_busybox_layout(layout, tag, marker=f"image user {user}", user=user)
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
        agent_id=f"runas-{secrets.token_hex(3)}",
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


async def run_id(engine: Engine, image: str, user: str, auth: RegistryAuth) -> list[str]:
    """Run ``id -u; id -g; id -G`` as ``user`` in ``image`` and return the lines it printed."""
    await engine.obtain_image(image, auth)
    name = f"runas-{secrets.token_hex(4)}"
    spec = WorkloadSpec(name=name, image=image, command=("sh", "-c", "id -u; id -g; id -G; echo id-end"), user=user)
    await engine.create(spec)
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


@pytest.mark.parametrize(("image_user", "user"), list(CASES))
async def test_the_spec_user_overrides_the_image_user(
    engine: Engine, user_images: dict[str, str], harness_images: images.TestImages, image_user: str, user: str
) -> None:
    auth = RegistryAuth(harness_images.registry, harness_images.username, harness_images.password, insecure=True)
    uid, gid, groups = CASES[(image_user, user)]
    lines = await run_id(engine, user_images[image_user], user, auth)
    assert lines[:2] == [uid, gid], f"user {user!r} on an image of User {image_user!r} ran as {lines}"
    assert set(lines[2].split()) == groups, f"user {user!r} has groups {lines[2]!r}"
