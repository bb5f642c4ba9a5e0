"""``fogwire daemon | apply | plan | status | logs | delete | prune | ms``: the agent and the commands that talk to it.

While the daemon runs, the other commands talk to it through its API on the unix
socket ``<run dir>/fogwire.sock`` (:mod:`fogwire.api.client`). Without a daemon,
``apply`` and ``delete`` rewrite the file the ``file`` source watches (the daemon
acts on it when it starts), ``plan``, ``status``, ``logs`` and ``prune`` ask the
engine directly, and ``ms`` exits 10: only a running daemon keeps a stop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fogwire.cli.common import paths_from, print_json

if TYPE_CHECKING:
    from fogwire.agent import Agent
    from fogwire.api.client import ApiClient
    from fogwire.paths import Paths


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    """The flags of each agent command."""
    if name == "daemon":
        parser.add_argument(
            "--rollback-grace",
            type=float,
            default=10.0,
            metavar="SECONDS",
            help="how long a replacement must run (and stay healthy) before it is kept (default 10)",
        )
        parser.add_argument(
            "--no-api-socket", action="store_true", help="serve no API socket (the CLI then works on its own)"
        )
    elif name in ("apply", "plan"):
        parser.add_argument("-f", "--file", required=True, metavar="FILE", help="multi-document ioFog YAML")
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "apply":
            parser.add_argument("--no-wait", action="store_true", help="return before the daemon acts")
    elif name == "status":
        parser.add_argument("--json", action="store_true", help="machine-readable output")
    elif name == "logs":
        parser.add_argument("name", help="microservice name")
        parser.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
        parser.add_argument("--tail", type=int, default=None, metavar="N", help="only the last N lines")
    elif name == "delete":
        parser.add_argument("name", help="microservice to remove from the desired state")
        parser.add_argument("--json", action="store_true", help="machine-readable output")
    elif name == "prune":
        parser.add_argument("--json", action="store_true", help="machine-readable output")
    elif name == "ms":
        parser.add_argument("action", choices=("start", "stop", "restart"), help="what to do")
        parser.add_argument("name", help="the microservice")
        parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    """Dispatch to the command."""
    paths = paths_from(args)
    handler = {
        "daemon": _daemon,
        "apply": _apply,
        "plan": _plan,
        "status": _status,
        "logs": _logs,
        "delete": _delete,
        "prune": _prune,
        "ms": _ms,
    }[args.command]
    return handler(args, paths)


def _agent(paths: Paths, **kwargs: Any) -> Agent:
    from fogwire.agent import Agent
    from fogwire.config import load_agent_config

    return Agent.from_config(load_agent_config(paths.config_file), paths, **kwargs)


def _client(paths: Paths) -> ApiClient | None:
    from fogwire.api.client import ApiClient

    client = ApiClient(paths.api_socket, paths.api_token_file)
    return client if client.available() else None


TRIM_AFTER_START_S = 5.0
"""How long after start-up the daemon first hands freed C-heap pages back (start-up's imports are done by then)."""

TRIM_EVERY_S = 600.0
"""How often the daemon hands freed C-heap pages back afterwards (after a burst of work)."""


def _daemon(args: argparse.Namespace, paths: Paths) -> int:
    agent = _agent(paths, rollback_grace_s=args.rollback_grace, api_socket=not args.no_api_socket)
    _log_to_files(agent)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, agent.stop)
        reloads: set[asyncio.Task[Any]] = set()

        def reload() -> None:
            task = asyncio.create_task(_reload(agent))
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, reload)
        trimmer = asyncio.create_task(_trim_memory(agent), name="fogwire-trim")
        try:
            await agent.run()
        finally:
            trimmer.cancel()

    asyncio.run(main())
    return 0


async def _reload(agent: Agent) -> None:
    """SIGHUP: read the config again; a bad file is logged and changes nothing."""
    import logging

    from fogwire.errors import FogwireError

    try:
        await agent.reload_config()
    except FogwireError as error:
        logging.getLogger("fogwire.agent").error("config not reloaded, nothing changed:\n%s", error)


