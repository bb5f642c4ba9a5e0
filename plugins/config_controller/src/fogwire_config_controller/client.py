"""The controller's agent API over the standard library's ``http.client``, one call at a time.

Blocking on purpose and light (no HTTP library beyond the stdlib is loaded into
the daemon for a call every few seconds): :class:`ControllerClient.call` runs in a
worker thread (:meth:`ControllerClient.request` does that), with a timeout on
every call, so the event loop and the reconcile loop never wait on the network.

HTTPS is verified by default, against the system CAs or the ``controllerCert``
(a CA file or PEM text) for a controller behind a private CA; plain HTTP only when
the URL says ``http://``. Every error is one :class:`ControllerError` whose text
names the call and what came back (an HTML error page is summarised, never
dumped), and never holds a header, a token or a body the agent sent.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import ssl
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from fogwire.errors import SourceError

DEFAULT_TIMEOUT_S = 15.0
"""How long one call may take, connect to last byte."""
API_PATH = "/api/v3/"


class ControllerError(SourceError):
    """A controller call failed; ``status`` is the HTTP status (``None``: no answer at all)."""

    def __init__(self, message: str, status: int | None = None, name: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.name = name


class ControllerUnreachable(ControllerError):
    """No answer: refused, reset, timed out, or a TLS failure."""


class AuthRejected(ControllerError):
    """401: the controller does not accept this node's credentials (now)."""


@attrs.frozen
class Reply:
    """A successful answer: status and the JSON body (``None`` when empty)."""

    status: int
    data: Any


def api_base(url: str) -> str:
    """``url`` as the API base ending in ``/api/v3/`` (edgelet's ``controllerUrl`` already does)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SourceError(f"controllerUrl must be an http:// or https:// URL with a host, got {url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/api/v3"):
        path += "/api/v3"
    return f"{parts.scheme}://{parts.netloc}{path}/"


def tls_context(controller_cert: str | None) -> ssl.SSLContext:
    """A verifying client context: the system CAs, or ``controller_cert`` (a file path or PEM text)."""
    if not controller_cert:
        return ssl.create_default_context()
    text = controller_cert.strip()
    if text.startswith("-----BEGIN"):
        try:
            return ssl.create_default_context(cadata=text)
        except ssl.SSLError as error:
            raise SourceError(f"controllerCert holds no usable PEM certificate: {error.reason}") from None
    path = Path(text)
    try:
        return ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as error:
        raise SourceError(f"controllerCert {path}: cannot load a CA certificate from it ({error})") from None


def _summary(raw: bytes, content_type: str) -> tuple[str | None, str]:
    """(error name, message) of an error body: the controller's JSON, or a one-line summary of HTML/text."""
    text = raw.decode("utf-8", "replace")
    if "json" in content_type:
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            return (str(data["name"]) if "name" in data else None, str(data.get("message", ""))[:300])
    if "<" in text:
        inner = re.search(r"<pre>(.*?)</pre>", text, re.S) or re.search(r"<title>(.*?)</title>", text, re.S)
        line = re.sub(r"<[^>]+>|&nbsp;", " ", inner.group(1) if inner else text)
        return None, "an HTML error page: " + " ".join(line.split())[:200]
    return None, " ".join(text.split())[:200]


class ControllerClient:
    """Calls to one controller; ``authorization`` gives the header for each call (``None``: unauthenticated)."""

    def __init__(
        self,
        url: str,
        *,
        controller_cert: str | None = None,
        authorization: Callable[[], str] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.base = api_base(url)
        parts = urlsplit(self.base)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.https else 80)
        self.path = parts.path
        self.authorization = authorization
        self.timeout_s = timeout_s
        self._tls = tls_context(controller_cert) if self.https else None

    def call(self, method: str, path: str, body: Any = None, *, authenticated: bool = True) -> Reply:
        """``method {base}{path}`` with ``body`` as JSON; a :class:`ControllerError` for anything but 2xx."""
        what = f"{method} {path}"
        headers = {"Accept": "application/json", "Request-Id": str(uuidlib.uuid4())}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if authenticated and self.authorization is not None:
            headers["Authorization"] = self.authorization()
        connection: http.client.HTTPConnection
        if self.https:
            connection = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout_s, context=self._tls)
        else:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        try:
            connection.request(method, self.path + path, body=payload, headers=headers)
            response = connection.getresponse()
            raw = response.read()
            content_type = response.getheader("Content-Type") or ""
        except ssl.SSLError as error:
            raise ControllerUnreachable(
                f"{what}: TLS with the controller at {self.host}:{self.port} failed ({error.reason or error})"
            ) from None
        except TimeoutError:
            raise ControllerUnreachable(
                f"{what}: the controller did not answer within {self.timeout_s:.0f} s"
            ) from None
        except (OSError, http.client.HTTPException) as error:
            reason = getattr(error, "strerror", None) or type(error).__name__
            raise ControllerUnreachable(
                f"{what}: cannot reach the controller at {self.host}:{self.port} ({reason})"
            ) from None
        finally:
            connection.close()
        status = response.status
        if status >= 400:
            name, message = _summary(raw, content_type)
            kind = AuthRejected if status == 401 else ControllerError
            label = f"{name}: " if name else ""
            raise kind(f"{what}: the controller answered {status} ({label}{message})", status, name)
        if not raw:
            return Reply(status, None)
        try:
            return Reply(status, json.loads(raw))
        except ValueError:
            _, message = _summary(raw, content_type)
            raise ControllerError(
                f"{what}: the controller answered {status} with no JSON ({message})", status
            ) from None

    async def request(self, method: str, path: str, body: Any = None, *, authenticated: bool = True) -> Reply:
        """:meth:`call` in a worker thread."""
        return await asyncio.to_thread(self.call, method, path, body, authenticated=authenticated)
