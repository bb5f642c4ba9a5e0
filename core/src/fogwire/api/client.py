"""The CLI's side of the agent API: HTTP over the daemon's unix socket (stdlib ``http.client``).

As the docker and podman CLIs do, every command that needs the daemon talks to it
here; the admin token is read from :attr:`~fogwire.paths.Paths.api_token_file`.
Failures carry the envelope's error code, and :data:`EXIT_CODES` turns it into
the command's exit status.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fogwire.errors import ConfigError, FogwireError, Problem

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_INVALID = 2
EXIT_UNAUTHORISED = 3
EXIT_NOT_FOUND = 4
EXIT_CONFLICT = 5
EXIT_NO_DAEMON = 10

EXIT_CODES: Mapping[str, int] = {
    "INVALID_ARGUMENT": EXIT_INVALID,
    "PAYLOAD_TOO_LARGE": EXIT_INVALID,
    "METHOD_NOT_ALLOWED": EXIT_INVALID,
    "UNAUTHORIZED": EXIT_UNAUTHORISED,
    "FORBIDDEN": EXIT_UNAUTHORISED,
    "NOT_FOUND": EXIT_NOT_FOUND,
    "CONFLICT": EXIT_CONFLICT,
}
"""Each API error code's exit status; any other code is :data:`EXIT_INTERNAL`."""


class DaemonUnavailableError(FogwireError):
    """No daemon answers on the API socket (exit status 10)."""

    exit_code = EXIT_NO_DAEMON


class ApiCallError(FogwireError):
    """The daemon answered with an error envelope."""

    def __init__(self, code: str, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = dict(details or {})

    @property
    def exit_code(self) -> int:
        """The exit status a command ends with for this error."""
        return EXIT_CODES.get(self.code, EXIT_INTERNAL)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.socket_path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


class ApiClient:
    """Requests to the daemon's API on ``socket_path``, authenticated with the token in ``token_file``."""

    def __init__(self, socket_path: Path, token_file: Path, timeout: float = 600.0) -> None:
        self.socket_path = socket_path
        self.token_file = token_file
        self.timeout = timeout

    def available(self) -> bool:
        """True when a daemon accepts connections on the socket."""
        from fogwire.api.server import socket_alive

        return self.socket_path.exists() and socket_alive(self.socket_path)

    def _token(self) -> str:
        try:
            return self.token_file.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ApiCallError(
                "UNAUTHORIZED",
                f"cannot read the API token {self.token_file} ({error.strerror or error}); "
                "run as the daemon's user (root for the system daemon)",
            ) from error

    def _send(
        self, method: str, path: str, body: Any = None, query: Mapping[str, Any] | None = None
    ) -> tuple[_UnixConnection, http.client.HTTPResponse]:
        target = quote(path, safe="/:")
        if query:
            target += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        headers = {"Authorization": f"Bearer {self._token()}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body, default=str).encode()
            headers["Content-Type"] = "application/json"
        connection = _UnixConnection(self.socket_path, self.timeout)
        try:
            connection.request(method, target, body=data, headers=headers)
            return connection, connection.getresponse()
        except (FileNotFoundError, ConnectionRefusedError) as error:
            connection.close()
            raise DaemonUnavailableError(
                f"no fogwire daemon on {self.socket_path} ({error.strerror or error}); start it with 'fogwire daemon'"
            ) from error
        except OSError:
            connection.close()
            raise

    def request(self, method: str, path: str, body: Any = None, query: Mapping[str, Any] | None = None) -> Any:
        """One request; the envelope's ``data``, or :class:`ApiCallError` (:class:`ConfigError` for bad documents)."""
        connection, response = self._send(method, path, body, query)
        try:
            raw = response.read()
        finally:
            connection.close()
        try:
            reply = json.loads(raw)
        except ValueError as error:
            raise ApiCallError("INTERNAL", f"the daemon answered {response.status} with no JSON") from error
        if reply.get("success"):
            return reply.get("data")
        raise _error_of(reply)

    def stream(self, path: str, query: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """A streamed route's JSON lines, as they arrive."""
        connection, response = self._send("GET", path, None, query)
        try:
            if response.status != 200:
                try:
                    reply = json.loads(response.read())
                except ValueError:
                    reply = {}
                raise _error_of(reply)
            while True:
                line = response.readline()
                if not line:
                    return
                yield json.loads(line)
        finally:
            connection.close()


def _error_of(reply: Mapping[str, Any]) -> FogwireError:
    error = reply.get("error") or {}
    code = str(error.get("code") or "INTERNAL")
    message = str(error.get("message") or "the daemon answered without an error message")
    details = error.get("details") or {}
    problems = details.get("problems") if isinstance(details, dict) else None
    if code == "INVALID_ARGUMENT" and problems:
        return ConfigError([Problem(**p) for p in problems])
    return ApiCallError(code, message, details)
