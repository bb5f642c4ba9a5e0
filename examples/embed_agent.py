"""Run fogwire's agent inside your own asyncio program.

The program below starts an :class:`fogwire.Agent` as one task among its own,
gives it a desired state through :meth:`~fogwire.Agent.apply` (no config source:
the program is the source), reads :meth:`~fogwire.Agent.status`, and stops it;
the workload is removed first so the example leaves nothing behind.

    python examples/embed_agent.py --engine docker --url unix:///var/run/docker.sock \\
        --image docker.io/library/busybox:latest --registry remote

Every path (state, logs, socket) goes under a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
from pathlib import Path
from typing import Any

import fogwire
from fogwire.model.agent_config import Profile
from fogwire.paths import Paths


def desired_state(image: str, registry: Any, extra: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One Application with one microservice: a shell that prints a heartbeat."""
    return [
        *extra,
        {
            "apiVersion": "iofog.org/v3",
            "kind": "Application",
            "metadata": {"name": "embedded"},
            "spec": {
                "microservices": [
                    {
                        "name": "embedded-heartbeat",
                        "images": {"x86": image, "arm": image, "registry": registry},
                        "container": {
                            "commands": [
                                "sh",
                                "-c",
                                "trap 'exit 0' TERM; while true; do echo beat; sleep 1 & wait; done",
                            ]
                        },
                    }
                ]
            },
        },
    ]


async def my_own_work(stop: asyncio.Event) -> int:
    """Stands for whatever else the host program does while the agent runs."""
    ticks = 0
    while not stop.is_set():
        ticks += 1
        await asyncio.sleep(0.1)
    return ticks


async def main(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="fogwire-embed-"))
    paths = Paths(workdir / "config.yaml", workdir / "state", workdir / "log", workdir / "run")
    agent = fogwire.Agent(
        engine=args.engine,
        profile=Profile(container_engine_url=args.url, agent_id=args.agent_id),
        paths=paths,
        api_socket=False,  # the host program talks to the agent directly
    )
    extra: list[dict[str, Any]] = []
    registry: Any = args.registry
    if args.username:
        registry = 3
        extra.append(
            {
                "apiVersion": "iofog.org/v3",
                "kind": "Registry",
                "spec": {
                    "id": 3,
                    "url": args.registry,
                    "username": args.username,
                    "password": args.password,
                    "insecure": True,
                },
            }
        )
    stop_work = asyncio.Event()
    agent_task = asyncio.create_task(agent.run())
    work_task = asyncio.create_task(my_own_work(stop_work))
    await agent.started.wait()
    try:
        result = await agent.apply(desired_state(args.image, registry, extra))
        print("apply:", json.dumps([(a["action"], a["name"], a["ok"]) for a in result["actions"]]))
        status = await agent.status()
        for ms in status["microservices"]:
            print(f"status: {ms['name']} {ms['status']} {ms['state']}")
        # A followed log stream holds engine resources: close it when done (aclosing).
        async with contextlib.aclosing(agent.logs("embedded-heartbeat", tail=1, follow=True)) as lines:
            async for line in lines:
                print("log:", line.text)
                break
        result = await agent.apply([])  # leave nothing behind
        print("cleanup:", json.dumps([(a["action"], a["name"], a["ok"]) for a in result["actions"]]))
    finally:
        agent.stop()
        await agent_task
        stop_work.set()
        print("host program ticks while the agent ran:", await work_task > 0)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", default="docker")
    parser.add_argument("--url", default=None, help="containerEngineUrl (default: the engine's own default)")
    parser.add_argument("--image", required=True)
    parser.add_argument("--registry", default="remote", help="remote, local, or a registry host with --username")
    parser.add_argument("--username", default="")
    parser.add_argument("--password", default="")
    parser.add_argument("--agent-id", default="embedded-example")
    raise SystemExit(asyncio.run(main(parser.parse_args())))
