"""The node's credentials at its controller, kept 0600 under the state dir, and how each request is signed.

A provision answer is one of two generations, and a node keeps speaking the one it
was provisioned under (``controller-agent-api.md`` §3, §7):

* eclipse-iofog v3.0.x answers ``{uuid, token}``: every call sends the raw token as
  ``Authorization: <token>`` (no scheme);
* Datasance ≥ 3.5 answers ``{uuid, privateKey}`` (base64 of an Ed25519 JWK): every call
  sends ``Authorization: Bearer <JWT>``, EdDSA-signed, with a fresh ``jti`` (the
  controller accepts each once, so a retried request signs a new token).

The file is replaced atomically (temp file, fsync, rename), so a re-provisioning is
never half written and a running daemon sees either the old or the new credentials.
No secret is ever in a ``repr``, a log line or an error text.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

import attrs

from fogwire.errors import SourceError
from fogwire.paths import replace_file

JWT_ISSUER = "https://edgelet.default.svc.bridge.local"
"""The ``iss`` edgelet signs controller tokens with."""
JWT_TTL_S = 600
"""A controller token is valid 10 minutes."""


class CredentialsError(SourceError):
    """The stored credentials can't be read or used (the text never holds a secret)."""


@attrs.frozen
class Credentials:
    """What provisioning gave this node. ``secret`` is the token or the private key; never shown."""

    controller_url: str
    uuid: str
    generation: str
    """``"token"`` (v3.0.x) or ``"jwt"`` (Datasance ≥ 3.5)."""
    secret: str = attrs.field(repr=False)
    fog_type: int = 1
    provisioned_at: float = 0.0

    @classmethod
    def from_answer(cls, controller_url: str, answer: Any, fog_type: int) -> Credentials:
        """The credentials in a provision answer; :class:`CredentialsError` when it holds neither kind."""
        if isinstance(answer, dict) and isinstance(answer.get("uuid"), str):
            if isinstance(answer.get("privateKey"), str):
                signing_key(answer["privateKey"])  # refuse a key that can't sign before storing it
                return cls(controller_url, answer["uuid"], "jwt", answer["privateKey"], fog_type, time.time())
            if isinstance(answer.get("token"), str):
                return cls(controller_url, answer["uuid"], "token", answer["token"], fog_type, time.time())
        keys = sorted(answer) if isinstance(answer, dict) else type(answer).__name__
        raise CredentialsError(
            f"the controller's provision answer holds no uuid with a token or privateKey (got {keys})"
        )

    def authorization(self) -> str:
        """The ``Authorization`` header value for one request (a JWT is signed afresh every time)."""
        if self.generation == "token":
            return self.secret
        return "Bearer " + sign_jwt(self.secret, self.uuid, self.controller_url)


def credentials_path(state_dir: Path) -> Path:
    """Where the credentials live: ``<state dir>/controller/credentials.json``."""
    return state_dir / "controller" / "credentials.json"


def load(state_dir: Path) -> Credentials | None:
    """The stored credentials, or ``None`` when the node is not provisioned."""
    path = credentials_path(state_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise CredentialsError(f"cannot read the controller credentials in {path}: {type(error).__name__}") from None
    try:
        return Credentials(
            str(data["controllerUrl"]),
            str(data["uuid"]),
            str(data["generation"]),
            str(data["secret"]),
            int(data.get("fogType", 1)),
            float(data.get("provisionedAt", 0.0)),
        )
    except (KeyError, TypeError, ValueError):
        raise CredentialsError(f"the controller credentials in {path} are incomplete; provision again") from None


def save(state_dir: Path, credentials: Credentials) -> Path:
    """Replace the stored credentials atomically (mode 0600, directory 0700)."""
    path = credentials_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    data = {
        "controllerUrl": credentials.controller_url,
        "uuid": credentials.uuid,
        "generation": credentials.generation,
        "secret": credentials.secret,
        "fogType": credentials.fog_type,
        "provisionedAt": credentials.provisioned_at,
    }
    replace_file(path, json.dumps(data), mode=0o600)
    return path


def forget(state_dir: Path) -> bool:
    """Delete the stored credentials; ``True`` if there were any."""
    try:
        credentials_path(state_dir).unlink()
        return True
    except FileNotFoundError:
        return False


def identity(state_dir: Path) -> tuple[int, int, int] | None:
    """(inode, size, mtime) of the credentials file: a daemon polls it to see a new provisioning."""
    try:
        st = os.stat(credentials_path(state_dir))
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@functools.lru_cache(maxsize=4)
def signing_key(private_key: str) -> Any:
    """The PyNaCl signing key in a provisioned ``privateKey`` (base64 of an Ed25519 JWK); decoded once."""
    import nacl.signing

    try:
        jwk = json.loads(base64.b64decode(private_key, validate=True))
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            raise ValueError("not an Ed25519 OKP key")
        seed = base64.urlsafe_b64decode(str(jwk["d"]) + "=" * (-len(str(jwk["d"])) % 4))
        if len(seed) != 32:
            raise ValueError("the private key is not 32 bytes")
        return nacl.signing.SigningKey(seed)
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        # the reason names the shape only, never a byte of the key
        raise CredentialsError(
            f"the provisioned private key is not a usable Ed25519 JWK ({type(error).__name__})"
        ) from None


def sign_jwt(private_key: str, node_uuid: str, audience: str, now: float | None = None) -> str:
    """An EdDSA JWT for one controller request: ``sub`` the node, ``tokenUse: controller``, a fresh ``jti``.

    The claims are edgelet's (``internal/auth/jwt.go``): ``iss`` the bridge name,
    ``aud`` the controller URL, ``iat``/``nbf`` now, ``exp`` 10 minutes on, and
    ``jti`` the base32 SHA-256 of the claims and a random nonce.

    The compact form (three base64url parts) is written here rather than by PyJWT:
    importing PyJWT loads ``cryptography`` wherever that is installed, 11 MiB of
    the idle daemon's 45 MiB budget (measured: ``docs/controller.md``). The tests
    decode every token with PyJWT, so the framing is checked by a kept library.
    """
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "sub": node_uuid,
        "iss": JWT_ISSUER,
        "aud": [audience],
        "exp": issued + JWT_TTL_S,
        "iat": issued,
        "nbf": issued,
        "tokenUse": "controller",
    }
    nonce = secrets.token_hex(16)
    digest = hashlib.sha256(json.dumps({"claims": claims, "nonce": nonce}, sort_keys=True).encode()).digest()
    claims["jti"] = base64.b32encode(digest).decode().rstrip("=")
    head = _b64url(json.dumps({"alg": "EdDSA", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signature = signing_key(private_key).sign(f"{head}.{body}".encode()).signature
    return f"{head}.{body}.{_b64url(signature)}"
