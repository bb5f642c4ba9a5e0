"""The ``pot`` source's settings, read from its options and its environment.

Kept apart from the client (and free of ``aiohttp``) so the start-up checks, the
precedence rules and the defaults are plain code that is easy to test and read.
Precedence for every setting: the source's option, then the environment
variable, then the default.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

from fogwire.errors import SourceError

ApiChoice = Literal["v1", "v2", "auto"]

SERVICEACCOUNT_DIR = Path("/var/run/secrets/edgelet.iofog.org/serviceaccount")
"""Where Edgelet mounts the microservice's service-account token and CA."""

V1_HOST = "edgelet.default.svc.bridge.local"
"""The EdgeletAPI v1 host name inside a microservice (falls back to ``127.0.0.1``)."""
V2_HOST = "iofog"
"""The legacy agent's host name (an extra host the agent adds; falls back to ``127.0.0.1``)."""
FALLBACK_HOST = "127.0.0.1"
DEFAULT_PORT = 54321

IDENTITY_VARIABLES = ("EDGELET_MICROSERVICE_UID", "IOFOG_MICROSERVICE_UID", "SELFNAME")
"""Where the microservice's identity is read from, newest name first."""

_TRUE = {"1", "t", "true", "yes", "y", "on"}
_FALSE = {"0", "f", "false", "no", "n", "off"}


def parse_bool(value: str, where: str) -> bool:
    """Parse a boolean the way Go's ``strconv.ParseBool`` does (plus yes/no, on/off)."""
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise SourceError(f"{where} must be true or false, got {value!r}")


def _number(value: Any, where: str, *, integer: bool = False, minimum: float = 0.0) -> float:
    try:
        number = int(value) if integer else float(value)
    except (TypeError, ValueError):
        kind = "an integer" if integer else "a number"
        raise SourceError(f"{where} must be {kind}, got {value!r}") from None
    if number < minimum:
        raise SourceError(f"{where} must be at least {minimum:g}, got {value!r}")
    return number


@attrs.frozen
class Backoff:
    """Capped exponential backoff with jitter.

    ``delay(n)`` for the n-th consecutive failure (0-based) is
    ``min(maximum, initial * 2**n)`` shrunk by a random factor in
    ``[1 - jitter, 1]``: never above the cap, and spread so a fleet of routers
    restarted together doesn't reconnect in lock-step.
    """

    initial: float = 1.0
    maximum: float = 30.0
    jitter: float = 0.2

    def ceiling(self, attempt: int) -> float:
        """The delay before jitter for the ``attempt``-th consecutive failure."""
        return float(min(self.maximum, self.initial * (2 ** min(attempt, 62))))

    def delay(self, attempt: int, uniform: float) -> float:
        """The delay to sleep; ``uniform`` is a random number in ``[0, 1)``."""
        return self.ceiling(attempt) * (1.0 - self.jitter * uniform)


