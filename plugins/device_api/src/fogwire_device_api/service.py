"""The ``device-api`` agent service: the agent API over HTTPS, workload identity, microservice routes.

Options (``services: [{name: device-api, options: {...}}]``):

``port`` (54321)
    The TCP port, on 127.0.0.1 and on the workloads' bridge address.
``bridge`` (true)
    Also listen on the engine's bridge address (the gateway workloads reach the host at).
``legacyHttp`` (true)
    Also answer plain HTTP on the same port (the first byte of a connection tells
    TLS from HTTP), for the Java agent's v2 routes and the probes only: the legacy
    SDK speaks plain HTTP unless ``SSL=true``. Every other route stays HTTPS-only.
``legacyAuth`` (``address``)
    Who may read an id's config over v2: ``address`` (the workload's own token, or,
    without one as the legacy SDK sends, a request from that workload's own address
    on the engine's network), ``token`` (its token only), or ``none`` (anyone, as the
    Java agent allowed).
``ackTimeoutSeconds`` (20), ``maxSignalTries`` (10), ``pingSeconds`` (30)
    The control websockets' resend and liveness rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

from fogwire.api.app import ApiError, Caller, bearer_token, json_body
from fogwire.api.server import HttpServer, Request, Response, Takeover
from fogwire.convert import structure_options
from fogwire.engine import VolumeMount, WorkloadSpec
from fogwire.model.desired import DesiredMicroservice, DesiredState
from fogwire.paths import replace_file
from fogwire.services import AgentService, ServiceContext
from fogwire_device_api import certs
from fogwire_device_api.control import ControlSession
from fogwire_device_api.identity import MOUNT_PATH, Projector, TokenIssuer

log = logging.getLogger(__name__)

IDENTITY_VARIABLES = ("SELFNAME", "IOFOG_MICROSERVICE_UID", "EDGELET_MICROSERVICE_UID")
"""The environment variables naming a workload's microservice (the legacy identity)."""

API_HOSTS = ("iofog", "edgelet.default.svc.bridge.local")
"""The host names workloads reach the device API at."""


@attrs.frozen
class DeviceApiOptions:
    """The service's options (see the module docstring)."""

    port: int = 54321
    bridge: bool = True
    legacy_http: bool = True
    legacy_auth: Literal["address", "token", "none"] = "address"
    ack_timeout_seconds: float = 20.0
    max_signal_tries: int = 10
    ping_seconds: float = 30.0


def canonical_config(ms: DesiredMicroservice) -> str:
    """A microservice's own ``config`` as canonical JSON (what is compared to see it change)."""
    return json.dumps(ms.spec.config, sort_keys=True, separators=(",", ":"), default=str)


