"""How each engine gets a registry's CA and ``insecure``, beyond what the contract suite checks.

docker and podman trust a registry's CA only through their certs.d: with the engine
option ``registryCertsDir: null`` (the plugin writes nothing) a pull needing the CA
fails, and while another agent's pull holds the directory (with another CA) an
engine adds its CA beside it and leaves that one alone. ``insecure`` skips
verification per pull on podman (``tlsVerify``) and containerd (fogwire's client);
dockerd takes it only from its daemon.json (docs/engines.md).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from fogwire.certdirs import RegistryCertDirs
from fogwire.engine import Engine, RegistryAuth
from fogwire.errors import RegistryCertificateError
from fogwire.testing.pki import make_pki
from harness import agents, images

CERTS_D = {"docker": Path("/etc/docker/certs.d"), "podman": Path("/etc/containers/certs.d")}
DAEMON_PULLS = [k for k in agents.installed_engines() if k in CERTS_D]
PER_PULL_INSECURE = [k for k in agents.installed_engines() if k in ("podman", "containerd")]


def engine_of(
    kind: str, tmp: Path, options: Mapping[str, Any] | None = None
) -> contextlib.AbstractAsyncContextManager[Engine]:
    return agents.harness_engine(kind, tmp, f"rca-{secrets.token_hex(3)}", options)


def with_ca(tls: images.TlsTestImage, ca_pem: str | None = None, *, insecure: bool = False) -> RegistryAuth:
    return RegistryAuth(tls.registry, tls.username, tls.password, insecure=insecure, ca_pem=ca_pem)


@pytest.mark.parametrize("kind", DAEMON_PULLS)
async def test_the_daemon_trusts_the_ca_only_through_the_directory_the_plugin_writes(
    kind: str, tmp_path: Path, harness_tls_image: images.TlsTestImage
) -> None:
    tls = harness_tls_image
    async with engine_of(kind, tmp_path, {"registryCertsDir": None}) as engine:
        with pytest.raises(RegistryCertificateError, match=tls.registry.replace(".", r"\.")):
            await engine.pull(tls.reference, with_ca(tls, tls.ca_pem))
    async with engine_of(kind, tmp_path) as engine:
        assert await engine.pull(tls.reference, with_ca(tls, tls.ca_pem)) == tls.config_digest
    assert not (CERTS_D[kind] / tls.registry).exists()


@pytest.mark.parametrize("kind", DAEMON_PULLS)
async def test_another_agents_pull_in_progress_keeps_its_ca(
    kind: str, tmp_path: Path, harness_tls_image: images.TlsTestImage
) -> None:
    tls = harness_tls_image
    other_ca = make_pki(tmp_path / "other").ca_cert.read_text()
    directory = CERTS_D[kind] / tls.registry
    with RegistryCertDirs(CERTS_D[kind], daemon=kind).trusting(tls.registry, other_ca) as held:
        assert held == directory
        async with engine_of(kind, tmp_path) as engine:
            assert await engine.pull(tls.reference, with_ca(tls, tls.ca_pem)) == tls.config_digest
        assert sorted(p.read_text() for p in directory.glob("*.crt")) == [other_ca.strip() + "\n"]
    assert not directory.exists()


@pytest.mark.parametrize("kind", PER_PULL_INSECURE)
async def test_insecure_pulls_without_verifying(
    kind: str, tmp_path: Path, harness_tls_image: images.TlsTestImage, harness_images: images.TestImages
) -> None:
    tls = harness_tls_image
    async with engine_of(kind, tmp_path) as engine:
        assert await engine.pull(tls.reference, with_ca(tls, insecure=True)) == tls.config_digest
        plain = RegistryAuth(harness_images.registry, harness_images.username, harness_images.password, insecure=True)
        assert await engine.pull(harness_images.ref_v2, plain) == harness_images.config_digest_v2


@pytest.mark.skipif("docker" not in agents.installed_engines(), reason="the docker plugin is not installed")
async def test_docker_says_where_insecure_goes(tmp_path: Path, harness_tls_image: images.TlsTestImage) -> None:
    tls = harness_tls_image
    async with engine_of("docker", tmp_path) as engine:
        with pytest.raises(RegistryCertificateError) as caught:
            await engine.pull(tls.reference, with_ca(tls, insecure=True))
    assert f"add '{tls.registry}' there" in str(caught.value) and "insecure-registries" in str(caught.value)
