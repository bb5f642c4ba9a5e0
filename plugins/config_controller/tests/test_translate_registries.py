"""The controller's registries: ``requiresCert``/``certificate`` carried over, a bad one explained to its users."""

from __future__ import annotations

from pathlib import Path

from fogwire_config_controller.translate import documents

from fogwire.convert import make_converter
from fogwire.model.desired import assemble
from fogwire.resolve import resolve
from fogwire.testing.pki import make_pki


def row(rid: int, **fields: object) -> dict[str, object]:
    return {"id": rid, "url": "reg.example:5000", "isPublic": False, "username": "u", "password": "p", **fields}


def microservice(uuid: str, registry: int) -> dict[str, object]:
    return {"uuid": uuid, "imageId": "reg.example:5000/app:1", "registryId": registry}


def test_a_registrys_ca_reaches_the_engines_auth(tmp_path: Path) -> None:
    ca = make_pki(tmp_path).ca_cert.read_text()
    converter = make_converter()
    translation = documents(
        converter, [microservice("ms-a", 5)], [row(5, requiresCert=True, certificate=ca)], "controller"
    )
    assert translation.rejected == ()
    state = assemble(converter, translation.documents, "controller")
    auth = resolve(state.microservices["ms-a"], state, "amd64").auth
    assert auth is not None and auth.ca_pem == ca and not auth.insecure


def test_a_registry_requiring_a_cert_without_one_rejects_its_microservices_saying_why() -> None:
    translation = documents(
        make_converter(),
        [microservice("ms-a", 5), microservice("ms-b", 6)],
        [row(5, requiresCert=True), row(6, requiresCert=True, certificate="not a certificate")],
        "controller",
    )
    assert [(r.uuid, r.path) for r in translation.rejected] == [("ms-a", "registryId"), ("ms-b", "registryId")]
    first, second = (r.message for r in translation.rejected)
    assert first == "registry 5 can't be used: certificate: requiresCert is true: give the registry's CA " + (
        "certificate here (PEM text)"
    )
    assert second.startswith("registry 6 can't be used: certificate: expected PEM text of a CA certificate")
