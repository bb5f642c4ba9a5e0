"""``fogwire provision KEY`` and ``fogwire deprovision``: join and leave an ioFog / PoT Controller.

``provision`` trades a provisioning key (from ``iofogctl``/``potctl`` or the ECN
Viewer) for the node's credentials and stores them 0600 under the state dir; a
running daemon whose config source is ``controller`` picks them up within a
second. ``deprovision`` tells the controller (when it answers), forgets the
credentials and the fetched state, and removes the managed workloads: through the
running daemon, or directly when none runs.

Exit codes (edgelet's): 0 ok, 1 internal or unreachable, 2 invalid input,
3 unauthorised, 4 not found.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

ARCH_TYPES = {"x86": 1, "arm": 2}
"""``--type`` → the controller's fog type (0 is ``auto``, decided here from the device)."""


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    """The flags of ``provision`` and ``deprovision``."""
    parser.add_argument(
        "--controller-url", metavar="URL", help="the controller's API (default: controllerUrl of the agent config)"
    )
    parser.add_argument(
        "--controller-cert", metavar="FILE", help="CA of a controller behind a private CA (default: controllerCert)"
    )
    if name == "provision":
        parser.add_argument("key", help="the provisioning key (8 characters, valid 20 minutes, single use)")
        parser.add_argument(
            "--type",
            choices=("auto", "x86", "arm"),
            default="auto",
            help="the fog type sent (auto: amd64 is x86, arm64 and arm/v7 are arm)",
        )
    else:
        parser.add_argument(
            "--wait", type=float, default=60.0, metavar="SECONDS", help="how long to wait for the workloads to go"
        )


def fog_type(choice: str, arch: str) -> int:
    """The fog type for ``--type`` on a device of ``arch`` (OCI names)."""
    from fogwire.resolve import image_field

    if choice != "auto":
        return ARCH_TYPES[choice]
    return ARCH_TYPES[image_field(arch)]


def _exit_code(status: int | None) -> int:
    return {400: 2, 401: 3, 403: 3, 404: 4}.get(status or 0, 1)


def run(args: argparse.Namespace) -> int:
    """Run ``provision`` or ``deprovision``."""
    from fogwire.cli.common import paths_from
    from fogwire.config import load_agent_config

    paths = paths_from(args)
    profile = load_agent_config(paths.config_file).profile
    if args.command == "provision":
        return _provision(args, paths, profile)
    return _deprovision(args, paths, profile)


def _provision(args: argparse.Namespace, paths: Any, profile: Any) -> int:
    from fogwire.resolve import ResolveError, device_arch
    from fogwire_config_controller import credentials as store
    from fogwire_config_controller.client import ControllerClient, ControllerError

    url = args.controller_url or profile.controller_url
    if not url:
        print("fogwire provision: no controller URL: pass --controller-url or set controllerUrl", file=sys.stderr)
        return 2
    try:
        kind = fog_type(args.type, device_arch(profile.arch))
    except ResolveError as error:
        print(f"fogwire provision: {error}; pass --type x86 or --type arm", file=sys.stderr)
        return 2
    cert = args.controller_cert or profile.controller_cert
    try:
        client = ControllerClient(url, controller_cert=cert)
        answer = client.call("POST", "agent/provision", {"key": args.key, "type": kind}, authenticated=False).data
        credentials = store.Credentials.from_answer(client.base, answer, kind)
    except ControllerError as error:
        print(f"fogwire provision: {error}", file=sys.stderr)
        return _exit_code(error.status)
    except Exception as error:  # a bad URL or certificate: the message says which
        print(f"fogwire provision: {error}", file=sys.stderr)
        return 2
    paths.ensure()
    store.save(paths.state_dir, credentials)
    auth = "EdDSA-signed tokens" if credentials.generation == "jwt" else "a controller token"
    print(f"provisioned as node {credentials.uuid} at {credentials.controller_url} (fog type {kind}, {auth})")
    if profile.config_source is None or profile.config_source.name != "controller":
        print(
            "note: the agent config's configSource is not 'controller'; set it for the daemon to follow this controller"
        )
    return 0


def _deprovision(args: argparse.Namespace, paths: Any, profile: Any) -> int:
    from fogwire_config_controller import credentials as store
    from fogwire_config_controller.client import ControllerClient, ControllerError
    from fogwire_config_controller.source import deprovision_locally
    from fogwire_config_controller.state import ControllerState, state_path

    credentials = store.load(paths.state_dir)
    state = ControllerState.open(state_path(paths.state_dir))
    try:
        told = "no credentials were stored"
        if credentials is not None:
            snapshot = state.snapshot()
            uuids = [
                d["metadata"]["name"]
                for d in (snapshot.documents if snapshot and snapshot.node == credentials.uuid else [])
                if isinstance(d, dict) and d.get("kind") == "Microservice"
            ]
            try:
                client = ControllerClient(
                    credentials.controller_url,
                    controller_cert=args.controller_cert or profile.controller_cert,
                    authorization=credentials.authorization,
                    timeout_s=10.0,
                )
                client.call("POST", "agent/deprovision", {"microserviceUuids": uuids})
                told = f"the controller at {credentials.controller_url} was told"
            except ControllerError as error:
                told = f"the controller could not be told ({error}); deprovisioned locally"
        deprovision_locally(paths.state_dir, state, "deprovisioned with 'fogwire deprovision'")
    finally:
        state.close()
    remaining = _remove_workloads(paths, args.wait)
    if remaining:
        print(
            f"fogwire deprovision: {told}; still running after {args.wait:.0f} s: {', '.join(remaining)}",
            file=sys.stderr,
        )
        return 1
    print(f"deprovisioned: {told}; managed workloads removed; credentials forgotten")
    return 0


def _remove_workloads(paths: Any, wait_s: float) -> list[str]:
    """Have the workloads removed (by the daemon when one runs, else here); the ones still there."""
    from fogwire.api.client import ApiClient

    client = ApiClient(paths.api_socket, paths.api_token_file)
    if client.available():
        deadline = time.monotonic() + wait_s
        while True:
            statuses = client.request("GET", "/v1/ms")["microservices"]
            left = [m["name"] for m in statuses if m["state"] != "absent"]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.5)

    from fogwire.agent import Agent
    from fogwire.config import load_agent_config
    from fogwire.model.desired import DesiredState

    agent = Agent.from_config(load_agent_config(paths.config_file), paths, api_socket=False)

    async def offline() -> list[str]:
        async with agent.session():
            running = agent.running
            await running.reconciler.run_pass(DesiredState(), changed=True)
            return [w.name for w in await running.reconciler.list_actual()]

    return asyncio.run(offline())
