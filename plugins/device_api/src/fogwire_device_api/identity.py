"""Workload identity: a service-account token per microservice, signed by the agent and projected as files.

A token is an Ed25519-signed JWT (``alg: EdDSA``) naming its microservice
(``iofog.org.microservice.uuid``, ``sub``), with ``tokenUse: serviceaccount``, the
audience ``edgelet://edgeletapi/v1`` and a one-hour life; a fresh one is projected
before half of it has passed. Files go to
``<dir>/<microservice>/{token,ca.crt}`` the way Kubernetes and edgelet project
secrets: a timestamped directory, the ``..data`` symlink swapped atomically to
it, and ``token``/``ca.crt`` as symlinks through ``..data``, so a reader sees the
old pair or the new one, never half. The workload mounts ``<dir>/<microservice>``
read-only at :data:`MOUNT_PATH`.

The signing key (32 bytes of seed, 0600) lives beside them, so tokens verify
across a daemon restart.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.signing

from fogwire.api.app import ApiError
from fogwire.paths import replace_file

MOUNT_PATH = "/var/run/secrets/edgelet.iofog.org/serviceaccount"
"""Where a workload finds its ``token`` and ``ca.crt`` (what the EdgeletAPI SDK reads)."""

AUDIENCE = "edgelet://edgeletapi/v1"
TOKEN_USE = "serviceaccount"
MICROSERVICE_CLAIM = "iofog.org.microservice.uuid"
LIFETIME_S = 3600
LEEWAY_S = 30


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenIssuer:
    """Mints and checks the workloads' tokens with one Ed25519 key kept at ``key_file``."""

    def __init__(self, key_file: Path, issuer: str) -> None:
        self.key_file = key_file
        self.issuer = issuer
        self._key = self._load_or_make()
        self._verify_key = self._key.verify_key

    def _load_or_make(self) -> nacl.signing.SigningKey:
        try:
            seed = base64.b64decode(self.key_file.read_text().strip(), validate=True)
            if len(seed) == 32:
                return nacl.signing.SigningKey(seed)
        except (OSError, ValueError):
            pass
        key = nacl.signing.SigningKey.generate()
        replace_file(self.key_file, base64.b64encode(bytes(key)).decode() + "\n", mode=0o600)
        return key

    @property
    def key_id(self) -> str:
        """A short id of the signing key (the JWT header's ``kid``)."""
        return _b64url(bytes(self._verify_key)[:8])

    def mint(self, microservice: str, now: float | None = None) -> str:
        """A token for ``microservice``, valid for :data:`LIFETIME_S` from ``now``."""
        issued = int(time.time() if now is None else now)
        header = {"alg": "EdDSA", "typ": "JWT", "kid": self.key_id}
        claims = {
            "iss": self.issuer,
            "sub": f"system:serviceaccount:{microservice}",
            "aud": AUDIENCE,
            "iat": issued,
            "nbf": issued - LEEWAY_S,
            "exp": issued + LIFETIME_S,
            "jti": secrets.token_urlsafe(12),
            "tokenUse": TOKEN_USE,
            MICROSERVICE_CLAIM: microservice,
        }
        signing_input = f"{_b64url(json.dumps(header, separators=(',', ':')).encode())}.{_b64url(json.dumps(claims, separators=(',', ':')).encode())}"
        signature = self._key.sign(signing_input.encode()).signature
        return f"{signing_input}.{_b64url(signature)}"

    def verify(self, token: str, now: float | None = None) -> str:
        """The microservice ``token`` names; :class:`ApiError` UNAUTHORIZED when it is forged, expired or not ours."""
        parts = token.split(".")
        if len(parts) != 3:
            raise ApiError("UNAUTHORIZED", "the token is not a JWT")
        try:
            header = json.loads(_unb64url(parts[0]))
            claims = json.loads(_unb64url(parts[1]))
            signature = _unb64url(parts[2])
        except (ValueError, UnicodeDecodeError) as error:
            raise ApiError("UNAUTHORIZED", "the token is not a JWT") from error
        if not isinstance(header, dict) or header.get("alg") != "EdDSA" or not isinstance(claims, dict):
            raise ApiError("UNAUTHORIZED", "the token is not signed by this agent (alg must be EdDSA)")
        try:
            self._verify_key.verify(f"{parts[0]}.{parts[1]}".encode(), signature)
        except (nacl.exceptions.BadSignatureError, ValueError) as error:
            raise ApiError("UNAUTHORIZED", "the token's signature is not this agent's") from error
        moment = time.time() if now is None else now
        if _number(claims.get("exp")) + LEEWAY_S < moment:
            raise ApiError("UNAUTHORIZED", "the token has expired; read the projected token file again")
        if _number(claims.get("nbf")) - LEEWAY_S > moment:
            raise ApiError("UNAUTHORIZED", "the token is not valid yet")
        if claims.get("tokenUse") != TOKEN_USE or claims.get("aud") != AUDIENCE or claims.get("iss") != self.issuer:
            raise ApiError("UNAUTHORIZED", "the token is not a service-account token of this agent")
        microservice = claims.get(MICROSERVICE_CLAIM)
        if not isinstance(microservice, str) or not microservice:
            raise ApiError("UNAUTHORIZED", f"the token names no microservice ({MICROSERVICE_CLAIM})")
        return microservice


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def claims_of(token: str) -> dict[str, Any]:
    """The claims of ``token``, unverified (for reading the expiry of a projected token)."""
    try:
        claims = json.loads(_unb64url(token.split(".")[1]))
    except (IndexError, ValueError, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


class Projector:
    """Writes each microservice's token and the CA into ``root/<microservice>`` with the ``..data`` swap."""

    def __init__(self, root: Path, issuer: TokenIssuer, ca_cert: Path) -> None:
        self.root = root
        self.issuer = issuer
        self.ca_cert = ca_cert

    def directory(self, microservice: str) -> Path:
        """The directory mounted into ``microservice`` at :data:`MOUNT_PATH`."""
        return self.root / microservice

    def current_token(self, microservice: str) -> str | None:
        """The token projected now, if any."""
        try:
            return (self.directory(microservice) / "token").read_text()
        except OSError:
            return None

    def ensure(self, microservice: str, now: float | None = None) -> bool:
        """Project a fresh token when there is none or half its life has passed; ``True`` if one was written."""
        moment = time.time() if now is None else now
        token = self.current_token(microservice)
        if token is not None:
            claims = claims_of(token)
            issued, expires = _number(claims.get("iat")), _number(claims.get("exp"))
            if moment < issued + (expires - issued) / 2 and self._ca_current(microservice):
                return False
        self.project(microservice, self.issuer.mint(microservice, moment))
        return True

    def _ca_current(self, microservice: str) -> bool:
        try:
            return (self.directory(microservice) / "ca.crt").read_bytes() == self.ca_cert.read_bytes()
        except OSError:
            return False

    def project(self, microservice: str, token: str) -> None:
        """Swap in a new ``token`` (and the CA) atomically."""
        target = self.directory(microservice)
        target.mkdir(parents=True, exist_ok=True, mode=0o755)
        stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()) + secrets.token_hex(4)
        data = target / stamp
        data.mkdir(mode=0o755)
        (data / "token").write_text(token)
        os.chmod(data / "token", 0o644)
        shutil.copyfile(self.ca_cert, data / "ca.crt")
        os.chmod(data / "ca.crt", 0o644)
        link = target / "..data_tmp"
        link.unlink(missing_ok=True)
        link.symlink_to(stamp)
        previous = os.readlink(target / "..data") if (target / "..data").is_symlink() else None
        os.replace(link, target / "..data")
        for name in ("token", "ca.crt"):
            if not (target / name).is_symlink():
                (target / name).unlink(missing_ok=True)
                (target / name).symlink_to(f"..data/{name}")
        if previous and previous != stamp:
            shutil.rmtree(target / previous, ignore_errors=True)

    def forget(self, microservice: str) -> None:
        """Remove a microservice's projected files (it is no longer desired)."""
        shutil.rmtree(self.directory(microservice), ignore_errors=True)
