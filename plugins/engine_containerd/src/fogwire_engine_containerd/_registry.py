"""A small registry v2 client: resolve a manifest for this platform and stream blobs.

containerd 1.6 has no transfer service, so a client-side pull is the plugin's job.
This speaks the distribution API over ``http.client`` with Basic or Bearer-token
auth. It never logs or repeats credentials.

TLS: the registry's certificate is verified with the system's CAs plus the
Registry's own (:attr:`RegistryAuth.ca_pem`). An ``insecure`` registry is tried over
TLS without verification, then plain HTTP when it doesn't speak TLS; a loopback
registry without a CA of its own speaks plain HTTP (as dockerd assumes).
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import json
import re
import ssl
import urllib.parse

from fogwire.engine import RegistryAuth
from fogwire.errors import EngineError, ImageNotFoundError, RegistryAuthError, RegistryCertificateError
from fogwire_engine_containerd._platform import INDEX_TYPES, MANIFEST_TYPES
from fogwire_engine_containerd._ref import Reference

ACCEPT = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (with or without a port)."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class RegistryClient:
    """Talks to the registry of one reference; blocking, used from a worker thread."""

    def __init__(self, ref: Reference, auth: RegistryAuth | None, timeout_s: float = 60.0) -> None:
        self.ref = ref
        self.auth = auth
        self.timeout_s = timeout_s
        self.host = ref.api_host
        self.insecure = auth is not None and auth.insecure
        self.ca_pem = auth.ca_pem if auth is not None else None
        self.plain_http = not self.insecure and not self.ca_pem and is_loopback(self.host)
        self._may_fall_back = self.insecure
        """Until the registry first answers over TLS, an ``insecure`` one may turn out to speak plain HTTP."""
        self._contexts: dict[bool, ssl.SSLContext] = {}
        self._authorization: str | None = None
        self._conn: http.client.HTTPConnection | None = None

    # ------------------------------------------------------------------ transport

    def _context(self, verify: bool) -> ssl.SSLContext:
        """The TLS context: the system's CAs and the Registry's own; ``verify=False`` checks nothing."""
        if verify not in self._contexts:
            context = ssl.create_default_context()
            if not verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            elif self.ca_pem:
                try:
                    context.load_verify_locations(cadata=self.ca_pem)
                except (ssl.SSLError, ValueError) as error:
                    raise RegistryCertificateError(
                        f"the CA certificate given for registry {self.host} is not PEM text of a certificate: {error}"
                    ) from error
            self._contexts[verify] = context
        return self._contexts[verify]

    def _connect(self, host: str, plain: bool) -> http.client.HTTPConnection:
        if plain:
            return http.client.HTTPConnection(host, timeout=self.timeout_s)
        verify = not (self.insecure and host == self.host)
        return http.client.HTTPSConnection(host, timeout=self.timeout_s, context=self._context(verify))

    def close(self) -> None:
        """Close the kept-alive connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _send(self, url: str, headers: dict[str, str]) -> http.client.HTTPResponse:
        parts = urllib.parse.urlsplit(url)
        same_host = parts.netloc == self.host
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        if same_host:
            if self._conn is None:
                self._conn = self._connect(self.host, self.plain_http)
            conn = self._conn
        else:
            conn = self._connect(parts.netloc, parts.scheme == "http")
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
        except ssl.SSLCertVerificationError as error:
            if same_host:
                self.close()
            given = "; the Registry's CA did not verify it either" if self.ca_pem else ""
            raise RegistryCertificateError(
                f"the TLS certificate of registry {parts.netloc} is not trusted pulling {self.ref.name!r}: "
                f"{error.verify_message}{given}; give its Registry the CA that signed it "
                "(requiresCert: true, certificate: the CA's PEM text)"
            ) from error
        except ssl.SSLError as error:
            if same_host:
                self.close()
                if self._may_fall_back and not self.plain_http:
                    self.plain_http = True  # an insecure registry speaking plain HTTP
                    self._may_fall_back = False
                    return self._send(url, headers)
            raise EngineError(
                f"TLS with registry {parts.netloc} failed for {self.ref.name!r}: {error}; "
                "check that it speaks HTTPS (mark a plain-HTTP registry insecure)"
            ) from error
        except (OSError, http.client.HTTPException) as error:
            if same_host:
                self.close()
            raise EngineError(
                f"cannot reach registry {self.host} for {self.ref.name!r}: {error}; "
                "check the registry address and that it is up"
            ) from error
        if same_host:
            self._may_fall_back = False
        return response

    def _get(self, path: str, accept: str | None = None) -> http.client.HTTPResponse:
        """GET ``path`` with auth handling and redirects; returns a 200 response."""
        scheme = "http" if self.plain_http else "https"
        url = f"{scheme}://{self.host}{path}"
        for _attempt in range(6):
            headers = {"User-Agent": "fogwire-engine-containerd"}
            if accept:
                headers["Accept"] = accept
            host = urllib.parse.urlsplit(url).netloc
            if self._authorization and host == self.host:
                headers["Authorization"] = self._authorization
            resp = self._send(url, headers)
            if resp.status in (301, 302, 303, 307, 308):
                location = resp.getheader("Location") or ""
                resp.read()
                url = urllib.parse.urljoin(url, location)
                continue
            if resp.status == 401 and host == self.host:
                challenge = resp.getheader("WWW-Authenticate") or ""
                resp.read()
                if headers.get("Authorization"):
                    raise RegistryAuthError(
                        f"registry {self.host} refused the credentials for {self.ref.name!r}; "
                        "check the registry user name and password"
                    )
                self._authorization = self._authorize(challenge)
                continue
            if resp.status == 200:
                return resp
            body = resp.read(4096).decode(errors="replace")
            if resp.status == 403:
                raise RegistryAuthError(f"registry {self.host} denied access to {self.ref.name!r} (403)")
            if resp.status == 404:
                raise ImageNotFoundError(
                    f"registry {self.host} has no {path.rsplit('/', 1)[-1]!r} for {self.ref.name!r}"
                )
            raise EngineError(f"registry {self.host} answered {resp.status} for {self.ref.name!r}: {body[:200]}")
        raise EngineError(f"registry {self.host}: too many redirects or auth rounds for {self.ref.name!r}")

    def _basic(self) -> str | None:
        if self.auth is None or not self.auth.has_credentials:
            return None
        raw = f"{self.auth.username}:{self.auth.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def _authorize(self, challenge: str) -> str:
        scheme, _, params = challenge.partition(" ")
        basic = self._basic()
        if scheme.lower() == "basic":
            if basic is None:
                raise RegistryAuthError(
                    f"registry {self.host} requires credentials for {self.ref.name!r}; "
                    "configure a registry with a user name and password"
                )
            return basic
        if scheme.lower() != "bearer":
            raise RegistryAuthError(f"registry {self.host} asks for unsupported auth scheme {scheme!r}")
        fields = dict(_CHALLENGE.findall(params))
        realm = fields.get("realm", "")
        query = {"scope": fields.get("scope") or f"repository:{self.ref.repository}:pull"}
        if fields.get("service"):
            query["service"] = fields["service"]
        url = f"{realm}?{urllib.parse.urlencode(query)}"
        parts = urllib.parse.urlsplit(url)
        conn = self._connect(parts.netloc, parts.scheme == "http")
        headers = {"User-Agent": "fogwire-engine-containerd"}
        if basic:
            headers["Authorization"] = basic
        try:
            conn.request("GET", f"{parts.path}?{parts.query}", headers=headers)
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException) as error:
            raise EngineError(f"cannot reach the token service of registry {self.host}: {error}") from error
        finally:
            conn.close()
        if resp.status in (401, 403):
            raise RegistryAuthError(
                f"registry {self.host} refused the credentials for {self.ref.name!r}; "
                "check the registry user name and password"
            )
        if resp.status != 200:
            raise EngineError(f"token service of registry {self.host} answered {resp.status}")
        token = json.loads(body).get("token") or json.loads(body).get("access_token")
        if not token:
            raise EngineError(f"token service of registry {self.host} returned no token")
        return f"Bearer {token}"

    # ------------------------------------------------------------------ API

    def manifest(self, obj: str) -> tuple[bytes, str]:
        """The raw manifest (or index) ``obj`` (a tag or digest) and its media type."""
        resp = self._get(f"/v2/{self.ref.repository}/manifests/{obj}", ACCEPT)
        data = resp.read()
        media_type = (resp.getheader("Content-Type") or "").split(";")[0].strip()
        if media_type not in (*INDEX_TYPES, *MANIFEST_TYPES):
            media_type = json.loads(data).get("mediaType", "")
        return data, media_type

    def blob(self, digest: str) -> http.client.HTTPResponse:
        """A streaming response for the blob ``digest``; the caller reads and checks it."""
        return self._get(f"/v2/{self.ref.repository}/blobs/{digest}")
