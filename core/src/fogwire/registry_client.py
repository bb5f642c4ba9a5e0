"""fogwire's one client of the registry v2 HTTP API (the OCI distribution spec).

The containerd engine pulls through it (containerd 1.6 has no transfer service, so a
pull is the client's job) and the bundle tools fetch and push through it. It speaks
``http.client`` and ``ssl`` only, blocks (callers run it in a thread) and streams
blobs: nothing reads a whole blob into memory. Import it where a request is made,
not at module level: ``ssl`` and ``http.client`` are not free.

What it does for a request:

* **Authentication.** A ``401`` carries ``WWW-Authenticate`` challenges
  (:func:`parse_challenges`). ``Bearer realm=…,service=…,scope=…``: a token is fetched
  from the realm, with the credentials as HTTP Basic if there are any, anonymously
  otherwise, and kept per scope; ``Basic``: the credentials are sent from then on.
  A request is authenticated at most once: a ``401`` after that is
  :class:`~fogwire.errors.RegistryAuthError`. Credentials and tokens never appear in
  an error, a log line or a repr.
* **Redirects.** ``301/302/303/307/308`` are followed, up to :data:`MAX_REDIRECTS`
  hops, to another host too (Docker Hub, GHCR and Quay serve blobs from a CDN);
  ``Authorization`` is sent only to the registry's own origin (scheme, host, port),
  never to where it redirects elsewhere. A relative ``Location`` is resolved.
* **Proxies.** ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``NO_PROXY`` (see
  :mod:`fogwire.http_proxy`): HTTPS through a ``CONNECT`` tunnel, plain HTTP as an
  absolute URI; loopback is never proxied.
* **TLS.** The registry's certificate is verified with the system's CAs plus the
  registry's own (``ca_pem``). ``insecure`` skips verification for the registry's
  host and falls back to plain HTTP when the registry doesn't speak TLS; a loopback
  registry without a CA speaks plain HTTP, as dockerd assumes.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import re
import ssl
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

import attrs

from fogwire.errors import (
    EngineError,
    ImageNotFoundError,
    RegistryAuthError,
    RegistryCertificateError,
    RegistryError,
)
from fogwire.http_proxy import Proxy, ProxySettings, is_loopback

log = logging.getLogger(__name__)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
"""The ``Accept`` header asking for any manifest or index kind fogwire understands."""

MAX_REDIRECTS = 10
"""Redirect hops one request follows before it fails (Go's ``net/http`` stops at 10 too)."""
MAX_MANIFEST_BYTES = 4 << 20
"""A manifest larger than this is refused: it is read into memory, and no real one comes close."""
CHUNK = 1 << 20
"""Bytes a connection reads or sends at a time."""
UPLOAD_CHUNK = 16 << 20
"""Bytes sent per ``PATCH``; an interrupted upload resumes at a chunk boundary."""

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

Origin = tuple[str, str, int]
"""``(scheme, host, port)``: two URLs are the same server only if all three are equal."""


class Body(Protocol):
    """A request body that can be streamed and rewound (a file, or a window of one)."""

    def read(self, size: int = -1, /) -> bytes: ...

    def seek(self, position: int, /) -> object: ...

    def tell(self) -> int: ...


@attrs.frozen
class Credentials:
    """User name and password for one registry; the password is never shown in a repr."""

    username: str
    password: str = attrs.field(repr=False)

    @property
    def basic(self) -> str:
        """The ``Authorization: Basic`` value."""
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


@attrs.frozen
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header: its scheme (lower-case) and parameters (names lower-case)."""

    scheme: str
    params: Mapping[str, str] = attrs.field(factory=dict, hash=False)


@attrs.frozen
class Response:
    """Status, headers (lower-case names) and, unless streamed, the body."""

    status: int
    headers: Mapping[str, str] = attrs.field(hash=False)
    body: bytes = b""


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*(?=[ \t]*(?:,|$))")
_SEPARATORS = re.compile(r"[\s,]*")
_SPACES = re.compile(r"[ \t]*")


def _skip(pattern: re.Pattern[str], text: str, position: int) -> int:
    """The position after what ``pattern`` (which may match nothing) matches at ``position``."""
    match = pattern.match(text, position)
    return match.end() if match else position


def parse_challenges(header: str) -> list[Challenge]:
    """The challenges of a ``WWW-Authenticate`` value (RFC 7235), in order.

    One value may hold several challenges (``Bearer realm="…",scope="…", Basic
    realm="…"``); a quoted parameter may hold commas and ``\\``-escapes. Several
    ``WWW-Authenticate`` headers are joined with ``,`` before parsing. A token68
    (``Negotiate abc==``) is skipped: no registry scheme uses one.
    """
    challenges: list[Challenge] = []
    params: dict[str, str] = {}
    position = 0
    while token := _TOKEN.match(header, position := _skip(_SEPARATORS, header, position)):
        after = _skip(_SPACES, header, token.end())
        if challenges and header.startswith("=", after):
            value_at = _skip(_SPACES, header, after + 1)
            if quoted := _QUOTED.match(header, value_at):
                params[token.group(0).lower()] = re.sub(r"\\(.)", r"\1", quoted.group(1))
                position = quoted.end()
            else:
                bare = _TOKEN.match(header, value_at)
                params[token.group(0).lower()] = bare.group(0) if bare else ""
                position = bare.end() if bare else value_at
            continue
        params = {}
        challenges.append(Challenge(token.group(0).lower(), params))
        token68 = _TOKEN68.match(header, after)
        position = token68.end() if token68 else after
    return challenges


def _origin(url: str) -> Origin:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)


def _netloc(origin: Origin) -> str:
    host = f"[{origin[1]}]" if ":" in origin[1] else origin[1]
    return f"{host}:{origin[2]}"


class _FallBackToPlainHttp(Exception):
    """The registry answered a TLS handshake with something else: an ``insecure`` registry on plain HTTP."""


class RegistryClient:
    """One registry server (``host[:port]``): its credentials, TLS trust and one kept-alive connection.

    ``ca_pem`` is PEM text of CA certificates trusted besides the system's.
    ``insecure`` skips TLS verification for this server and falls back to plain HTTP
    when it does not speak TLS. ``plain_http`` forces plain HTTP (``True``, an
    ``http://`` URL) or HTTPS (``False``); ``None`` decides: plain for a loopback
    server without a CA and not ``insecure`` (as dockerd does), HTTPS otherwise.
    ``proxies`` defaults to the process environment's. Blocking; one thread at a
    time (:meth:`clone` gives another thread its own connection).
    """

    def __init__(
        self,
        server: str,
        credentials: Credentials | None = None,
        *,
        ca_pem: str | None = None,
        insecure: bool = False,
        plain_http: bool | None = None,
        proxies: ProxySettings | None = None,
        timeout: float = 120.0,
        user_agent: str = "fogwire",
    ) -> None:
        self.server = server
        self.credentials = credentials
        self.ca_pem = ca_pem
        self.insecure = insecure
        self.proxies = ProxySettings.from_environment() if proxies is None else proxies
        self.timeout = timeout
        self.user_agent = user_agent
        if plain_http is None:
            plain_http = not insecure and not ca_pem and is_loopback(server)
        self.scheme = "http" if plain_http else "https"
        self._may_fall_back = insecure and self.scheme == "https"
        """Until the server first answers over TLS, an ``insecure`` one may turn out to speak plain HTTP."""
        self._contexts: dict[bool, ssl.SSLContext] = {}
        self._basic: str | None = None
        self._tokens: dict[str, str] = {}
        self._conn: http.client.HTTPConnection | None = None

    def __repr__(self) -> str:
        return f"RegistryClient({self.base_url!r}, insecure={self.insecure}, ca={'yes' if self.ca_pem else 'no'})"

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """``http(s)://server``, as the client speaks to it now."""
        return f"{self.scheme}://{self.server}"

    @property
    def origin(self) -> Origin:
        """The registry's own ``(scheme, host, port)``: the only origin sent its ``Authorization``."""
        return _origin(self.base_url)

    def close(self) -> None:
        """Close the kept-alive connection (a later request opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def clone(self) -> RegistryClient:
        """Another client of the same registry, sharing what authentication and TLS learnt, on its own connection."""
        other = RegistryClient(
            self.server,
            self.credentials,
            ca_pem=self.ca_pem,
            insecure=self.insecure,
            proxies=self.proxies,
            timeout=self.timeout,
            user_agent=self.user_agent,
        )
        self._share_learnt(other)
        return other

    def _share_learnt(self, other: RegistryClient) -> None:
        """Hand ``other`` the tokens, Basic header and HTTP-or-HTTPS this client learnt."""
        other.proxies = self.proxies
        other.scheme, other._may_fall_back = self.scheme, self._may_fall_back
        other._basic = self._basic
        other._tokens = dict(self._tokens)

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transport

    def _context(self, verify: bool) -> ssl.SSLContext:
        """The TLS context: the system's CAs and the registry's own; ``verify=False`` checks nothing."""
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
                        f"the CA certificate given for registry {self.server} is not PEM text of a certificate: {error}"
                    ) from error
            self._contexts[verify] = context
        return self._contexts[verify]

    def _proxy(self, origin: Origin) -> Proxy | None:
        try:
            return self.proxies.proxy_for(*origin)
        except ValueError as error:
            raise RegistryError(f"cannot reach registry {self.server}: {error}") from None

    def _connect(self, origin: Origin, proxy: Proxy | None) -> http.client.HTTPConnection:
        scheme, host, port = origin
        if scheme == "http":
            if proxy is not None:
                return http.client.HTTPConnection(proxy.host, proxy.port, timeout=self.timeout, blocksize=CHUNK)
            return http.client.HTTPConnection(host, port, timeout=self.timeout, blocksize=CHUNK)
        own_host = origin[1:] == self.origin[1:]
        context = self._context(verify=not (self.insecure and own_host))
        if proxy is None:
            return http.client.HTTPSConnection(host, port, timeout=self.timeout, context=context, blocksize=CHUNK)
        conn = http.client.HTTPSConnection(
            proxy.host, proxy.port, timeout=self.timeout, context=context, blocksize=CHUNK
        )
        tunnel_headers = {"Proxy-Authorization": proxy.authorization} if proxy.authorization else None
        conn.set_tunnel(host, port, headers=tunnel_headers)
        return conn

    def _exchange(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | Body | None, start: int
    ) -> http.client.HTTPResponse:
        """One request and its response's head; the registry's origin over the kept connection, others over one of their own."""
        origin = _origin(url)
        proxy = self._proxy(origin)
        parts = urllib.parse.urlsplit(url)
        target = parts.path or "/"
        if parts.query:
            target += f"?{parts.query}"
        send = dict(headers)
        if origin[0] == "http" and proxy is not None:
            target = urllib.parse.urlunsplit(("http", _netloc(origin), parts.path or "/", parts.query, ""))
            if proxy.authorization:
                send["Proxy-Authorization"] = proxy.authorization
        kept = origin == self.origin
        if not kept:
            send["Connection"] = "close"
        for attempt in (1, 2):
            reused = kept and self._conn is not None
            if kept:
                if self._conn is None:
                    self._conn = self._connect(origin, proxy)
                conn = self._conn
            else:
                conn = self._connect(origin, proxy)
            if body is not None and not isinstance(body, bytes):
                body.seek(start)
            try:
                conn.request(method, target, body=body, headers=send)
                response = conn.getresponse()
                if not kept and conn.sock is not None:
                    # the response's reader holds the socket until it is read or closed; the connection is done
                    conn.sock.close()
                    conn.sock = None
                return response
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as error:
                conn.close()
                if kept:
                    self._conn = None
                if reused and attempt == 1:
                    continue  # a kept-alive connection the server closed meanwhile: reconnect and send again
                raise self._unreachable(origin, proxy, error) from None
            except ssl.SSLCertVerificationError as error:
                conn.close()
                if kept:
                    self._conn = None
                given = "; the registry's own CA did not verify it either" if self.ca_pem else ""
                raise RegistryCertificateError(
                    f"the TLS certificate of registry {_netloc(origin) if not kept else self.server} is not trusted: "
                    f"{error.verify_message}{given}; give the registry the CA that signed it "
                    "(a Registry's requiresCert: true and certificate: the CA's PEM text)"
                ) from None
            except ssl.SSLError as error:
                conn.close()
                if kept:
                    self._conn = None
                    if self._may_fall_back:
                        raise _FallBackToPlainHttp() from None
                raise RegistryError(
                    f"TLS with registry {_netloc(origin) if not kept else self.server} failed: {error}; "
                    "check that it speaks HTTPS (mark a plain-HTTP registry insecure)"
                ) from None
            except (OSError, http.client.HTTPException) as error:
                conn.close()
                if kept:
                    self._conn = None
                raise self._unreachable(origin, proxy, error) from None
        raise AssertionError("unreachable")

    def _unreachable(self, origin: Origin, proxy: Proxy | None, error: BaseException) -> RegistryError:
        where = self.server if origin == self.origin else f"{_netloc(origin)} (for registry {self.server})"
        if proxy is not None:
            hint = "; check the proxy's user name and password" if re.search(r"\b40[17]\b", str(error)) else ""
            return RegistryError(f"cannot reach {where} through proxy {proxy.address}: {error}{hint}")
        return RegistryError(f"cannot reach registry {where}: {error}; check the registry address and that it is up")

    def _url(self, target: str) -> str:
        """An absolute URL from a registry path, or an absolute URL kept as it is."""
        return urllib.parse.urljoin(self.base_url + "/", target)

    # ------------------------------------------------------------------ requests

    def request(
        self,
        method: str,
        target: str,
        *,
        scope: str = "",
        what: str = "",
        headers: Mapping[str, str] | None = None,
        body: bytes | Body | None = None,
        stream: bool = False,
        ok: tuple[int, ...] = (200,),
    ) -> tuple[Response, http.client.HTTPResponse | None]:
        """Send one request to ``target`` (a path of the registry or an absolute URL) and return its answer.

        Authenticates on a ``401`` (for ``scope``, e.g. ``repository:app:pull``) and
        follows redirects. A file-like ``body`` is rewound to where it started for a
        resend. With ``stream`` a response in ``ok`` is returned with its raw
        response, body unread (read it to the end before the next request). A status
        not in ``ok`` raises, naming ``what`` (``manifest app:1``):
        :class:`~fogwire.errors.RegistryAuthError` for ``401``/``403``,
        :class:`~fogwire.errors.ImageNotFoundError` for ``404``,
        :class:`~fogwire.errors.RegistryError` otherwise.
        """
        start = body.tell() if body is not None and not isinstance(body, bytes) else 0
        what = what or f"{method} {urllib.parse.urlsplit(target).path}"
        url = self._url(target)
        authenticated = False
        hops = 0
        while True:
            send = {"User-Agent": self.user_agent, **(headers or {})}
            own = _origin(url) == self.origin
            authorization = (self._tokens.get(scope) or self._basic) if own else None
            if authorization:
                send["Authorization"] = authorization
            try:
                raw = self._exchange(method, url, send, body, start)
            except _FallBackToPlainHttp:
                log.debug("registry %s does not speak TLS; using plain HTTP (insecure)", self.server)
                self.scheme, self._may_fall_back = "http", False
                url = urllib.parse.urlunsplit(("http", *urllib.parse.urlsplit(url)[1:]))
                continue
            if own:
                self._may_fall_back = False
            if raw.status in REDIRECT_STATUSES:
                location = raw.getheader("Location") or ""
                raw.read()
                hops += 1
                if not location:
                    raise RegistryError(f"registry {self.server}: {what}: a redirect ({raw.status}) without a Location")
                if hops > MAX_REDIRECTS:
                    raise RegistryError(f"registry {self.server}: {what}: more than {MAX_REDIRECTS} redirects")
                url = urllib.parse.urljoin(url, location)
                log.debug("registry %s: %s redirected to %s", self.server, what, _netloc(_origin(url)))
                if raw.status == 303 or (raw.status in (301, 302) and method == "POST"):
                    method, body = ("HEAD" if method == "HEAD" else "GET"), None
                continue
            if raw.status == 401 and own and not authenticated:
                challenges = parse_challenges(", ".join(raw.headers.get_all("WWW-Authenticate") or []))
                raw.read()
                self._authenticate(challenges, scope, what)
                authenticated = True
                url = self._url(target)
                hops = 0
                continue
            response_headers = {k.lower(): v for k, v in raw.getheaders()}
            if stream and raw.status in ok:
                return Response(raw.status, response_headers), raw
            response = Response(raw.status, response_headers, raw.read())
            if raw.status in ok:
                return response, None
            raise self._status_error(what, url, response, "Authorization" in send)

    def _status_error(self, what: str, url: str, response: Response, sent_credentials: bool) -> EngineError:
        origin = _origin(url)
        where = (
            f"registry {self.server}"
            if origin == self.origin
            else f"registry {self.server} (redirected to {_netloc(origin)})"
        )
        status = response.status
        if status == 401:
            if sent_credentials or self.credentials is not None:
                return RegistryAuthError(
                    f"{where} refused the credentials for {what}; check the registry user name and password"
                )
            return RegistryAuthError(f"{where} requires credentials for {what}; give a user name and password")
        if status == 403:
            return RegistryAuthError(f"{where} denied access to {what} (403)")
        detail = ""
        try:
            errors = json.loads(response.body).get("errors") or []
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
        except (ValueError, AttributeError):
            detail = response.body[:200].decode(errors="replace").strip()
        if status == 404:
            return ImageNotFoundError(f"{where} has no {what}{f' ({detail})' if detail else ''}")
        return RegistryError(f"{where}: {what} answered {status}{': ' + detail if detail else ''}")

    # ------------------------------------------------------------------ authentication

    def _authenticate(self, challenges: list[Challenge], scope: str, what: str) -> None:
        by_scheme = {c.scheme: c for c in challenges}
        if "bearer" in by_scheme:
            self._tokens[scope] = "Bearer " + self._fetch_token(by_scheme["bearer"], scope, what)
            return
        if "basic" in by_scheme:
            if self.credentials is None:
                raise RegistryAuthError(
                    f"registry {self.server} requires credentials for {what}; give a user name and password"
                )
            self._basic = self.credentials.basic
            return
        schemes = ", ".join(sorted(by_scheme)) or "none"
        raise RegistryAuthError(
            f"registry {self.server} asks for authentication fogwire does not speak ({schemes}) for {what}"
        )

    def _fetch_token(self, challenge: Challenge, scope: str, what: str) -> str:
        realm = challenge.params.get("realm", "")
        parts = urllib.parse.urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise RegistryAuthError(f"registry {self.server}: a Bearer challenge without a usable realm")
        query: list[tuple[str, str]] = []
        if challenge.params.get("service"):
            query.append(("service", challenge.params["service"]))
        wanted = [s for s in dict.fromkeys((scope, challenge.params.get("scope", ""))) if s]
        query.extend(("scope", s) for s in wanted)
        url = urllib.parse.urlunsplit(
            (
                parts.scheme,
                parts.netloc,
                parts.path,
                "&".join(p for p in (parts.query, urllib.parse.urlencode(query)) if p),
                "",
            )
        )
        headers = {"User-Agent": self.user_agent}
        if self.credentials is not None:
            headers["Authorization"] = self.credentials.basic
        service = _netloc(_origin(url))
        raw = self._exchange("GET", url, headers, None, 0)
        data = raw.read()
        if raw.status in (401, 403):
            raise RegistryAuthError(
                f"registry {self.server}: token service refused the credentials ({raw.status} from {service}) "
                f"for {what}; check the registry user name and password"
            )
        if raw.status != 200:
            raise RegistryError(f"registry {self.server}: the token service {service} answered {raw.status}")
        try:
            answer = json.loads(data)
            token = answer.get("token") or answer.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"registry {self.server}: the token service {service} gave no token")
        return token

    # ------------------------------------------------------------------ reading

    @staticmethod
    def scope(repository: str, push: bool = False) -> str:
        """The token scope for pulling (or pushing to) ``repository``."""
        return f"repository:{repository}:{'pull,push' if push else 'pull'}"

    @staticmethod
    def _name(repository: str, version: str) -> str:
        return f"{repository}@{version}" if version.startswith("sha256:") else f"{repository}:{version}"

    def get_manifest(self, repository: str, version: str, accept: str = MANIFEST_ACCEPT) -> tuple[bytes, str]:
        """The manifest bytes and ``Content-Type`` (no parameters) of ``repository:version`` (a tag or a digest)."""
        what = f"image {self._name(repository, version)}"
        response, raw = self.request(
            "GET",
            f"/v2/{repository}/manifests/{version}",
            scope=self.scope(repository),
            what=what,
            headers={"Accept": accept},
            stream=True,
        )
        assert raw is not None
        data = raw.read(MAX_MANIFEST_BYTES + 1)
        if len(data) > MAX_MANIFEST_BYTES:
            raw.close()
            self.close()
            raise RegistryError(f"registry {self.server}: the manifest of {what} is larger than 4 MiB")
        raw.read()
        return data, response.headers.get("content-type", "").split(";")[0].strip()

    def open_blob(self, repository: str, digest: str) -> tuple[http.client.HTTPResponse, int]:
        """A readable stream of blob ``digest`` and its size (``-1`` if unknown); read it to the end before the next request."""
        response, raw = self.request(
            "GET",
            f"/v2/{repository}/blobs/{digest}",
            scope=self.scope(repository),
            what=f"blob {digest} of {repository}",
            stream=True,
        )
        assert raw is not None
        return raw, int(response.headers.get("content-length", "-1"))

    def has_blob(self, repository: str, digest: str, *, push: bool = False) -> bool:
        """True if the registry holds blob ``digest`` in ``repository``."""
        response, _ = self.request(
            "HEAD",
            f"/v2/{repository}/blobs/{digest}",
            scope=self.scope(repository, push),
            what=f"blob {digest} of {repository}",
            ok=(200, 404),
        )
        return response.status == 200

    def manifest_digest(
        self, repository: str, version: str, *, push: bool = False, accept: str = MANIFEST_ACCEPT
    ) -> str | None:
        """The digest the registry reports for ``repository:version``, or ``None`` if absent."""
        response, _ = self.request(
            "HEAD",
            f"/v2/{repository}/manifests/{version}",
            scope=self.scope(repository, push),
            what=f"image {self._name(repository, version)}",
            headers={"Accept": accept},
            ok=(200, 404),
        )
        if response.status == 404:
            return None
        return response.headers.get("docker-content-digest") or version

    def tags(self, repository: str) -> list[str]:
        """The tags of ``repository`` (empty if it does not exist)."""
        response, _ = self.request(
            "GET",
            f"/v2/{repository}/tags/list",
            scope=self.scope(repository),
            what=f"tags of {repository}",
            ok=(200, 404),
        )
        if response.status != 200:
            return []
        return [str(t) for t in json.loads(response.body).get("tags") or []]

    # ------------------------------------------------------------------ writing

    def _location(self, response: Response, current: str) -> str:
        """The absolute URL of an upload session from a ``Location`` (relative ones resolved against ``current``)."""
        location = response.headers.get("location", "")
        if not location:
            raise RegistryError(f"registry {self.server}: an upload answer without a Location")
        return urllib.parse.urljoin(self._url(current), location)

    def start_upload(self, repository: str) -> str:
        """Open a blob upload session; return its location (an absolute URL)."""
        target = f"/v2/{repository}/blobs/uploads/"
        response, _ = self.request(
            "POST", target, scope=self.scope(repository, True), what=f"an upload to {repository}", ok=(202,)
        )
        return self._location(response, target)

    def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        """Link blob ``digest`` from repository ``source`` into ``repository`` without sending it.

        True if the registry mounted it; False if it opened an upload instead (then
        nothing was sent and the session is left to expire).
        """
        query = urllib.parse.urlencode({"mount": digest, "from": source})
        response, _ = self.request(
            "POST",
            f"/v2/{repository}/blobs/uploads/?{query}",
            scope=self.scope(repository, True),
            what=f"a mount of {digest} into {repository}",
            ok=(201, 202),
        )
        return response.status == 201

    def upload_offset(self, repository: str, location: str) -> int | None:
        """How many bytes an open upload session holds, or ``None`` if it is gone."""
        response, _ = self.request(
            "GET", location, scope=self.scope(repository, True), what=f"an upload to {repository}", ok=(204, 404)
        )
        if response.status == 404:
            return None
        match = re.match(r"^(?:bytes=)?0-(\d+)$", response.headers.get("range", ""))
        return int(match.group(1)) + 1 if match else 0

    def upload_chunks(
        self,
        repository: str,
        location: str,
        source: Body,
        offset: int,
        size: int,
        on_chunk: Callable[[str, int, int], None],
    ) -> str:
        """``PATCH`` bytes ``offset..size`` of ``source`` in chunks of :data:`UPLOAD_CHUNK`; return the new location.

        ``on_chunk(location, new_offset, sent)`` is called after each accepted chunk,
        so the caller can record where to resume.
        """
        while offset < size:
            length = min(UPLOAD_CHUNK, size - offset)
            source.seek(offset)
            response, _ = self.request(
                "PATCH",
                location,
                scope=self.scope(repository, True),
                what=f"an upload to {repository}",
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(length),
                    "Content-Range": f"{offset}-{offset + length - 1}",
                },
                body=Window(source, length),
                ok=(202,),
            )
            location = self._location(response, location) if response.headers.get("location") else location
            offset += length
            on_chunk(location, offset, length)
        return location

    def finish_upload(self, repository: str, location: str, digest: str) -> None:
        """Close an upload session: the registry checks ``digest`` and stores the blob."""
        separator = "&" if "?" in location else "?"
        self.request(
            "PUT",
            f"{location}{separator}digest={urllib.parse.quote(digest)}",
            scope=self.scope(repository, True),
            what=f"blob {digest} of {repository}",
            headers={"Content-Length": "0"},
            body=b"",
            ok=(201, 204),
        )

    def put_manifest(self, repository: str, version: str, data: bytes, media_type: str) -> None:
        """Store a manifest (or index) under a tag or its digest."""
        self.request(
            "PUT",
            f"/v2/{repository}/manifests/{version}",
            scope=self.scope(repository, True),
            what=f"image {self._name(repository, version)}",
            headers={"Content-Type": media_type},
            body=data,
            ok=(201, 204),
        )

    def delete_manifest(self, repository: str, digest: str) -> None:
        """Delete a manifest by digest (the registry must allow deletes)."""
        self.request(
            "DELETE",
            f"/v2/{repository}/manifests/{digest}",
            scope=self.scope(repository, True),
            what=f"image {repository}@{digest}",
            ok=(202, 404),
        )


class Window:
    """A file-like view of ``length`` bytes of ``source`` from its current position: one upload chunk."""

    def __init__(self, source: Body, length: int) -> None:
        self._source = source
        self._start = source.tell()
        self._left = length
        self._length = length

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes (all that is left by default), never past the window."""
        if self._left <= 0:
            return b""
        want = self._left if size is None or size < 0 else min(size, self._left)
        data = self._source.read(want)
        self._left -= len(data)
        return data

    def tell(self) -> int:
        """The position inside the window."""
        return self._length - self._left

    def seek(self, position: int, /) -> None:
        """Move to ``position`` inside the window."""
        self._source.seek(self._start + position)
        self._left = self._length - position


def iter_chunks(stream: http.client.HTTPResponse, size: int, where: str) -> Iterator[bytes]:
    """The ``size`` bytes of a streamed blob in chunks; a stream that ends early is a :class:`RegistryError`."""
    remaining = size
    while remaining > 0:
        chunk = stream.read(min(CHUNK, remaining))
        if not chunk:
            raise RegistryError(f"{where} closed the connection with {remaining} bytes of the blob left")
        remaining -= len(chunk)
        yield chunk
