"""A Registry's own CA (``requiresCert`` + ``certificate``) and ``insecure``: checked by path, carried to the engine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fogwire import dockerapi
from fogwire.convert import make_converter
from fogwire.engine import RegistryAuth
from fogwire.errors import ConfigError, RegistryCertificateError
from fogwire.model.desired import DesiredState, assemble
from fogwire.resolve import resolve
from fogwire.testing.pki import make_pki


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_pki(tmp_path_factory.mktemp("pki")).ca_cert.read_text()


def registry(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "iofog.org/v3", "kind": "Registry", "spec": {"id": 3, "url": "reg.example:5000", **spec}}


def desired(*documents: dict[str, Any]) -> DesiredState:
    app = {
        "apiVersion": "iofog.org/v3",
        "kind": "Application",
        "metadata": {"name": "app"},
        "spec": {"microservices": [{"name": "web", "images": {"x86": "reg.example:5000/app:1", "registry": 3}}]},
    }
    return assemble(make_converter(), [*documents, app], "fleet.yaml")


def problems(*documents: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        assemble(make_converter(), list(documents), "fleet.yaml")
    return [str(p) for p in caught.value.problems]


def test_requires_cert_without_a_certificate_is_refused_at_its_path() -> None:
    assert problems(registry(requiresCert=True)) == [
        "fleet.yaml:DOC#1: spec.certificate: requiresCert is true: give the registry's CA certificate here (PEM text)"
    ]
    assert problems(registry(requiresCert=True, certificate="")) == problems(registry(requiresCert=True))


@pytest.mark.parametrize(
    "text",
    [
        "MIIBszCCAVmgAwIBAgIU",  # base64 without the PEM armour
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n",
    ],
)
def test_a_certificate_that_is_not_pem_is_refused_at_its_path(text: str) -> None:
    [problem] = problems(registry(requiresCert=True, certificate=text))
    assert problem.startswith("fleet.yaml:DOC#1: spec.certificate: expected PEM text of a CA certificate")


def test_a_wrongly_typed_field_and_a_bad_certificate_are_both_reported() -> None:
    found = problems(registry(requiresCert="yes", certificate=7), registry(id=4, requiresCert=True))
    assert "fleet.yaml:DOC#1: spec.requiresCert: expected a boolean (true or false), got 'yes'" in found
    assert "fleet.yaml:DOC#1: spec.certificate: expected a string, got 7" in found
    assert any(p.startswith("fleet.yaml:DOC#2: spec.certificate: requiresCert is true") for p in found)


def test_the_ca_of_a_registry_that_requires_it_reaches_the_engine(ca_pem: str) -> None:
    state = desired(registry(requiresCert=True, certificate=ca_pem, username="u", password="s3cret"))
    auth = resolve(state.microservices["web"], state, "amd64").auth
    assert auth == RegistryAuth("reg.example:5000", "u", "s3cret", ca_pem=ca_pem)
    assert ca_pem not in repr(auth) and "s3cret" not in repr(auth)


def test_an_anonymous_registry_with_a_ca_or_insecure_still_gets_its_tls_settings(ca_pem: str) -> None:
    with_ca = desired(registry(requiresCert=True, certificate=ca_pem))
    auth = resolve(with_ca.microservices["web"], with_ca, "amd64").auth
    assert auth is not None and auth.ca_pem == ca_pem and not auth.has_credentials
    plain = desired(registry(url="http://reg.example:5000"))
    auth = resolve(plain.microservices["web"], plain, "amd64").auth
    assert auth is not None and auth.insecure and not auth.has_credentials and auth.ca_pem is None
    neither = desired(registry())
    assert resolve(neither.microservices["web"], neither, "amd64").auth is None


def test_a_certificate_without_requires_cert_is_not_used(ca_pem: str) -> None:
    state = desired(registry(certificate=ca_pem, username="u", password="p"))
    auth = resolve(state.microservices["web"], state, "amd64").auth
    assert auth is not None and auth.ca_pem is None


def test_how_the_registry_is_reached_does_not_change_the_workload_hash(ca_pem: str) -> None:
    def hashed(*documents: dict[str, Any]) -> str:
        state = desired(*documents)
        return resolve(state.microservices["web"], state, "amd64").config_hash

    assert (
        hashed(registry()) == hashed(registry(requiresCert=True, certificate=ca_pem)) == hashed(registry(insecure=True))
    )
    with_user = hashed(registry(username="u", password="p"))
    assert with_user == hashed(registry(username="u", password="p", requiresCert=True, certificate=ca_pem))
    assert with_user != hashed(registry())


def test_a_daemons_certificate_error_is_classified_without_the_password() -> None:
    auth = RegistryAuth("reg.example:5000", "me", "s3cret")
    message = 'Get "https://reg.example:5000/v2/": x509: certificate signed by unknown authority (me:s3cret)'
    error = dockerapi.pull_error(message, "reg.example:5000/app:1", auth, daemon="dockerd", plain_http_fix="")
    assert isinstance(error, RegistryCertificateError)
    assert "dockerd does not trust the TLS certificate of registry reg.example:5000" in str(error)
    assert "requiresCert: true" in str(error) and "s3cret" not in str(error)


def test_validate_reports_the_path(tmp_path: Path, run_cli: Callable[..., Any], isolated_paths: Path) -> None:
    path = tmp_path / "registry.yaml"
    path.write_text(
        "apiVersion: iofog.org/v3\nkind: Registry\nspec: {id: 3, url: r.example, requiresCert: true, certificate: x}\n"
    )
    result = run_cli("validate", "-f", str(path))
    assert result.code == 2
    assert result.err.splitlines() == [
        f"{path}:DOC#1: spec.certificate: expected PEM text of a CA certificate ('-----BEGIN CERTIFICATE-----' …), "
        "got no such block"
    ]
