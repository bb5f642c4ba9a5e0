"""The agent API's routing, envelope, error codes and authentication.

Every answer is edgelet's envelope: ``{"success": true, "data": ...}`` or
``{"success": false, "error": {"code", "message", "details"}}`` with one of
:data:`ERROR_STATUS`'s codes. Routes are added by the core (the admin routes) and
by plugins (the device API's microservice routes); each says who may call it:
nobody needs a token for the probes, an admin token for the tools' routes, and a
workload's own token for the microservice routes (checked by an authenticator the
plugin registers). Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

import attrs

from fogwire.api.metrics import Metrics
from fogwire.api.server import DEFAULT_BODY_LIMIT, Request, Response, Takeover

log = logging.getLogger(__name__)

ERROR_STATUS: Mapping[str, int] = {
    "INVALID_ARGUMENT": 400,
    "UNAUTHORIZED": 401,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "CONFLICT": 409,
    "PAYLOAD_TOO_LARGE": 413,
    "INTERNAL": 500,
    "NOT_IMPLEMENTED": 501,
    "UNAVAILABLE": 503,
}
"""Each error code (edgelet's, plus the transport's) and its HTTP status."""


class ApiError(Exception):
    """An error answered in the envelope: ``code`` is one of :data:`ERROR_STATUS`."""

    def __init__(self, code: str, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = dict(details or {})

    @property
    def status(self) -> int:
        """The HTTP status of :attr:`code`."""
        return ERROR_STATUS.get(self.code, 500)


Access = Literal["public", "admin", "workload"]
"""Who may call a route: anyone, a holder of the admin token, or a workload with its own token."""


@attrs.frozen
class Caller:
    """Who made a request: ``kind`` and, for a workload, its microservice name."""

    kind: Literal["anonymous", "admin", "workload"]
    microservice: str | None = None


RouteHandler = Callable[[Request, Mapping[str, str], Caller], Awaitable["Response | Takeover | Any"]]
"""``(request, path parameters, caller)`` → a :class:`Response`, a :class:`Takeover`, or data to wrap."""

WorkloadAuthenticator = Callable[[str], Awaitable[str]]
"""A bearer token → the microservice it belongs to; raises :class:`ApiError` (UNAUTHORIZED) otherwise."""


@attrs.frozen
class Route:
    """One route: ``pattern`` is a path with ``{name}`` parameters (``/v1/ms/{name}:start``)."""

    method: str
    pattern: str
    handler: RouteHandler
    access: Access
    body_limit: int = DEFAULT_BODY_LIMIT
    plain: bool = False
    """Whether the route answers over plain HTTP (only the probes and the Java agent's v2 routes do)."""
    regex: re.Pattern[str] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        parts = re.split(r"\{(\w+)\}", self.pattern)
        regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/:]+)" for i, p in enumerate(parts))
        object.__setattr__(self, "regex", re.compile(f"^{regex}$"))


def envelope(data: Any) -> Response:
    """A success answer carrying ``data``."""
    return Response(200, json.dumps({"success": True, "data": data}, default=str).encode())


def error_response(error: ApiError) -> Response:
    """The failure envelope of ``error``."""
    body = {"success": False, "error": {"code": error.code, "message": error.message, "details": error.details}}
    return Response(error.status, json.dumps(body, default=str).encode())


def json_body(request: Request) -> Any:
    """The request's JSON body; INVALID_ARGUMENT when it is not JSON."""
    if not request.body:
        return {}
    try:
        return json.loads(request.body)
    except ValueError as error:
        raise ApiError("INVALID_ARGUMENT", f"the request body is not JSON: {error}") from error


