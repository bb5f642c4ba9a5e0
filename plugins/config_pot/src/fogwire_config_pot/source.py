"""The ``pot`` config source: router config from the ioFog/PoT local API.

Long on purpose: both generations of the local API (v1 and legacy v2) with their
auth, retry and websocket rules in one source, as the router meets them.

Two generations of the local API are spoken (``upstream-systems.md`` §1.9, §2.9):

* **EdgeletAPI v1**: ``GET /v1/microservices/config`` over HTTPS with
  ``Authorization: Bearer <token>`` (the service-account token, re-read whenever
  its file changed, checked before every request, because Edgelet rotates it), the server verified against the ``ca.crt``
  beside the token plus the system CAs; replies in the ``{success, data}``
  envelope, the config an object or a JSON string. Control socket
  ``/v1/microservices/control`` with the same header.
* **Legacy v2** (the Java agent): ``POST /v2/config/get`` with ``{"id": …}``,
  reply ``{"status": "okay", "config": "<JSON string>"}``; control socket
  ``/v2/control/socket/id/<id>``; plain HTTP unless ``SSL`` says otherwise.

On the control socket the server sends one-byte binary frames: ``0x0C`` (config
changed) is acknowledged with ``0x0B`` and turned into a
:class:`~fogwire.sources.ChangeNotice`; ``0x0F`` and anything else is ignored.
After every (re)connect a notice is yielded too, because an update may have been
signalled while the socket was down; the consumer re-fetches the whole config,
so nothing is lost. Reconnects use capped exponential backoff with jitter.

Unlike the original wrapper, a failed refresh is a :class:`SourceError` to the
caller (which keeps the last good config), never a process exit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any, Literal

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from fogwire_router.model import router_converter
from yarl import URL

from fogwire.errors import Problem, SourceError
from fogwire.payloads import JSONValue
from fogwire.sources import ChangeNotice, ConfigSnapshot, ConfigSource, SourceContext
from fogwire_config_pot.settings import FALLBACK_HOST, Settings
from fogwire_config_pot.validate import InvalidConfigError, validate_router_config

log = logging.getLogger(__name__)

Api = Literal["v1", "v2"]

SIGNAL_UPDATE = 0x0C
"""Server → client: the microservice's config changed."""
SIGNAL_RESOURCE = 0x0F
"""Server → client: a resource changed (not config); ignored, as the SDKs do."""
ACK = b"\x0b"
"""Client → server: acknowledges an update signal (else the agent resends it)."""

_INLINE_LIMIT = 32 * 1024
"""Replies up to this size are validated on the loop (well under a millisecond); larger ones in a thread."""


class LocalApiError(SourceError):
    """The local API could not be reached or refused the request.

    ``status`` is the HTTP status (``None`` when there was no reply), ``code`` the
    EdgeletAPI error code (``UNAUTHORIZED``, ``NOT_FOUND``, …) when the reply
    carried one. ``retryable`` is true for transport failures, timeouts and 5xx
    replies, false for what a retry can't fix (401, 400, a TLS verification failure).
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None, retryable: bool) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retryable = retryable


class _NoV1(LocalApiError):
    """v1's config route answered 404 without a v1 envelope: this is not an Edgelet."""