@attrs.frozen
class Settings:
    """Everything the ``pot`` source needs to reach the local API.

    ``ssl`` is ``None`` when neither the ``ssl`` option nor ``SSL`` is set: each
    protocol then uses its own default (on for v1, off for legacy v2), as the two
    SDK generations did. ``host`` is ``None`` unless overridden: each protocol
    then uses its documented host with a ``127.0.0.1`` fallback.
    """

    identity: str
    identity_source: str
    api: ApiChoice = "auto"
    ssl: bool | None = None
    host: str | None = None
    port: int = DEFAULT_PORT
    token_path: Path = SERVICEACCOUNT_DIR / "token"
    ca_path: Path = SERVICEACCOUNT_DIR / "ca.crt"
    request_timeout: float = 15.0
    handshake_timeout: float = 10.0
    backoff: Backoff = Backoff()
    attempts: int = 3
    retry_delay: float = 0.5
    startup_timeout: float = 60.0
    heartbeat: float | None = None
    min_interval: float = 0.1

    def ssl_for(self, api: Literal["v1", "v2"]) -> bool:
        """Whether to use HTTPS/WSS for ``api``."""
        if self.ssl is not None:
            return self.ssl
        return api == "v1"

    def host_for(self, api: Literal["v1", "v2"]) -> tuple[str, str | None]:
        """The host to address for ``api`` and its fallback (``None`` when overridden)."""
        if self.host:
            return self.host, None
        return (V1_HOST if api == "v1" else V2_HOST), FALLBACK_HOST

    @classmethod
    def from_context(cls, options: Mapping[str, Any], environ: Mapping[str, str]) -> Settings:
        """Read options and environment; raise :class:`SourceError` naming what is wrong.

        Options: ``id``, ``api`` (v1|v2|auto), ``ssl``, ``host``, ``port``,
        ``token_path``, ``ca_path``, ``request_timeout``, ``handshake_timeout``,
        ``backoff_initial``, ``backoff_max``, ``backoff_jitter``, ``attempts``,
        ``retry_delay``, ``startup_timeout``, ``heartbeat``, ``min_interval``.
        Environment: ``EDGELET_MICROSERVICE_UID`` (or ``IOFOG_MICROSERVICE_UID``,
        ``SELFNAME``), ``SSL``, ``EDGELET_API_HOST``, ``EDGELET_API_PORT``,
        ``EDGELET_TOKEN_PATH``, ``EDGELET_CA_PATH``.
        """
        known = {
            "id",
            "api",
            "ssl",
            "host",
            "port",
            "token_path",
            "ca_path",
            "request_timeout",
            "handshake_timeout",
            "backoff_initial",
            "backoff_max",
            "backoff_jitter",
            "attempts",
            "retry_delay",
            "startup_timeout",
            "heartbeat",
            "min_interval",
        }
        unknown = sorted(set(options) - known)
        if unknown:
            raise SourceError(
                f"pot config source: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )

        identity, identity_source = "", ""
        if options.get("id"):
            identity, identity_source = str(options["id"]), "option 'id'"
        else:
            for variable in IDENTITY_VARIABLES:
                if environ.get(variable, "").strip():
                    identity, identity_source = environ[variable].strip(), variable
                    break
        if not identity:
            raise SourceError(
                "pot config source: no microservice identity: set EDGELET_MICROSERVICE_UID "
                "(or the older IOFOG_MICROSERVICE_UID / SELFNAME) or the source's 'id' option"
            )

        api = str(options.get("api", "auto")).lower()
        if api not in ("v1", "v2", "auto"):
            raise SourceError(f"pot config source: option 'api' must be v1, v2 or auto, got {options['api']!r}")

        ssl: bool | None = None
        if "ssl" in options:
            raw = options["ssl"]
            ssl = raw if isinstance(raw, bool) else parse_bool(str(raw), "pot config source option 'ssl'")
        elif environ.get("SSL", "").strip():
            ssl = parse_bool(environ["SSL"], "environment variable SSL")

        host = str(options.get("host") or environ.get("EDGELET_API_HOST", "")).strip() or None
        port_raw = options.get("port", environ.get("EDGELET_API_PORT") or DEFAULT_PORT)
        where_port = "pot config source option 'port'" if "port" in options else "EDGELET_API_PORT"
        port = int(_number(port_raw, where_port, integer=True, minimum=1))
        if port > 65535:
            raise SourceError(f"{where_port} must be a port number 1-65535, got {port_raw!r}")

        token_path = Path(
            str(options.get("token_path") or environ.get("EDGELET_TOKEN_PATH") or SERVICEACCOUNT_DIR / "token")
        )
        ca_default = token_path.parent / "ca.crt"
        ca_path = Path(str(options.get("ca_path") or environ.get("EDGELET_CA_PATH") or ca_default))

        def opt(key: str, default: float, *, integer: bool = False, minimum: float = 0.0) -> float:
            if key not in options:
                return default
            return _number(options[key], f"pot config source option {key!r}", integer=integer, minimum=minimum)

        backoff = Backoff(
            initial=opt("backoff_initial", 1.0, minimum=0.001),
            maximum=opt("backoff_max", 30.0, minimum=0.001),
            jitter=opt("backoff_jitter", 0.2),
        )
        if backoff.jitter >= 1:
            raise SourceError("pot config source option 'backoff_jitter' must be below 1")
        heartbeat_raw = options.get("heartbeat")
        heartbeat = None if heartbeat_raw in (None, 0, "0") else opt("heartbeat", 0.0, minimum=0.1)
        return cls(
            identity=identity,
            identity_source=identity_source,
            api=api,  # type: ignore[arg-type]
            ssl=ssl,
            host=host,
            port=port,
            token_path=token_path,
            ca_path=ca_path,
            request_timeout=opt("request_timeout", 15.0, minimum=0.001),
            handshake_timeout=opt("handshake_timeout", 10.0, minimum=0.001),
            backoff=backoff,
            attempts=int(opt("attempts", 3, integer=True, minimum=1)),
            retry_delay=opt("retry_delay", 0.5),
            startup_timeout=opt("startup_timeout", 60.0),
            heartbeat=heartbeat,
            min_interval=opt("min_interval", 0.1),
        )
