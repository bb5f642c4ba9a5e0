"""``pytest --fogwire-engine NAME`` runs the contract suite with nothing but a host conftest.

This is how a third-party engine plugin uses ``fogwire.testing``: a fresh
project directory holds only a ``conftest.py`` with the two registry fixtures;
the option alone brings the suite in. A few tests of the suite are selected to
keep this short; the full suite runs in each plugin's own tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness import images, services

CONFTEST = """
import pytest
from fogwire.engine import RegistryAuth
from fogwire.testing import ContractArchives, ContractRegistry


@pytest.fixture(scope="session")
def fogwire_registry():
    auth = RegistryAuth({registry!r}, {user!r}, {password!r}, insecure=True)
    return ContractRegistry({registry!r}, auth, {image!r}, {other!r})


@pytest.fixture(scope="session")
def fogwire_image_archives():
    return ContractArchives({docker_archive!r}, {oci_archive!r})
"""


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_one_option_runs_the_suite(
    engine: str,
    tmp_path: Path,
    harness_images: images.TestImages,
    harness_dockerd: services.Dockerd,
    harness_podman: services.Podman,
) -> None:
    url = harness_dockerd.host if engine == "docker" else harness_podman.url
    (tmp_path / "conftest.py").write_text(
        textwrap.dedent(
            CONFTEST.format(
                registry=harness_images.registry,
                user=harness_images.username,
                password=harness_images.password,
                image=harness_images.ref_v1,
                other=harness_images.ref_v2,
                docker_archive=str(harness_images.docker_archive),
                oci_archive=str(harness_images.oci_archive),
            )
        )
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-W",
            "error",
            "-q",
            "--fogwire-engine",
            engine,
            "--fogwire-engine-url",
            url,
            "-k",
            "pull_with_credentials or exits_at_once or wrong_credentials",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "3 passed" in done.stdout, done.stdout[-2000:]
    assert (
        "TestEngineContract"
        in subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",
                "--collect-only",
                "-q",
                "--fogwire-engine",
                engine,
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        ).stdout
    )


def test_the_suite_fails_clearly_without_an_engine(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    (tmp_path / "test_x.py").write_text(
        "from fogwire.testing.contract import EngineContract\n\nclass TestX(EngineContract):\n    pass\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-k", "absent_workload"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "--fogwire-engine NAME" in done.stdout