class _FallbackResolver(AbstractResolver):
    """Resolves the local API's documented host names, adding ``127.0.0.1`` last.

    The SDKs fall back to ``127.0.0.1`` when the host name does not resolve or its
    address can't be dialled. Appending the fallback address after the resolved
    ones does both in one place: aiohttp tries the addresses in order. The results
    keep the original host name, so TLS still verifies the certificate (and sends
    SNI) for the documented name, as Edgelet's certificate is issued for it.
    """

    def __init__(self, fallbacks: dict[str, str]) -> None:
        self._inner = ThreadedResolver()
        self._fallbacks = fallbacks

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve ``host``; for a host with a fallback, never fail and end with the fallback."""
        fallback = self._fallbacks.get(host)
        if fallback is None:
            return await self._inner.resolve(host, port, family)
        try:
            results = await self._inner.resolve(host, port, family)
        except OSError as error:
            log.debug("local API host %s does not resolve (%s); using %s", host, error, fallback)
            results = []
        seen = {r["host"] for r in results}
        for extra in await self._inner.resolve(fallback, port, family):
            if extra["host"] not in seen:
                results.append({**extra, "hostname": host})
        return results

    async def close(self) -> None:
        """Release the inner resolver."""
        await self._inner.close()


class LocalApiSource(ConfigSource[JSONValue]):
    """Fetches the router config from the local API and follows its control socket.

    ``degraded`` is ``None`` while all is well, else the reason of the last failure
    (a fetch error, an invalid config, the control socket being down); it is
    cleared by the next successful fetch or (re)connect.
    """

    name = "pot"

    def __init__(self, context: SourceContext) -> None:
        super().__init__(context)
        self.settings = Settings.from_context(context.options, context.environ)
        self.degraded: str | None = None
        self._api: Api | None = None if self.settings.api == "auto" else self.settings.api
        self._session: aiohttp.ClientSession | None = None
        self._ssl_cache: tuple[tuple[int, int, int] | None, ssl.SSLContext] | None = None
        self._have_config = False
        self._random = random.Random()
        self._converter = router_converter(context.converter)
        self._token_cache: tuple[tuple[int, ...], str] | None = None
        self._readers: set[asyncio.Task[None]] = set()
        self._closed = False
        platform = context.environ.get("SKUPPER_PLATFORM", "")
        if platform == "kubernetes":
            log.warning("SKUPPER_PLATFORM=kubernetes but the pot config source was selected; using the local API")
        if self.settings.api == "v1":
            self._read_token()  # fail at start-up, naming the file, not at the first refresh

    def is_closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._closed

    @property
    def api(self) -> Api | None:
        """The local API generation in use (``None`` until auto-detection has run)."""
        return self._api

    # -- plumbing ----------------------------------------------------------

    async def _token(self) -> str:
        """The current token: re-read whenever the file changed (Edgelet rotates it), else the one read last."""
        try:
            st = os.stat(self.settings.token_path)
            identity: tuple[int, ...] | None = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        except OSError:
            identity = None
        if identity is not None and self._token_cache is not None and self._token_cache[0] == identity:
            return self._token_cache[1]
        token = await asyncio.to_thread(self._read_token)
        self._token_cache = (identity, token) if identity is not None else None
        return token

    def _read_token(self) -> str:
        path = self.settings.token_path
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise LocalApiError(
                f"cannot read the EdgeletAPI service-account token {path}: {error.strerror or error}; "
                "Edgelet mounts it at start (set the 'token_path' option or EDGELET_TOKEN_PATH if it lives elsewhere)",
                retryable=False,
            ) from None
        if not token:
            raise LocalApiError(f"the EdgeletAPI service-account token file {path} is empty", retryable=False)
        return token

    def _ssl_context(self) -> ssl.SSLContext:
        """System CAs plus ``ca.crt``; rebuilt when ``ca.crt`` changes on disk."""
        path = self.settings.ca_path
        try:
            st = os.stat(path)
            key: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            key = None
        if self._ssl_cache is not None and self._ssl_cache[0] == key:
            return self._ssl_cache[1]
        context = ssl.create_default_context()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if key is not None:
            try:
                context.load_verify_locations(cafile=str(path))
            except (OSError, ssl.SSLError) as error:
                raise LocalApiError(f"cannot load the local API CA {path}: {error}", retryable=False) from None
        else:
            log.debug("no local API CA at %s; verifying against the system CAs only", path)
        self._ssl_cache = (key, context)
        return context

    def _session_get(self) -> aiohttp.ClientSession:
        if self._closed:
            raise LocalApiError("the pot config source is closed", retryable=False)
        if self._session is None or self._session.closed:
            fallbacks: dict[str, str] = {}
            apis: tuple[Api, ...] = ("v1", "v2")
            for api in apis:
                host, fallback = self.settings.host_for(api)
                if fallback:
                    fallbacks[host] = fallback
            connector = aiohttp.TCPConnector(resolver=_FallbackResolver(fallbacks), use_dns_cache=False)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def _url(self, api: Api, path: str, *, websocket: bool = False) -> URL:
        secure = self.settings.ssl_for(api)
        scheme = ("wss" if secure else "ws") if websocket else ("https" if secure else "http")
        host, _ = self.settings.host_for(api)
        return URL.build(scheme=scheme, host=host, port=self.settings.port, path=path)

    def _tls(self, api: Api) -> ssl.SSLContext | bool:
        return self._ssl_context() if self.settings.ssl_for(api) else True

    async def _request(self, method: str, url: URL, api: Api, **kwargs: Any) -> tuple[int, bytes]:
        """One HTTP exchange; transport failures become :class:`LocalApiError`."""
        session = self._session_get()
        timeout = aiohttp.ClientTimeout(total=self.settings.request_timeout)
        try:
            async with session.request(method, url, ssl=self._tls(api), timeout=timeout, **kwargs) as response:
                return response.status, await response.read()
        except TimeoutError:
            raise LocalApiError(
                f"no reply from the local API {url} within {self.settings.request_timeout:g}s", retryable=True
            ) from None
        except aiohttp.ClientConnectorCertificateError as error:
            raise LocalApiError(
                f"TLS verification of the local API {url} failed ({error.certificate_error}): its certificate "
                f"must be signed by the CA in {self.settings.ca_path} or a system CA",
                retryable=False,
            ) from None
        except aiohttp.ClientSSLError as error:
            raise LocalApiError(f"TLS with the local API {url} failed: {error}", retryable=False) from None
        except aiohttp.ClientConnectorError as error:
            reason = error.os_error.strerror or str(error.os_error)
            raise LocalApiError(f"cannot connect to the local API {url}: {reason}", retryable=True) from None
        except aiohttp.ClientError as error:
            raise LocalApiError(
                f"the local API {url} failed: {type(error).__name__}: {error}", retryable=True
            ) from None

    # -- the two protocols -------------------------------------------------

    async def _fetch_v1(self) -> ConfigSnapshot[JSONValue]:
        url = self._url("v1", "/v1/microservices/config")
        token = await self._token()
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        status, raw = await self._request("GET", url, "v1", headers=headers)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        is_envelope = isinstance(body, dict) and "success" in body
        if status == 404 and not is_envelope:
            raise _NoV1(f"{url} answered 404 without an EdgeletAPI envelope", status=404, retryable=False)
        if not is_envelope:
            raise LocalApiError(
                f"the local API {url} answered HTTP {status} without an EdgeletAPI envelope: {_snippet(raw)}",
                status=status,
                retryable=status >= 500,
            )
        assert isinstance(body, dict)
        if body.get("success") is not True or status >= 400:
            raw_error = body.get("error")
            error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
            code = str(error.get("code") or "UNKNOWN")
            message = str(error.get("message") or "no message")
            hint = ""
            if status == 401 or code == "UNAUTHORIZED":
                self._token_cache = None  # read the file afresh next time, whatever its timestamps say
                hint = f"; check the service-account token {self.settings.token_path} (expired, or not yet rotated?)"
            raise LocalApiError(
                f"the local API {url} refused: HTTP {status} {code}: {message}{hint}",
                status=status,
                code=code,
                retryable=status >= 500 or status == 429,
            )
        data = body.get("data")
        if not isinstance(data, dict) or "config" not in data:
            raise InvalidConfigError(str(url), [Problem(str(url), 1, "data.config", "missing from the reply")])
        return await self._snapshot_of(str(url), data["config"], "data.config", len(raw))

    async def _fetch_v2(self) -> ConfigSnapshot[JSONValue]:
        url = self._url("v2", "/v2/config/get")
        payload = json.dumps({"id": self.settings.identity}).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        status, raw = await self._request("POST", url, "v2", data=payload, headers=headers)
        if status == 400:
            raise LocalApiError(
                f"the local API {url} does not know microservice id {self.settings.identity!r} "
                f"(from {self.settings.identity_source}): HTTP 400: {_snippet(raw)}",
                status=400,
                retryable=False,
            )
        if status != 200:
            raise LocalApiError(
                f"the local API {url} answered HTTP {status}: {_snippet(raw)}", status=status, retryable=status >= 500
            )
        try:
            body = json.loads(raw)
        except ValueError:
            raise LocalApiError(
                f"the local API {url} replied with invalid JSON: {_snippet(raw)}", retryable=True
            ) from None
        if not isinstance(body, dict) or "config" not in body:
            raise InvalidConfigError(str(url), [Problem(str(url), 1, "config", "missing from the reply")])
        if body.get("status") != "okay":
            log.warning("local API %s replied with status %r (expected 'okay')", url, body.get("status"))
        return await self._snapshot_of(str(url), body["config"], "config", len(raw))

    async def _snapshot_of(self, origin: str, config: Any, where: str, size: int) -> ConfigSnapshot[JSONValue]:
        """Parse and validate; a large config in a thread, so the loop (and the control socket) never stalls."""
        if size > _INLINE_LIMIT:
            return await asyncio.to_thread(self._snapshot, origin, config, where)
        return self._snapshot(origin, config, where)

    def _snapshot(self, origin: str, config: Any, where: str) -> ConfigSnapshot[JSONValue]:
        if isinstance(config, str):
            try:
                config = json.loads(config)
            except ValueError as error:
                raise InvalidConfigError(origin, [Problem(origin, 1, where, f"not valid JSON: {error}")]) from None
        return ConfigSnapshot.of(origin, validate_router_config(config, origin, self._converter))

    async def _fetch_once(self) -> ConfigSnapshot[JSONValue]:
        if self._api == "v1":
            return await self._fetch_v1()
        if self._api == "v2":
            return await self._fetch_v2()
        # auto: an Edgelet mounts a service-account token; the legacy agent does not.
        if not self.settings.token_path.exists():
            log.info("no service-account token at %s: using the legacy v2 local API", self.settings.token_path)
            snapshot = await self._fetch_v2()
            self._api = "v2"
            return snapshot
        try:
            snapshot = await self._fetch_v1()
            self._api = "v1"
            return snapshot
        except _NoV1:
            log.info("the local API has no EdgeletAPI v1 routes: using the legacy v2 API")
            snapshot = await self._fetch_v2()
            self._api = "v2"
            return snapshot
        except LocalApiError as v1_error:
            if not v1_error.retryable or v1_error.status is not None:
                raise
            try:
                snapshot = await self._fetch_v2()
            except LocalApiError as v2_error:
                raise LocalApiError(
                    f"no local API answered: EdgeletAPI v1: {v1_error}; legacy v2: {v2_error}",
                    retryable=v2_error.retryable,
                ) from None
            log.info("EdgeletAPI v1 unreachable (%s); the legacy v2 API answered", v1_error)
            self._api = "v2"
            return snapshot

    # -- the contract -------------------------------------------------------

    async def fetch(self) -> ConfigSnapshot[JSONValue]:
        """Fetch and validate the whole config.

        Transient failures (transport, timeout, 5xx) are retried ``attempts``
        times, ``retry_delay`` apart (doubling). Until the first config has been
        fetched, they are retried with backoff for up to ``startup_timeout``
        seconds, logging what is awaited. Raises :class:`LocalApiError` or
        :class:`InvalidConfigError` (both :class:`SourceError`).
        """
        loop = asyncio.get_running_loop()
        starting = not self._have_config
        deadline = loop.time() + self.settings.startup_timeout
        attempt = 0
        while True:
            try:
                snapshot = await self._fetch_once()
            except InvalidConfigError as error:
                self.degraded = str(error)
                raise
            except LocalApiError as error:
                self.degraded = str(error)
                attempt += 1
                if not error.retryable:
                    raise
                if starting:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        raise LocalApiError(
                            f"gave up after {self.settings.startup_timeout:g}s waiting for the local API: {error}",
                            status=error.status,
                            code=error.code,
                            retryable=True,
                        ) from None
                    delay = min(remaining, self.settings.backoff.delay(attempt - 1, self._random.random()))
                    log.warning("waiting for the local API (%s); retrying in %.2fs", error, delay)
                else:
                    if attempt >= self.settings.attempts:
                        raise
                    delay = self.settings.retry_delay * 2 ** (attempt - 1)
                    log.warning("local API fetch failed (%s); retry %d in %.2fs", error, attempt, delay)
                await asyncio.sleep(delay)
            else:
                self._have_config = True
                self.degraded = None
                return snapshot

    async def _control_target(self) -> tuple[URL, dict[str, str], Api]:
        if self._api is None:
            await self.fetch()  # detects the API generation
        api = self._api
        assert api is not None
        if api == "v1":
            token = await self._token()
            return (
                self._url("v1", "/v1/microservices/control", websocket=True),
                {"Authorization": f"Bearer {token}"},
                api,
            )
        path = f"/v2/control/socket/id/{self.settings.identity}"
        return self._url("v2", path, websocket=True), {}, api

    async def changes(self) -> AsyncIterator[ChangeNotice]:
        """Yield a notice after update signals and after every (re)connect of the control socket.

        The control socket is read by a task of its own, so every ``0x0C`` is
        acknowledged at once even while the consumer is busy applying a config (the
        legacy agent resends an unacknowledged signal). Signals that arrive while
        the consumer is busy are coalesced into one notice: the consumer re-fetches
        the whole config anyway; and two notices are at least ``min_interval``
        apart, so a burst of signals costs a few fetches, not one each (an
        isolated signal is not delayed). The first connect yields a notice too: an update
        signalled between the consumer's first fetch and the socket opening would
        otherwise be lost.
        """
        loop = asyncio.get_running_loop()
        pending = _Pending()
        if self.is_closed():
            raise SourceError("the pot config source is closed")
        reader = asyncio.create_task(self._follow_control(pending), name="fogwire pot control socket")
        self._readers.add(reader)
        waiter: asyncio.Future[Any] | None = None
        last = -float("inf")
        try:
            while True:
                waiter = asyncio.ensure_future(pending.event.wait())
                await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if reader.done():
                    if self.is_closed():
                        return  # close() ended the reader: the iteration ends with it
                    reader.result()  # re-raise what ended the reader (it only ends on a bug)
                    raise SourceError("the control socket reader stopped")  # pragma: no cover
                gap = loop.time() - last
                if gap < self.settings.min_interval:  # a burst: let more signals coalesce into this notice
                    await asyncio.sleep(self.settings.min_interval - gap)
                last = loop.time()
                yield pending.take()
        finally:
            self._readers.discard(reader)
            if waiter is not None:
                waiter.cancel()
            reader.cancel()
            await asyncio.gather(reader, *([waiter] if waiter is not None else []), return_exceptions=True)

    async def _follow_control(self, pending: _Pending) -> None:
        """Keep the control socket open: ack signals, note notices, reconnect with backoff."""
        backoff = self.settings.backoff
        loop = asyncio.get_running_loop()
        attempt = 0
        connects = 0
        while True:
            target: URL | str = "(not yet known)"
            try:
                target, headers, api = await self._control_target()
                async with asyncio.timeout(self.settings.handshake_timeout):
                    ws = await self._session_get().ws_connect(
                        target,
                        headers=headers,
                        ssl=self._tls(api),
                        heartbeat=self.settings.heartbeat,
                        autoping=True,
                    )
            except (SourceError, aiohttp.ClientError, TimeoutError, OSError) as error:
                reason = _describe(error, self.settings.handshake_timeout)
                delay = backoff.delay(attempt, self._random.random())
                attempt += 1
                self.degraded = f"control socket {target}: {reason}"
                log.warning("control socket %s unavailable (%s); retrying in %.2fs", target, reason, delay)
                await asyncio.sleep(delay)
                continue
            connected_at = loop.time()
            signalled = False
            try:
                connects += 1
                self.degraded = None
                log.info("control socket %s connected", target)
                pending.add("control socket connected" if connects == 1 else "control socket reconnected")
                async for message in ws:
                    if message.type == aiohttp.WSMsgType.ERROR:
                        break
                    data = message.data if message.type == aiohttp.WSMsgType.BINARY else str(message.data).encode()
                    if data[:1] == bytes([SIGNAL_UPDATE]):
                        await ws.send_bytes(ACK)
                        signalled = True
                        pending.add("update signal 0x0C")
                    else:
                        log.debug("control socket: ignoring signal %s", data[:1].hex() or "(empty)")
                failed = ws.exception()
                why = f"closed by the server (code {ws.close_code})" if failed is None else f"failed: {failed}"
            except (aiohttp.ClientError, OSError) as failure:
                why = f"failed: {type(failure).__name__}: {failure}"
            finally:
                await ws.close()
            if signalled or loop.time() - connected_at >= backoff.maximum:
                attempt = 0
            delay = backoff.delay(attempt, self._random.random())
            attempt += 1
            self.degraded = f"control socket {target}: {why}"
            log.warning("control socket %s %s; reconnecting in %.2fs", target, why, delay)
            await asyncio.sleep(delay)

    async def close(self) -> None:
        """Stop every control-socket reader (their ``changes()`` iterations end) and close the HTTP session."""
        self._closed = True
        readers = list(self._readers)
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None


class _Pending:
    """Notices not yet taken by the consumer, coalesced: how many, and the latest reason."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.count = 0
        self.reason = ""

    def add(self, reason: str) -> None:
        self.count += 1
        self.reason = reason
        self.event.set()

    def take(self) -> ChangeNotice:
        count, reason = self.count, self.reason
        self.count = 0
        self.event.clear()
        return ChangeNotice(reason if count == 1 else f"{reason} ({count - 1} more coalesced)")


def _snippet(raw: bytes, limit: int = 200) -> str:
    text = raw.decode("utf-8", "replace").strip()
    return (text[:limit] + "…") if len(text) > limit else (text or "(empty body)")


def _describe(error: BaseException, handshake_timeout: float) -> str:
    if isinstance(error, TimeoutError):
        return f"no websocket handshake within {handshake_timeout:g}s"
    if isinstance(error, aiohttp.WSServerHandshakeError):
        hint = "; check the service-account token" if error.status in (401, 403) else ""
        return f"handshake refused: HTTP {error.status} {error.message}{hint}"
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        return f"TLS verification failed ({error.certificate_error})"
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"cannot connect: {error.os_error.strerror or error.os_error}"
    return f"{type(error).__name__}: {error}" if not isinstance(error, SourceError) else str(error)


__all__ = ["ACK", "FALLBACK_HOST", "SIGNAL_RESOURCE", "SIGNAL_UPDATE", "LocalApiError", "LocalApiSource"]
