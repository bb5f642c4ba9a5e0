"""A small, streaming client of the registry v2 HTTP API (distribution spec).

Only what bundles need: fetch manifests and blobs, check for blobs and manifests
(``HEAD``), upload blobs (``POST`` / ``PATCH`` / ``PUT``, resumable) and put
manifests. Authentication is HTTP basic or a bearer token obtained from the realm
the registry names in ``WWW-Authenticate``. Bodies are streamed chunk by chunk;
nothing reads a whole blob into memory. The client blocks: callers run it in a
thread (``asyncio.to_thread``).

Credentials never appear in an error message or a log line.
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

from fogwire_bundle.errors import BundleError
from fogwire_bundle.oci import ACCEPT, CHUNK

log = logging.getLogger(__name__)

UPLOAD_CHUNK = 16 << 20
"""Bytes sent per ``PATCH``; an interrupted upload resumes at a chunk boundary."""


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


@attrs.frozen
class Response:
    """Status, headers (lower-case names) and, unless streamed, the body."""

    status: int
    headers: Mapping[str, str]
    body: bytes = b""


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    return scheme.lower(), params


class RegistryClient:
    """One registry server (``host[:port]``), spoken to over https or, if ``insecure``, http."""

    def __init__(
        self, server: str, credentials: Credentials | None = None, *, insecure: bool = False, timeout: float = 120.0
    ) -> None:
        self.server = server
        self.credentials = credentials
        self.insecure = insecure
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._auth_header: str | None = None
        self._tokens: dict[str, str] = {}

    # ------------------------------------------------------------------ plumbing

    @property
    def base_url(self) -> str:
        """``http(s)://server``."""
        return f"{'http' if self.insecure else 'https'}://{self.server}"

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.insecure:
                self._conn = http.client.HTTPConnection(self.server, timeout=self.timeout, blocksize=CHUNK)
            else:
                self._conn = http.client.HTTPSConnection(
                    self.server, timeout=self.timeout, blocksize=CHUNK, context=ssl.create_default_context()
                )
        return self._conn

    def close(self) -> None:
        """Close the connection (a later request opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def clone(self) -> RegistryClient:
        """Another client of the same registry, sharing what authentication learnt, on its own connection."""
        other = RegistryClient(self.server, self.credentials, insecure=self.insecure, timeout=self.timeout)
        other._auth_header = self._auth_header
        other._tokens = dict(self._tokens)
        return other

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _path(self, url: str) -> str:
        """A registry-relative path from an absolute or relative ``Location``."""
        parsed = urllib.parse.urlsplit(url)
        if parsed.netloc and parsed.netloc != self.server:
            raise BundleError(f"registry {self.server} redirected to another server ({parsed.netloc}); not followed")
        return parsed.path + (f"?{parsed.query}" if parsed.query else "")

    def _send(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes | Body | None,
        start: int,
    ) -> http.client.HTTPResponse:
        for attempt in (1, 2):
            conn = self._connection()
            if body is not None and not isinstance(body, bytes):
                body.seek(start)
            try:
                conn.request(method, path, body=body, headers=dict(headers))
                return conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # a kept-alive connection the server closed meanwhile: reconnect and resend once
                self.close()
                if attempt == 2:
                    raise
            except OSError as error:
                self.close()
                raise BundleError(f"registry {self.server}: {method} {path.split('?')[0]} failed: {error}") from None
        raise AssertionError("unreachable")

    def request(
        self,
        method: str,
        path: str,
        *,
        scope: str = "",
        headers: Mapping[str, str] | None = None,
        body: bytes | Body | None = None,
        stream: bool = False,
        ok: tuple[int, ...] = (200,),
    ) -> tuple[Response, http.client.HTTPResponse | None]:
        """Send one request, authenticating on a 401 and retrying once.

        A body that is a file object is rewound to where it started for the retry.
        With ``stream`` the raw response is returned too and its body is left unread.
        """
        start = body.tell() if body is not None and not isinstance(body, bytes) else 0
        for attempt in (1, 2):
            all_headers = dict(headers or {})
            auth = self._tokens.get(scope) or self._auth_header
            if auth:
                all_headers["Authorization"] = auth
            try:
                raw = self._send(method, path, all_headers, body, start)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as error:
                raise BundleError(
                    f"registry {self.server}: {method} {path.split('?')[0]}: connection lost ({error})"
                ) from None
            response_headers = {k.lower(): v for k, v in raw.getheaders()}
            if raw.status == 401 and attempt == 1:
                raw.read()
                self._authenticate(response_headers.get("www-authenticate", ""), scope)
                continue
            if stream and raw.status in ok:
                return Response(raw.status, response_headers), raw
            data = raw.read()
            response = Response(raw.status, response_headers, data)
            if raw.status in ok:
                return response, None
            raise self._error(method, path, response)
        raise AssertionError("unreachable")

    def _error(self, method: str, path: str, response: Response) -> BundleError:
        what = f"registry {self.server}: {method} {path.split('?')[0]} answered {response.status}"
        if response.status == 401:
            return BundleError(f"{what}: the registry refused the credentials (check --registry-user / password file)")
        detail = ""
        try:
            errors = json.loads(response.body).get("errors") or []
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
        except (ValueError, AttributeError):
            detail = response.body[:200].decode(errors="replace").strip()
        return BundleError(f"{what}{': ' + detail if detail else ''}")

    def _authenticate(self, challenge: str, scope: str) -> None:
        scheme, params = _parse_challenge(challenge)
        if self.credentials is None and scheme != "bearer":
            raise BundleError(
                f"registry {self.server} wants credentials; give --registry-user and --registry-password-file"
            )
        if scheme == "basic":
            assert self.credentials is not None
            pair = f"{self.credentials.username}:{self.credentials.password}".encode()
            self._auth_header = "Basic " + base64.b64encode(pair).decode()
            return
        if scheme == "bearer":
            self._tokens[scope] = "Bearer " + self._fetch_token(params, scope)
            return
        raise BundleError(f"registry {self.server} asks for unsupported authentication {scheme!r}")

    def _fetch_token(self, params: Mapping[str, str], scope: str) -> str:
        realm = params.get("realm", "")
        parsed = urllib.parse.urlsplit(realm)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise BundleError(f"registry {self.server}: bearer challenge without a usable realm")
        query = {
            k: v for k, v in (("service", params.get("service", "")), ("scope", scope or params.get("scope", ""))) if v
        }
        path = parsed.path + "?" + urllib.parse.urlencode(query)
        cls = http.client.HTTPSConnection if parsed.scheme == "https" else http.client.HTTPConnection
        conn = cls(parsed.netloc, timeout=self.timeout)
        headers: dict[str, str] = {}
        if self.credentials is not None:
            pair = f"{self.credentials.username}:{self.credentials.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        try:
            conn.request("GET", path, headers=headers)
            raw = conn.getresponse()
            data = raw.read()
        except OSError as error:
            raise BundleError(f"registry {self.server}: token service {parsed.netloc} failed: {error}") from None
        finally:
            conn.close()
        if raw.status != 200:
            raise BundleError(f"registry {self.server}: token service refused the credentials ({raw.status})")
        try:
            body = json.loads(data)
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise BundleError(f"registry {self.server}: token service gave no token")
        return token

    # ------------------------------------------------------------------ reading

    @staticmethod
    def _scope(repository: str, push: bool = False) -> str:
        return f"repository:{repository}:{'pull,push' if push else 'pull'}"

    def get_manifest(self, repository: str, version: str) -> tuple[bytes, str]:
        """The manifest bytes and media type of ``repository:version`` (a tag or a digest)."""
        try:
            response, _ = self.request(
                "GET",
                f"/v2/{repository}/manifests/{version}",
                scope=self._scope(repository),
                headers={"Accept": ACCEPT},
            )
        except BundleError as error:
            if " answered 404" in str(error):
                raise BundleError(f"registry {self.server} has no image {repository}:{version}") from None
            raise
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        if len(response.body) > 4 << 20:
            raise BundleError(f"registry {self.server}: manifest {repository}:{version} is larger than 4 MiB")
        return response.body, media_type

    def open_blob(self, repository: str, digest: str) -> tuple[http.client.HTTPResponse, int]:
        """A readable stream of blob ``digest`` and its size; read it to the end before the next request."""
        response, raw = self.request(
            "GET", f"/v2/{repository}/blobs/{digest}", scope=self._scope(repository), stream=True, ok=(200, 307)
        )
        assert raw is not None
        if response.status == 307:
            raw.read()
            raise BundleError(
                f"registry {self.server}: blob {digest} is served from elsewhere (redirect); not supported"
            )
        return raw, int(response.headers.get("content-length", "-1"))

    def has_blob(self, repository: str, digest: str, *, push: bool = False) -> bool:
        """True if the registry holds blob ``digest`` in ``repository``."""
        response, _ = self.request(
            "HEAD", f"/v2/{repository}/blobs/{digest}", scope=self._scope(repository, push), ok=(200, 404)
        )
        return response.status == 200

    def manifest_digest(self, repository: str, version: str, *, push: bool = False) -> str | None:
        """The digest the registry reports for ``repository:version``, or ``None`` if absent."""
        response, _ = self.request(
            "HEAD",
            f"/v2/{repository}/manifests/{version}",
            scope=self._scope(repository, push),
            headers={"Accept": ACCEPT},
            ok=(200, 404),
        )
        if response.status == 404:
            return None
        return response.headers.get("docker-content-digest") or version

    # ------------------------------------------------------------------ writing

    def start_upload(self, repository: str) -> str:
        """Open a blob upload session; return its location (path and query)."""
        response, _ = self.request(
            "POST", f"/v2/{repository}/blobs/uploads/", scope=self._scope(repository, True), ok=(202,)
        )
        return self._path(response.headers.get("location", ""))

    def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        """Link blob ``digest`` from repository ``source`` into ``repository`` without sending it.

        True if the registry mounted it; False if it opened an upload instead (then
        nothing was sent and the session is left to expire).
        """
        query = urllib.parse.urlencode({"mount": digest, "from": source})
        response, _ = self.request(
            "POST", f"/v2/{repository}/blobs/uploads/?{query}", scope=self._scope(repository, True), ok=(201, 202)
        )
        return response.status == 201

    def upload_offset(self, repository: str, location: str) -> int | None:
        """How many bytes an open upload session holds, or ``None`` if it is gone."""
        response, _ = self.request("GET", location, scope=self._scope(repository, True), ok=(204, 404))
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
        """``PATCH`` bytes ``offset..size`` of ``source`` in chunks; return the new location.

        ``on_chunk(location, new_offset, sent)`` is called after each accepted chunk,
        so the caller can record where to resume.
        """
        while offset < size:
            length = min(UPLOAD_CHUNK, size - offset)
            source.seek(offset)
            body = _Window(source, length)
            response, _ = self.request(
                "PATCH",
                location,
                scope=self._scope(repository, True),
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(length),
                    "Content-Range": f"{offset}-{offset + length - 1}",
                },
                body=body,
                ok=(202,),
            )
            location = self._path(response.headers.get("location", location))
            offset += length
            on_chunk(location, offset, length)
        return location

    def finish_upload(self, repository: str, location: str, digest: str) -> None:
        """Close an upload session: the registry checks ``digest`` and stores the blob."""
        separator = "&" if "?" in location else "?"
        self.request(
            "PUT",
            f"{location}{separator}digest={urllib.parse.quote(digest)}",
            scope=self._scope(repository, True),
            headers={"Content-Length": "0"},
            body=b"",
            ok=(201, 204),
        )

    def put_manifest(self, repository: str, version: str, data: bytes, media_type: str) -> None:
        """Store a manifest (or index) under a tag or its digest."""
        self.request(
            "PUT",
            f"/v2/{repository}/manifests/{version}",
            scope=self._scope(repository, True),
            headers={"Content-Type": media_type},
            body=data,
            ok=(201, 204),
        )

    def delete_manifest(self, repository: str, digest: str) -> None:
        """Delete a manifest by digest (the registry must allow deletes)."""
        self.request(
            "DELETE", f"/v2/{repository}/manifests/{digest}", scope=self._scope(repository, True), ok=(202, 404)
        )

    def tags(self, repository: str) -> Iterator[str]:
        """The tags of ``repository`` (empty if it does not exist)."""
        response, _ = self.request("GET", f"/v2/{repository}/tags/list", scope=self._scope(repository), ok=(200, 404))
        if response.status == 200:
            yield from json.loads(response.body).get("tags") or []


class _Window:
    """A file-like view of ``length`` bytes of ``source`` from its current position."""

    def __init__(self, source: Body, length: int) -> None:
        self._source = source
        self._start = source.tell()
        self._left = length
        self._length = length

    def read(self, size: int = -1, /) -> bytes:
        if self._left <= 0:
            return b""
        want = self._left if size is None or size < 0 else min(size, self._left)
        data = self._source.read(want)
        self._left -= len(data)
        return data

    def tell(self) -> int:
        return self._length - self._left

    def seek(self, position: int, /) -> None:
        self._source.seek(self._start + position)
        self._left = self._length - position


def parse_server(url: str) -> tuple[str, str, bool | None]:
    """Split ``[http[s]://]host[:port][/prefix]`` into ``(server, prefix, insecure)``.

    ``insecure`` is ``True`` for ``http://``, ``False`` for ``https://`` and ``None``
    when no scheme was given.
    """
    insecure: bool | None = None
    text = url.strip()
    if text.startswith("http://"):
        insecure, text = True, text[len("http://") :]
    elif text.startswith("https://"):
        insecure, text = False, text[len("https://") :]
    server, _, prefix = text.partition("/")
    if not server:
        raise BundleError(f"registry {url!r} names no host")
    return server, prefix.strip("/"), insecure


def is_loopback(server: str) -> bool:
    """True if ``server`` (``host[:port]``) is a loopback address."""
    host = server.rsplit(":", 1)[0] if server.count(":") == 1 else server
    host = host.strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")