class DeviceApiService(AgentService):
    """Serves the device API for as long as the agent runs."""

    name = "device-api"

    def __init__(self, context: ServiceContext) -> None:
        super().__init__(context)
        self.options = structure_options(
            context.converter, context.options, DeviceApiOptions, plugin="device-api", key="services.options"
        )
        self.directory = Path(context.state_dir) / "device-api"
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.cert_files = certs.CertFiles(self.directory / "tls")  # made in start(), off the loop
        self.issuer = TokenIssuer(self.directory / "serviceaccount.key", issuer="fogwire://device-api")
        self.projector = Projector(self.directory / "serviceaccounts", self.issuer, self.cert_files.ca_cert)
        self.host_address: str | None = next(iter(self._cached_addresses()), None)
        self.configs: dict[str, str] = {}
        self.sessions: dict[str, set[ControlSession]] = {}
        self.server: HttpServer | None = None
        agent = context.agent
        agent.add_spec_amender(self.amend)
        agent.add_desired_listener(self.on_desired)
        api = agent.api
        api.workload_authenticator = self.authenticate
        api.add("GET", "/v1/microservices/config", self.v1_config, access="workload")
        api.add("GET", "/v1/microservices/control", self.v1_control, access="workload")
        api.add("POST", "/v2/config/get", self.v2_config, access="public", plain=True)
        api.add("GET", "/v2/control/socket/id/{id}", self.v2_control, access="public", plain=True)
        self._addresses: tuple[float, dict[str, str]] = (0.0, {})
        self.signals = agent.metrics.counter(
            "fogwire_device_api_config_signals_total", "config-changed signals sent to microservices' control sockets"
        )
        agent.metrics.gauge(
            "fogwire_device_api_control_sockets",
            "open control websockets",
            lambda: {(): float(sum(len(s) for s in self.sessions.values()))},
        )

    # -- the address workloads reach the host at ---------------------------------------

    @property
    def _address_file(self) -> Path:
        return self.directory / "host-address"

    def _cached_addresses(self) -> list[str]:
        try:
            text = self._address_file.read_text().strip()
        except OSError:
            return []
        return [text] if text else []

    async def start(self) -> None:
        """Learn the engine's bridge address before the first pass (so specs need no second look)."""
        address = None
        if self.options.bridge:
            try:
                address = await self.context.agent.engine.host_address()
            except Exception as error:  # the engine can't say: serve 127.0.0.1 only, say why
                log.warning("device API: the engine did not give its bridge address (%s)", error)
        if address != self.host_address:
            self.host_address = address
            await asyncio.to_thread(replace_file, self._address_file, address or "", 0o644)
            self.context.agent.respecify()
        addresses = ["127.0.0.1", *([address] if address else [])]
        self.cert_files = await asyncio.to_thread(certs.ensure, self.directory / "tls", addresses)

    # -- identity ------------------------------------------------------------------------

    def amend(self, ms: DesiredMicroservice, spec: WorkloadSpec) -> WorkloadSpec:
        """Give a workload its identity: the projected token, the identity variables and the API's host names."""
        self.projector.ensure(ms.name)
        env = {**spec.env, **{variable: ms.name for variable in IDENTITY_VARIABLES}}
        address = "127.0.0.1" if spec.host_network else self.host_address
        hosts = dict(spec.extra_hosts)
        if address:
            hosts = {**{host: address for host in API_HOSTS}, **hosts}
        mount = VolumeMount(
            source=str(self.projector.directory(ms.name)), target=MOUNT_PATH, kind="bind", read_only=True
        )
        mounts = tuple(m for m in spec.mounts if m.target != MOUNT_PATH) + (mount,)
        return attrs.evolve(spec, env=env, extra_hosts=hosts, mounts=mounts)

    async def authenticate(self, token: str) -> str:
        """The microservice a workload's token names; FORBIDDEN when it is no longer desired."""
        microservice = self.issuer.verify(token)
        if microservice not in self.context.agent.desired.microservices:
            raise ApiError("FORBIDDEN", f"microservice {microservice!r} is not desired on this agent")
        return microservice

    # -- config and its changes ----------------------------------------------------------

    def on_desired(self, desired: DesiredState) -> None:
        """Signal the control sockets of every microservice whose own config changed."""
        configs = {name: canonical_config(ms) for name, ms in desired.microservices.items()}
        changed = [name for name, config in configs.items() if self.configs.get(name, config) != config]
        gone = [name for name in self.configs if name not in configs]
        self.configs = configs
        for name in changed:
            for session in self.sessions.get(name, ()):
                session.signal()
                self.signals.inc()
        for name in gone:
            self.projector.forget(name)

    def _config(self, microservice: str) -> Any:
        ms = self.context.agent.desired.microservices.get(microservice)
        if ms is None:
            raise ApiError("NOT_FOUND", f"no microservice {microservice!r} on this agent")
        return json.loads(json.dumps(ms.spec.config, default=str))

    async def v1_config(self, request: Request, params: Mapping[str, str], caller: Caller) -> Any:
        """EdgeletAPI v1: the calling workload's own config."""
        assert caller.microservice is not None
        return {"config": self._config(caller.microservice)}

    async def v2_config(self, request: Request, params: Mapping[str, str], caller: Caller) -> Response:
        """The Java agent's ``POST /v2/config/get {"id"}`` → ``{"status": "okay", "config": "<JSON string>"}``."""
        body = json_body(request)
        microservice = body.get("id") if isinstance(body, dict) else None
        if not isinstance(microservice, str) or not microservice:
            return _legacy_error(400, "id is required")
        await self._legacy_allowed(request, microservice)
        try:
            config = self._config(microservice)
        except ApiError:
            return _legacy_error(400, f"no microservice with id {microservice}")
        answer = {"status": "okay", "config": json.dumps(config)}
        return Response(200, json.dumps(answer).encode())

    async def _legacy_allowed(self, request: Request, microservice: str) -> None:
        """Whether a v2 request may read ``microservice``'s config (see ``legacyAuth``)."""
        token = bearer_token(request)
        if token:
            if await self.authenticate(token) != microservice:
                raise ApiError("FORBIDDEN", "a workload may read only its own config")
            return
        mode = self.options.legacy_auth
        if mode == "none":
            return
        if mode == "address":
            peer = request.peer.rsplit(":", 1)[0]
            if peer and (await self._workload_addresses()).get(microservice) == peer:
                return
        raise ApiError(
            "UNAUTHORIZED",
            f"v2 answers {microservice!r}'s config only to that workload: send its token "
            f"({MOUNT_PATH}/token) or call from its own address",
        )

    async def _workload_addresses(self) -> dict[str, str]:
        fetched, addresses = self._addresses
        if time.monotonic() - fetched > 2.0:
            addresses = await self.context.agent.engine.workload_addresses()
            self._addresses = (time.monotonic(), addresses)
        return addresses

    def _takeover(self, microservice: str, request: Request) -> Takeover:
        if request.headers.get("upgrade", "").lower() != "websocket":
            raise ApiError("INVALID_ARGUMENT", "this route is a websocket: send an Upgrade: websocket request")

        async def run(
            request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, leftover: bytes
        ) -> None:
            session = ControlSession(
                microservice,
                reader,
                writer,
                ack_timeout_s=self.options.ack_timeout_seconds,
                max_tries=self.options.max_signal_tries,
                ping_s=self.options.ping_seconds,
            )
            if not await session.handshake(request.raw_head + leftover):
                return
            self.sessions.setdefault(microservice, set()).add(session)
            await session.run(on_end=lambda s: self.sessions.get(microservice, set()).discard(s))

        return Takeover(run)

    async def v1_control(self, request: Request, params: Mapping[str, str], caller: Caller) -> Takeover:
        """EdgeletAPI v1's control websocket for the calling workload."""
        assert caller.microservice is not None
        return self._takeover(caller.microservice, request)

    async def v2_control(self, request: Request, params: Mapping[str, str], caller: Caller) -> Takeover:
        """The Java agent's ``/v2/control/socket/id/<id>``."""
        microservice = params["id"]
        await self._legacy_allowed(request, microservice)
        self._config(microservice)
        return self._takeover(microservice, request)

    # -- serving -------------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_files.server_cert, self.cert_files.server_key)
        return context

    async def run(self) -> None:
        """Listen on 127.0.0.1 and the bridge address; keep the tokens fresh; until cancelled."""
        api = self.context.agent.api
        self.on_desired(self.context.agent.desired)
        server = HttpServer(api, body_limit=api.body_limit, on_refusal=api.count_refusal)
        self.server = server
        try:
            tls = self._ssl_context()
            plain = self.options.legacy_http
            await server.listen_tcp("127.0.0.1", self.options.port, tls, plain_too=plain)
            log.info("device API: https://127.0.0.1:%d", self.options.port)
            bridge_bound = not (self.options.bridge and self.host_address)
            while True:
                if not bridge_bound and self.host_address:
                    try:
                        await server.listen_tcp(self.host_address, self.options.port, tls, plain_too=plain)
                        bridge_bound = True
                        log.info(
                            "device API: https://%s:%d (the workloads' bridge)", self.host_address, self.options.port
                        )
                    except OSError as error:  # the bridge appears with the first workload on it
                        log.debug("device API: %s not bindable yet (%s)", self.host_address, error)
                for name in list(self.context.agent.desired.microservices):
                    await asyncio.to_thread(self.projector.ensure, name)
                await asyncio.sleep(5 if not bridge_bound else 60)
        finally:
            self.server = None
            await server.close()

    async def close(self) -> None:
        """Stop serving (the run task's cancellation does it; this covers a service never run)."""
        if self.server is not None:
            with contextlib.suppress(Exception):
                await self.server.close()


def _legacy_error(status: int, message: str) -> Response:
    return Response(status, json.dumps({"status": "error", "message": message}).encode())