def bearer_token(request: Request) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (or a bare ``Authorization: <token>``, as ioFog's v2)."""
    value = request.headers.get("authorization", "").strip()
    if not value:
        return None
    scheme, _, rest = value.partition(" ")
    return rest.strip() if scheme.lower() == "bearer" and rest else value


class ApiApp:
    """The route table and the request pipeline: match, authenticate, run, wrap, count."""

    def __init__(self, admin_token: Callable[[], str | None], metrics: Metrics | None = None) -> None:
        self.admin_token = admin_token
        self.metrics = metrics or Metrics()
        self.routes: list[Route] = []
        self.workload_authenticator: WorkloadAuthenticator | None = None
        self.requests = self.metrics.counter(
            "fogwire_api_requests_total", "API requests by route and status code", ("route", "code")
        )

    def add(
        self,
        method: str,
        pattern: str,
        handler: RouteHandler,
        *,
        access: Access = "admin",
        body_limit: int = DEFAULT_BODY_LIMIT,
        plain: bool | None = None,
    ) -> None:
        """Add a route (a later one with the same method and pattern replaces it).

        ``plain``: answer it over plain HTTP too (default: only public routes do).
        """
        self.routes = [r for r in self.routes if (r.method, r.pattern) != (method, pattern)]
        allow_plain = access == "public" if plain is None else plain
        self.routes.append(Route(method, pattern, handler, access, body_limit, allow_plain))

    def count_refusal(self, status: int) -> None:
        """Count an answer the server gave without the app (a body too large, a head too slow)."""
        self.requests.inc(route="unmatched", code=str(status))

    def body_limit(self, method: str, path: str) -> int:
        """The body cap of the route ``method path`` matches (the default when none does)."""
        for route in self.routes:
            if route.method == method and route.regex.match(path):
                return route.body_limit
        return DEFAULT_BODY_LIMIT

    def _match(self, request: Request) -> tuple[Route, dict[str, str]]:
        allowed = []
        for route in self.routes:
            found = route.regex.match(request.path)
            if found is None:
                continue
            if route.method == request.method or (request.method == "HEAD" and route.method == "GET"):
                return route, found.groupdict()
            allowed.append(route.method)
        if allowed:
            raise ApiError(
                "METHOD_NOT_ALLOWED", f"{request.method} is not allowed on {request.path}", {"allowed": sorted(allowed)}
            )
        raise ApiError("NOT_FOUND", f"no route {request.method} {request.path}")

    async def _authenticate(self, route: Route, request: Request) -> Caller:
        if route.access == "public":
            return Caller("anonymous")
        token = bearer_token(request)
        if not token:
            raise ApiError("UNAUTHORIZED", "this route needs a bearer token (Authorization: Bearer <token>)")
        admin = self.admin_token()
        if admin and hmac.compare_digest(token.encode(), admin.encode()):
            return Caller("admin")
        if route.access == "admin":
            if self.workload_authenticator is not None and token.count(".") == 2:
                await self.workload_authenticator(token)  # a valid workload token: authenticated, not allowed
                raise ApiError("FORBIDDEN", "a workload's token may read only its own config, not this route")
            raise ApiError("UNAUTHORIZED", "the token is not valid for this agent")
        if self.workload_authenticator is None:
            raise ApiError("UNAUTHORIZED", "no workload identity is served by this agent")
        return Caller("workload", await self.workload_authenticator(token))

    async def __call__(self, request: Request) -> Response | Takeover:
        """Handle one request (what :class:`~fogwire.api.server.HttpServer` calls)."""
        started = time.monotonic()
        label = "unmatched"
        try:
            route, params = self._match(request)
            label = route.pattern
            if not request.secure and not route.plain:
                raise ApiError("FORBIDDEN", f"{route.pattern} is served over HTTPS only")
            caller = await self._authenticate(route, request)
            result = await route.handler(request, params, caller)
            if isinstance(result, Takeover):
                self.requests.inc(route=label, code="101")
                return result
            response = result if isinstance(result, Response) else envelope(result)
        except ApiError as error:
            response = error_response(error)
        except Exception as error:  # answered, logged, never the end of the server
            log.exception("API %s %s failed", request.method, request.path)
            response = error_response(ApiError("INTERNAL", f"{type(error).__name__}: {error}"))
        self.requests.inc(route=label, code=str(response.status))
        if response.stream is None and time.monotonic() - started > 5:
            log.info("API %s %s took %.1fs", request.method, request.path, time.monotonic() - started)
        return response