def _log_to_files(agent: Agent) -> None:
    """``logDirectory``: the daemon's own log also goes to ``fogwire.log`` there, rotated within ``logLimit``."""
    import logging
    import logging.handlers

    profile = agent.profile
    if not profile.log_directory:
        return
    directory = Path(profile.log_directory)
    directory.mkdir(parents=True, exist_ok=True)
    count = int(profile.log_file_count)
    total = int((profile.log_limit or 0.1) * 1024**3)  # default: 100 MiB in all
    handler = logging.handlers.RotatingFileHandler(
        directory / "fogwire.log", maxBytes=max(total // count, 64 * 1024), backupCount=max(count - 1, 0)
    )
    root = logging.getLogger()
    if root.handlers:
        handler.setFormatter(root.handlers[0].formatter)
    root.addHandler(handler)


async def _trim_memory(agent: Agent) -> None:
    """Return the C heap's free pages to the kernel after start-up, then now and then.

    Start-up (imports, compiling attrs/cattrs code, the first pass) frees a few MiB
    in the middle of glibc's heap that ``free`` never gives back; ``malloc_trim``
    does. Process-wide, so only ``fogwire daemon`` does it, never :class:`Agent`.
    """
    trim = _malloc_trim()
    if trim is None:
        return
    await agent.started.wait()
    await asyncio.sleep(TRIM_AFTER_START_S)
    while True:
        trim(0)
        await asyncio.sleep(TRIM_EVERY_S)


def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or ``None`` (musl, macOS, no ctypes)."""
    try:
        import ctypes

        return ctypes.CDLL(None).malloc_trim
    except (ImportError, OSError, AttributeError):
        return None


def _read_documents(name: str) -> tuple[list[Any], str]:
    from fogwire.builtin.file_source import load_documents
    from fogwire.errors import ConfigError, Problem

    path = Path(name)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError([Problem(name, 0, "", f"cannot read: {error.strerror or error}")]) from error
    return load_documents(text, name), str(path)


def _validate(agent: Agent, documents: list[Any], origin: str) -> None:
    agent.validate(documents, origin)


def _apply(args: argparse.Namespace, paths: Paths) -> int:
    documents, origin = _read_documents(args.file)
    agent = _agent(paths)
    _validate(agent, documents, origin)  # a bad file changes nothing, daemon or not
    client = _client(paths)
    if client is not None:
        if args.no_wait:
            from fogwire.agent import write_documents

            target = agent.source_file
            if target is None:
                print("fogwire apply: --no-wait needs the 'file' source", file=sys.stderr)
                return 2
            write_documents(target, documents)
            print(f"wrote {target}; the daemon picks it up")
            return 0
        result = client.request("POST", "/v1/deploy/microservices:apply", {"documents": documents, "origin": origin})
        if args.json:
            print_json(result)
        else:
            _print_pass(result)
        return 1 if any(not a["ok"] for a in result["actions"]) or result["problems"] else 0
    target = agent.source_file
    if target is None:
        print(
            "fogwire apply: no daemon is running and the config source is not 'file'; "
            "start the daemon or configure the file source",
            file=sys.stderr,
        )
        return 1
    from fogwire.agent import write_documents

    write_documents(target, documents)
    print(f"no daemon running; wrote {target} (applied when the daemon starts)")
    return 0


def _print_pass(result: dict[str, Any]) -> None:
    for action in result["actions"]:
        mark = "ok" if action["ok"] else "FAILED"
        print(
            f"{action['action']:8} {action['name']:24} {mark:7} {action['reason']}"
            + ("" if action["ok"] else f": {action['detail']}")
        )
    for name in result["unchanged"]:
        print(f"{'keep':8} {name:24} {'ok':7} unchanged")
    for name, why in result["deferred"].items():
        print(f"{'wait':8} {name:24} {'':7} {why}")
    for name, why in result["problems"].items():
        print(f"{'skip':8} {name:24} {'ERROR':7} {why}")


def _plan(args: argparse.Namespace, paths: Paths) -> int:
    documents, origin = _read_documents(args.file)
    client = _client(paths)
    if client is not None:
        result = client.request(
            "POST", "/v1/deploy/microservices:apply", {"documents": documents, "origin": origin}, {"dryRun": "true"}
        )
    else:
        agent = _agent(paths, api_socket=False)
        agent.validate(documents, origin)

        async def offline() -> dict[str, Any]:
            async with agent.session():
                return (await agent.plan(documents, origin)).as_dict()

        result = asyncio.run(offline())
    if args.json:
        print_json(result)
        return 0
    if not result["actions"] and not result["problems"]:
        print("nothing to do: the engine already matches", origin)
    for action in result["actions"]:
        print(f"{action['action']:8} {action['name']:24} {action['reason']}")
    for name in result["unchanged"]:
        print(f"{'keep':8} {name:24} unchanged")
    for name, why in result["problems"].items():
        print(f"{'skip':8} {name:24} {why}")
    for name, agent in result.get("elsewhere", {}).items():
        print(f"{'skip':8} {name:24} for agent {agent!r}, not this one")
    return 0


def _status(args: argparse.Namespace, paths: Paths) -> int:
    client = _client(paths)
    if client is not None:
        result = client.request("GET", "/v1/system/status")
        result["daemon"] = "running"
    else:
        agent = _agent(paths, api_socket=False)

        async def offline() -> dict[str, Any]:
            async with agent.session():
                return await agent.status()

        result = asyncio.run(offline())
        result["daemon"] = "not running"
    if args.json:
        print_json(result)
        return 0
    print(f"daemon: {result['daemon']}   engine: {result['engine']}   arch: {result['arch']}")
    rows = [("NAME", "DESIRED", "STATUS", "STATE", "HEALTH", "RESTARTS", "LAST ERROR")]
    for ms in result["microservices"]:
        rows.append(
            (
                ms["name"],
                "yes" if ms["desired"] else "no",
                ms["status"],
                ms["state"],
                ms["health"],
                str(ms["restarts"]),
                (ms["last_error"] or "")[:100],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:6])) + "  " + row[6])
    for name, agent in result.get("elsewhere", {}).items():
        print(f"{name}: for agent {agent!r}, not run here")
    return 0


def _logs(args: argparse.Namespace, paths: Paths) -> int:
    client = _client(paths)
    try:
        if client is not None:
            query = {"tail": args.tail, "follow": "true" if args.follow else None}
            for reply in client.stream(f"/v1/ms/{args.name}/logs", query):
                if "line" in reply:
                    out = sys.stdout if reply.get("stream") != "stderr" else sys.stderr
                    print(reply["line"], file=out, flush=True)
                elif "error" in reply:
                    print(f"fogwire logs: error: {reply['error']}", file=sys.stderr)
                    return 1
            return 0
        agent = _agent(paths, api_socket=False)

        async def offline() -> None:
            async with agent.session():
                async for line in agent.logs(args.name, tail=args.tail, follow=args.follow):
                    print(line.text, file=sys.stdout if line.stream == "stdout" else sys.stderr, flush=True)

        asyncio.run(offline())
    except BrokenPipeError:
        pass
    return 0


def _delete(args: argparse.Namespace, paths: Paths) -> int:
    client = _client(paths)
    if client is not None:
        result = client.request("DELETE", f"/v1/ms/{args.name}")
        if args.json:
            print_json(result)
        else:
            _print_pass(result)
        return 0
    from fogwire.agent import remove_microservice, write_documents
    from fogwire.builtin.file_source import load_documents

    agent = _agent(paths, api_socket=False)
    target = agent.source_file
    if target is None or not target.exists():
        print("fogwire delete: no daemon running and no desired-state file to edit", file=sys.stderr)
        return 1
    documents = load_documents(target.read_text(encoding="utf-8"), str(target))
    remaining = remove_microservice(documents, args.name)
    if remaining is None:
        print(f"fogwire delete: no microservice named {args.name!r} in {target}", file=sys.stderr)
        return 1
    agent.validate(remaining, str(target))
    write_documents(target, remaining)
    print(
        json.dumps({"removed": args.name, "file": str(target)}) if args.json else f"removed {args.name} from {target}"
    )
    return 0


def _prune(args: argparse.Namespace, paths: Paths) -> int:
    client = _client(paths)
    if client is not None:
        removed = client.request("POST", "/v1/system/prune")["removed"]
    else:
        agent = _agent(paths, api_socket=False)

        async def offline() -> list[str]:
            async with agent.session():
                return await agent.prune()

        removed = asyncio.run(offline())
    if args.json:
        print_json({"removed": removed})
    else:
        print("\n".join(f"removed {reference}" for reference in removed) or "nothing to prune")
    return 0


def _ms(args: argparse.Namespace, paths: Paths) -> int:
    from fogwire.api.client import DaemonUnavailableError

    client = _client(paths)
    if client is None:
        raise DaemonUnavailableError(
            f"fogwire ms {args.action} needs the daemon (no daemon on {paths.api_socket}); start it with 'fogwire daemon'"
        )
    result = client.request("POST", f"/v1/ms/{args.name}:{args.action}")
    if args.json:
        print_json(result)
    else:
        print(
            f"{result['name']}: {result['state']}"
            + (" (held stopped until 'fogwire ms start')" if result["held"] else "")
        )
    return 0
