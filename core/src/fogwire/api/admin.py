"""The agent API's own routes: probes, metrics, and the admin routes tools and the CLI use.

Routes and answers follow edgelet's EdgeletAPI v1 where it has one (``/v1/system/*``,
``/v1/ms*``, ``/v1/deploy/microservices:validate|:apply``); ``DELETE /v1/ms/{name}``
and ``:apply?dryRun=true`` (a plan) are what ``fogwire delete`` and ``fogwire plan``
need. Documents are sent as the JSON ``{"documents": [...], "origin": "..."}`` or as
the multi-document YAML ``fogwire apply`` reads (``Content-Type: application/yaml``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs

import fogwire
from fogwire.api.app import ApiApp, ApiError, Caller, json_body
from fogwire.api.server import Request, Response
from fogwire.errors import ConfigError, ConflictError, FogwireError, NotFoundError, WorkloadNotFoundError

if TYPE_CHECKING:
    from fogwire.agent import Agent

DOCUMENTS_LIMIT = 16 * 1024 * 1024
"""The largest desired state accepted in one request (16 MiB)."""


def api_error(error: FogwireError) -> ApiError:
    """The envelope error for an agent error: the kind of failure decides the code."""
    if isinstance(error, ConfigError):
        return ApiError("INVALID_ARGUMENT", str(error), {"problems": [attrs.asdict(p) for p in error.problems]})
    if isinstance(error, NotFoundError | WorkloadNotFoundError):
        return ApiError("NOT_FOUND", str(error))
    if isinstance(error, ConflictError):
        return ApiError("CONFLICT", str(error))
    return ApiError("INTERNAL", str(error))


def _documents(request: Request) -> tuple[list[Any], str]:
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    origin = request.query.get("origin") or "api"
    if content_type in ("application/yaml", "application/x-yaml", "text/yaml"):
        from fogwire.builtin.file_source import load_documents

        try:
            return load_documents(request.body.decode("utf-8"), origin), origin
        except UnicodeDecodeError as error:
            raise ApiError("INVALID_ARGUMENT", f"the manifest is not UTF-8: {error}") from error
    body = json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("documents"), list):
        raise ApiError("INVALID_ARGUMENT", 'expected {"documents": [ioFog documents...], "origin": "..."}')
    return list(body["documents"]), str(body.get("origin") or origin)


def _flag(request: Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true", "yes")


class AdminRoutes:
    """Binds the admin routes to one :class:`~fogwire.agent.Agent`."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.started = time.time()

    def install(self, app: ApiApp) -> None:
        """Add every route to ``app``."""
        app.add("GET", "/health/live", self.live, access="public")
        app.add("GET", "/health/ready", self.ready, access="public")
        app.add("GET", "/metrics", self.metrics, access="public")
        app.add("GET", "/v1/system/status", self.system_status)
        app.add("GET", "/v1/system/info", self.system_info)
        app.add("GET", "/v1/system/version", self.system_version)
        app.add("POST", "/v1/system/prune", self.system_prune)
        app.add("POST", "/v1/system/reload", self.system_reload)
        app.add("GET", "/v1/ms", self.ms_list)
        app.add("GET", "/v1/ms/{name}", self.ms_inspect)
        app.add("DELETE", "/v1/ms/{name}", self.ms_delete)
        for verb in ("start", "stop", "restart"):
            app.add("POST", f"/v1/ms/{{name}}:{verb}", self.ms_control)
        for verb in ("kill", "exec"):
            app.add("POST", f"/v1/ms/{{name}}:{verb}", self.not_implemented)
        app.add("GET", "/v1/ms/{name}/logs", self.ms_logs)
        app.add("POST", "/v1/deploy/microservices:validate", self.deploy_validate, body_limit=DOCUMENTS_LIMIT)
        app.add("POST", "/v1/deploy/microservices:apply", self.deploy_apply, body_limit=DOCUMENTS_LIMIT)

    async def live(self, request: Request, params: Mapping[str, str], caller: Caller) -> Any:
        """The process answers."""
        return {"status": "live"}

    async def ready(self, request: Request, params: Mapping[str, str], caller: Caller) -> Any:
        """The agent runs and has finished a reconcile pass."""
        if not self.agent.started.is_set() or self.agent.last_pass is None:
            raise ApiError("UNAVAILABLE", "the agent is starting: no reconcile pass has finished yet")
        return {"status": "ready"}

    async def metrics(self, request: Request, params: Mapping[str, str], caller: Caller) -> Response:
        """Prometheus text exposition."""
        text = self.agent.metrics.exposition()
        return Response(200, text.encode(), content_type="text/plain; version=0.0.4; charset=utf-8")

    async def system_status(self, request: Request, params: Mapping[str, str], caller: Caller) -> Any:
        """``fogwire status``: every microservice, sink and recent event."""
        try:
            status = await self.agent.status()
        except FogwireError as error:
            raise api_error(error) from error
        status["daemon"] = {"pid": os.getpid(), "uptimeSeconds": round(time.time() - self.started, 1)}
        return status

    async def system_info(self, request: Request, params: Mapping[str, str], caller: Caller) -> Any:
        """What this agent is: engine, arch, source, sinks, services, directories."""
        agent = self.agent
        running = agent.running
        return {
            "version": fogwire.__version__,
            "engine": getattr(running.engine, "name", ""),
            "arch": agent.arch,
            "configSource": running.source.name if running.source is not None else None,
            "services": [s.name for s in running.services],
            "stateDir": str(agent.paths.state_dir),
            "runDir": str(agent.paths.run_dir),
            "pid": os.getpid(),
        }

    async def system_version(self, request: Request, params: Mapping[str, str], caller: Caller) -> Any:
        """The agent's version and the API's."""
        return {"version": fogwire.__version__, "api": "v1"}

    async def system_prune(self, request: Request, params: Mapping[str, str], caller: Caller) -> Any:
        """Remove images no microservice uses, now."""
        try:
            return {"removed": await self.agent.prune()}
        except FogwireError as error:
            raise api_error(error) from error

    async def system_reload(self, request: Request, params: Mapping[str, str], caller: Caller) -> Any:
        """Read the config file again and apply what can change live (as SIGHUP does)."""
        try:
            return await self.agent.reload_config()
        except FogwireError as error:
            raise api_error(error) from error

    async def ms_list(self, request: Request, params: Mapping[str, str], caller: Caller) -> Any:
        """Every microservice, as ``fogwire status`` lists them."""
        status = await self.agent.status()
        return {"microservices": status["microservices"]}

    async def ms_inspect(self, request: Request, params: Mapping[str, str], caller: Caller) -> Any:
        """One microservice: its status, and its desired spec when it is desired."""
        try:
            return await self.agent.inspect(params["name"])
        except FogwireError as error:
            raise api_error(error) from error

    async def ms_delete(self, request: Request, params: Mapping[str, str], caller: Caller) -> Any:
        """Remove a microservice from the desired state (``fogwire delete``)."""
        try:
            return await self.agent.delete(params["name"])
        except FogwireError as error:
            raise api_error(error) from error

    async def ms_control(self, request: Request, params: Mapping[str, str], caller: Caller) -> Any:
        """``:start``, ``:stop`` and ``:restart`` of one microservice."""
        verb = request.path.rsplit(":", 1)[1]
        agent = self.agent
        action = {
            "start": agent.start_microservice,
            "stop": agent.stop_microservice,
            "restart": agent.restart_microservice,
        }[verb]
        try:
            return await action(params["name"])
        except FogwireError as error:
            raise api_error(error) from error

    async def not_implemented(self, request: Request, params: Mapping[str, str], caller: Caller) -> Any:
        """Routes edgelet has that fogwire does not (yet)."""
        raise ApiError("NOT_IMPLEMENTED", f"{request.path.rsplit(':', 1)[1]} is not supported by fogwire")

    async def ms_logs(self, request: Request, params: Mapping[str, str], caller: Caller) -> Response:
        """The microservice's output as JSON lines ``{"stream", "line"}``; ``follow=true`` keeps streaming."""
        name = params["name"]
        tail_text = request.query.get("tail")
        try:
            tail = int(tail_text) if tail_text is not None else None
        except ValueError as error:
            raise ApiError("INVALID_ARGUMENT", f"tail must be a number of lines, not {tail_text!r}") from error
        statuses = {s.name for s in self.agent.running.reconciler.statuses(self.agent.running.desired)}
        if name not in statuses and await self.agent.running.engine.inspect(name) is None:
            raise ApiError("NOT_FOUND", f"no microservice named {name!r}")
        lines = self.agent.logs(name, tail=tail, follow=_flag(request, "follow"))

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for line in lines:
                    yield json.dumps({"stream": line.stream, "line": line.text}).encode() + b"\n"
            except FogwireError as error:
                yield json.dumps({"error": str(error)}).encode() + b"\n"
            finally:
                aclose = getattr(lines, "aclose", None)
                if aclose is not None:
                    await aclose()

        return Response(200, content_type="application/x-ndjson", stream=chunks())

    async def deploy_validate(self, request: Request, params: Mapping[str, str], caller: Caller) -> Any:
        """Check documents as ``fogwire validate`` does; nothing changes."""
        documents, origin = _documents(request)
        try:
            desired = self.agent.validate(documents, origin)
        except FogwireError as error:
            raise api_error(error) from error
        return {"valid": True, "microservices": sorted(desired.microservices)}

    async def deploy_apply(self, request: Request, params: Mapping[str, str], caller: Caller) -> Any:
        """Make documents the desired state and report the pass; ``dryRun=true`` only plans."""
        documents, origin = _documents(request)
        try:
            if _flag(request, "dryRun"):
                return (await self.agent.plan(documents, origin)).as_dict()
            return await self.agent.apply(documents, origin, wait=not _flag(request, "async"))
        except FogwireError as error:
            raise api_error(error) from error
