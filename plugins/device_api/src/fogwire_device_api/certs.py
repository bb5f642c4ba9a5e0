"""The device API's own CA and server certificate, kept under the state directory.

The CA (RSA 3072, ten years) is made once and is what workloads trust (it is
projected into each as ``ca.crt``). The server certificate (RSA 2048, one year) names
``localhost``, ``edgelet.default.svc.bridge.local``, ``iofog``, 127.0.0.1 and the
bridge address; it is made again when it nears its end or when the names it
must carry change (the bridge address moved). RSA keys, not ECDSA: the TLS
stacks of small workloads (busybox's wget among them) offer no ECDSA suites.

Making them takes ``cryptography``, which costs a process about 11 MiB it never
gives back; the daemon therefore runs :func:`main` in a short-lived child
(``python -m fogwire_device_api.certs``) and only reads the files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import attrs

from fogwire.errors import FogwireError
from fogwire.paths import replace_file

SERVER_NAMES = ("localhost", "edgelet.default.svc.bridge.local", "iofog")
"""The DNS names the server certificate always carries."""

RENEW_BEFORE_S = 30 * 24 * 3600
"""A server certificate with less than this left is made again (30 days)."""


@attrs.frozen
class CertFiles:
    """Where the CA and the server's key and certificate live."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        """The CA certificate (PEM) workloads trust."""
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        """The CA's private key (0600)."""
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        """The server certificate (PEM), followed by nothing else."""
        return self.directory / "server.crt"

    @property
    def server_key(self) -> Path:
        """The server's private key (0600)."""
        return self.directory / "server.key"

    @property
    def server_meta(self) -> Path:
        """What the server certificate names and when it ends (JSON), read without parsing X.509."""
        return self.directory / "server.json"


def _current(files: CertFiles, addresses: Sequence[str], now: float) -> bool:
    try:
        meta = json.loads(files.server_meta.read_text())
    except (OSError, ValueError):
        return False
    wanted = sorted({*SERVER_NAMES, *addresses})
    return (
        files.ca_cert.exists()
        and files.server_cert.exists()
        and files.server_key.exists()
        and sorted(meta.get("names", [])) == wanted
        and float(meta.get("notAfter", 0)) - now > RENEW_BEFORE_S
    )


def ensure(directory: Path, addresses: Sequence[str], *, now: float | None = None) -> CertFiles:
    """Make sure the CA and a server certificate for ``addresses`` exist; make what is missing in a child process."""
    files = CertFiles(directory)
    if _current(files, addresses, time.time() if now is None else now):
        return files
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    result = subprocess.run(
        [sys.executable, "-m", "fogwire_device_api.certs", str(directory), *addresses],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise FogwireError(
            f"making the device API's certificates in {directory} failed: {result.stderr.strip()[-2000:]}"
        )
    return files


def make(directory: Path, addresses: Sequence[str]) -> None:
    """Make the CA (when missing) and a new server certificate for ``addresses`` (imports ``cryptography``)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    files = CertFiles(directory)
    now = datetime.datetime.now(datetime.UTC)
    pem = serialization.Encoding.PEM
    no_password = serialization.NoEncryption()
    pkcs8 = serialization.PrivateFormat.PKCS8
    if files.ca_key.exists() and files.ca_cert.exists():
        ca_key = serialization.load_pem_private_key(files.ca_key.read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    else:
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"fogwire device API CA {os.uname().nodename}")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        replace_file(files.ca_key, ca_key.private_bytes(pem, pkcs8, no_password).decode(), mode=0o600)
        replace_file(files.ca_cert, ca_cert.public_bytes(pem).decode(), mode=0o644)
    names = sorted({*SERVER_NAMES, *addresses})
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    not_after = now + datetime.timedelta(days=365)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgelet.default.svc.bridge.local")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    replace_file(files.server_key, key.private_bytes(pem, pkcs8, no_password).decode(), mode=0o600)
    replace_file(files.server_cert, cert.public_bytes(pem).decode(), mode=0o644)
    replace_file(files.server_meta, json.dumps({"names": names, "notAfter": not_after.timestamp()}), mode=0o644)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fogwire_device_api.certs DIR [ADDRESS...]``: what :func:`ensure` runs."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m fogwire_device_api.certs DIR [ADDRESS...]", file=sys.stderr)
        return 2
    make(Path(args[0]), args[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
