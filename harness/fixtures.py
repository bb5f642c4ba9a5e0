"""pytest fixtures for the harness services, loaded for every test run.

The root ``pyproject.toml`` adds ``-p harness.fixtures``, so any test in the
repo (core, plugins, ``tests/``) can ask for these by name. Each is
session-scoped and starts its service on first use (reusing a running one);
services are left running after the session, as ``make services`` would, so
the next run starts in well under a second. Stop them with ``make stop-services``.

Set ``FOGWIRE_SKIP_SERVICES=1`` to skip (not fail) tests that need a service,
e.g. on a laptop without the engines; CI never sets it.

Every test is put in one layer (a marker), so a layer can run alone:

* ``e2e``: ``tests/test_e2e_*.py``, the agent and CLI end to end on real engines;
* ``services``: needs a harness service (it uses one of the fixtures below, directly
  or through another fixture), or is marked so because it starts one itself;
* ``unit``: everything else. ``make test-fast`` runs only these, with
  ``FOGWIRE_FORBID_SERVICES=1`` so a test that reaches for a service fails instead of
  quietly starting one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import images, proxy, services

SKIP_ENV = "FOGWIRE_SKIP_SERVICES"


def _skip_if_asked(what: str) -> None:
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: not starting {what}")


LAYERS = ("unit", "services", "e2e")

SERVICE_FIXTURES = frozenset(
    {
        "harness_registry",
        "harness_images",
        "harness_tls_registry",
        "harness_tls_image",
        "harness_dockerd",
        "harness_podman",
        "harness_containerd",
        "harness_proxy",
    }
)
"""Fixtures that start (or reuse) a harness service."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its layer, unless it carries one already."""
    for item in items:
        if any(item.get_closest_marker(layer) for layer in LAYERS):
            continue
        if item.path.name.startswith("test_e2e_"):
            item.add_marker(pytest.mark.e2e)
        elif SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)
        else:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def harness_registry() -> services.Registry:
    """The htpasswd-protected test registry on 127.0.0.1:5001."""
    _skip_if_asked("the registry")
    return services.start_registry()


@pytest.fixture(scope="session")
def harness_images(harness_registry: services.Registry) -> images.TestImages:
    """``fogwire/busybox:1`` and ``:2`` pushed to the registry, plus the tarballs."""
    return images.ensure_test_images(harness_registry)


@pytest.fixture(scope="session")
def harness_tls_registry() -> services.TlsRegistry:
    """The htpasswd-protected TLS test registry on 198.18.77.1:5443, its certificate signed by a CA of its own."""
    _skip_if_asked("the TLS registry")
    return services.start_tls_registry()


@pytest.fixture(scope="session")
def harness_tls_image(
    harness_tls_registry: services.TlsRegistry, harness_images: images.TestImages
) -> images.TlsTestImage:
    """``fogwire/busybox:1`` pushed to the TLS registry, with the CA a pull needs."""
    return images.ensure_tls_test_image(harness_tls_registry, harness_images)


@pytest.fixture(scope="session")
def harness_dockerd() -> services.Dockerd:
    """The harness dockerd; connect with ``docker.DockerClient(base_url=harness_dockerd.host)``."""
    _skip_if_asked("dockerd")
    return services.start_dockerd()


@pytest.fixture(scope="session")
def harness_podman() -> services.Podman:
    """The harness podman service; connect with ``PodmanClient(base_url=harness_podman.url)``."""
    _skip_if_asked("podman")
    return services.start_podman()


@pytest.fixture(scope="session")
def harness_containerd() -> services.Containerd:
    """The external harness containerd; gRPC at ``harness_containerd.url``."""
    _skip_if_asked("containerd")
    return services.start_containerd()


@pytest.fixture
def harness_proxy(tmp_path: Path) -> Iterator[proxy.TinyProxy]:
    """A tinyproxy of this test's own on 127.0.0.1 (Basic auth, a log of its requests), stopped after the test."""
    _skip_if_asked("tinyproxy")
    with proxy.tinyproxy(tmp_path / "tinyproxy") as running:
        yield running
