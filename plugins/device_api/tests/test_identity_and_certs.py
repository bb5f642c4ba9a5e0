"""Workload tokens (minted, verified, refused), their projection with the ``..data`` swap, and the certificates."""

from __future__ import annotations

import json
import os
import ssl
import stat
import threading
import time
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fogwire_device_api import certs
from fogwire_device_api.identity import AUDIENCE, Projector, TokenIssuer

from fogwire.api.app import ApiError


@pytest.fixture
def issuer(tmp_path: Path) -> TokenIssuer:
    return TokenIssuer(tmp_path / "key", issuer="fogwire://device-api")


def _public_pem(issuer: TokenIssuer) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    raw = bytes(issuer._verify_key)
    return Ed25519PublicKey.from_public_bytes(raw).public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def test_a_token_is_an_eddsa_jwt_an_independent_library_verifies(issuer: TokenIssuer) -> None:
    token = issuer.mint("ms-1")
    claims = jwt.decode(token, _public_pem(issuer), algorithms=["EdDSA"], audience=AUDIENCE)
    assert claims["tokenUse"] == "serviceaccount"
    assert claims["iofog.org.microservice.uuid"] == "ms-1"
    assert claims["exp"] - claims["iat"] == 3600
    assert issuer.verify(token) == "ms-1"
    assert issuer.mint("ms-1").split(".")[1] != token.split(".")[1]  # a fresh jti each time


def test_the_key_survives_a_restart_and_is_0600(tmp_path: Path, issuer: TokenIssuer) -> None:
    token = issuer.mint("ms-1")
    again = TokenIssuer(tmp_path / "key", issuer="fogwire://device-api")
    assert again.verify(token) == "ms-1"
    assert stat.S_IMODE((tmp_path / "key").stat().st_mode) == 0o600


@pytest.mark.parametrize("case", ["expired", "not-yet", "other-key", "tampered", "alg-none", "garbage", "wrong-use"])
def test_bad_tokens_are_refused(tmp_path: Path, issuer: TokenIssuer, case: str) -> None:
    now = time.time()
    if case == "expired":
        token = issuer.mint("ms-1", now=now - 3700)
    elif case == "not-yet":
        token = issuer.mint("ms-1", now=now + 600)
    elif case == "other-key":
        token = TokenIssuer(tmp_path / "other", issuer="fogwire://device-api").mint("ms-1")
    elif case == "tampered":
        head, _, signature = issuer.mint("ms-1").split(".")
        body = jwt.utils.base64url_encode(json.dumps({"iofog.org.microservice.uuid": "ms-2"}).encode()).decode()
        token = f"{head}.{body}.{signature}"
    elif case == "alg-none":
        token = jwt.encode({"iofog.org.microservice.uuid": "ms-1", "exp": now + 60}, key=None, algorithm="none")
    elif case == "wrong-use":
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        private = Ed25519PrivateKey.from_private_bytes(bytes(issuer._key))
        claims = {"iofog.org.microservice.uuid": "ms-1", "tokenUse": "edgeletapi", "aud": AUDIENCE, "exp": now + 60}
        claims |= {"iat": now, "nbf": now, "iss": "fogwire://device-api"}
        token = jwt.encode(claims, private, algorithm="EdDSA")
    else:
        token = "not.a.token"
    with pytest.raises(ApiError) as refused:
        issuer.verify(token)
    assert refused.value.code == "UNAUTHORIZED"


def test_projection_swaps_data_atomically_and_rotates_at_half_life(tmp_path: Path, issuer: TokenIssuer) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("CA-1")
    projector = Projector(tmp_path / "sa", issuer, ca)
    now = time.time()
    assert projector.ensure("ms-1", now=now)
    directory = projector.directory("ms-1")
    first = (directory / "token").read_text()
    assert os.readlink(directory / "token") == "..data/token"
    assert (directory / "ca.crt").read_text() == "CA-1"
    assert not projector.ensure("ms-1", now=now + 1000)  # still fresh: nothing written
    stop = threading.Event()
    seen: set[str] = set()

    def read() -> None:  # a reader racing the swaps always sees a whole token
        while not stop.is_set():
            seen.add((directory / "token").read_text())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for step in range(1, 20):
            projector.ensure("ms-1", now=now + 1900 * step)
    finally:
        stop.set()
        reader.join()
    assert all(issuer.verify(t, now=issuer_time(t)) == "ms-1" for t in seen)
    assert (directory / "token").read_text() != first
    assert len([p for p in directory.iterdir() if p.name.startswith("..20")]) == 1  # old data directories go
    ca.write_text("CA-2")
    assert projector.ensure("ms-1", now=now + 1900 * 19 + 1)  # a new CA is projected at once
    assert (directory / "ca.crt").read_text() == "CA-2"
    projector.forget("ms-1")
    assert not directory.exists()


def issuer_time(token: str) -> float:
    return float(jwt.decode(token, options={"verify_signature": False})["iat"])


def test_certificates_are_made_once_and_again_when_the_names_change(tmp_path: Path) -> None:
    files = certs.ensure(tmp_path / "tls", ["127.0.0.1"])
    ca_before = files.ca_cert.read_bytes()
    server_before = files.server_cert.read_bytes()
    assert stat.S_IMODE(files.ca_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.server_key.stat().st_mode) == 0o600
    assert certs.ensure(tmp_path / "tls", ["127.0.0.1"]).server_cert.read_bytes() == server_before
    certs.ensure(tmp_path / "tls", ["127.0.0.1", "10.9.0.1"])
    assert files.ca_cert.read_bytes() == ca_before  # the CA workloads trust stays
    server = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(a) for a in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "10.9.0.1"}
    assert set(names.get_values_for_type(x509.DNSName)) == {
        "localhost",
        "iofog",
        "edgelet.default.svc.bridge.local",
    }
    # A TLS client that trusts only the CA accepts the server certificate for each name.
    context = ssl.create_default_context(cafile=str(files.ca_cert))
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(files.server_cert, files.server_key)
    for name in ("iofog", "edgelet.default.svc.bridge.local"):
        client_in, server_in = ssl.MemoryBIO(), ssl.MemoryBIO()
        client = context.wrap_bio(client_in, server_in, server_hostname=name)
        served = server_context.wrap_bio(server_in, client_in, server_side=True)
        for _ in range(10):
            for side in (client, served):
                try:
                    side.do_handshake()
                except ssl.SSLWantReadError:
                    pass
        client.do_handshake()
        assert client.getpeercert() is not None


def test_a_certificate_near_its_end_is_made_again(tmp_path: Path) -> None:
    files = certs.ensure(tmp_path / "tls", ["127.0.0.1"])
    before = files.server_cert.read_bytes()
    later = time.time() + 340 * 24 * 3600
    certs.ensure(tmp_path / "tls", ["127.0.0.1"], now=later)
    assert files.server_cert.read_bytes() != before
