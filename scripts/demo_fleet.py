"""`make demo-fleet`: a fogwire node joins an ioFog controller, is managed through it, and leaves.

The controller is the project's stand-in (it answers the agent API as a real
ioFog Controller does; a real one needs a Node.js service and a database). The
operator's side (what `iofogctl` would do) is its Python user side; the node's
side is the real `fogwire` CLI and daemon, on the embedded containerd, with every
path under a temp dir. The busybox image is built locally and loaded into
containerd, and the microservices use registry 2 (`from_cache`), so nothing is pulled.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fogwire_config_controller.testing import StandInThread  # noqa: E402

from fogwire.engine import EngineContext  # noqa: E402
from fogwire.paths import default_paths  # noqa: E402
from fogwire.plugins import PluginHost  # noqa: E402
from harness import images  # noqa: E402

FOGWIRE = [sys.executable, "-m", "fogwire.cli"]
PORT = 18081
HTTPD = [
    "sh",
    "-c",
    "trap 'exit 0' TERM; echo \"$GREETING from fogwire\" > /www/index.html; httpd -f -p 8080 -h /www & wait",
]
WORKER = ["sh", "-c", "trap 'exit 0' TERM; while true; do echo working; sleep 2 & wait; done"]


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def fogwire(*args: str, check: bool = True) -> str:
    print("$ fogwire " + " ".join(args), flush=True)
    result = subprocess.run([*FOGWIRE, *args], capture_output=True, text=True)
    print(result.stdout.rstrip() or result.stderr.rstrip(), flush=True)
    if check and result.returncode != 0:
        raise SystemExit(f"fogwire {args[0]} failed ({result.returncode}): {result.stderr}")
    return result.stdout


def wait(check: Any, what: str, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.3)


def states() -> dict[str, str]:
    out = subprocess.run([*FOGWIRE, "status", "--json"], capture_output=True, text=True).stdout
    return {m["name"]: m["state"] for m in json.loads(out)["microservices"]} if out else {}


def load_image(work: Path) -> str:
    layout = work / "layout"
    images.build_busybox_layout(layout, "fogwire/busybox:1")
    archive = work / "busybox-oci.tar"
    images._tar_layout(layout, archive)
    shutil.rmtree(layout)
    paths = default_paths()
    paths.ensure()

    async def load() -> str:
        context = EngineContext(
            "demo-fleet", paths.state_dir / "engine", paths.run_dir, paths.log_dir, options={"embedded": True}
        )
        engine = PluginHost().engine_factory("containerd")(context)
        await engine.start()
        try:
            return str((await engine.load_image_archive(archive)).references[0])
        finally:
            await engine.close()

    return asyncio.run(load())


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="fogwire-demo-fleet."))
    for key, sub in (
        ("FOGWIRE_CONFIG", "etc/config.yaml"),
        ("FOGWIRE_STATE_DIR", "state"),
        ("FOGWIRE_LOG_DIR", "log"),
        ("FOGWIRE_RUN_DIR", "run"),
    ):
        os.environ[key] = str(work / sub)
    stand_in = StandInThread()
    controller = stand_in.controller
    daemon: subprocess.Popen[bytes] | None = None
    try:
        say(f"A stand-in ioFog Controller answers at {stand_in.url}; everything of the node lives under {work}")
        (work / "etc").mkdir(parents=True)
        config = (
            "currentProfile: default\nprofiles:\n  default:\n"
            "    containerEngine: containerd\n    engineOptions: {embedded: true}\n    agentId: demo-fleet\n"
            f"    pruningFrequency: 0\n    controllerUrl: {stand_in.url}\n"
            "    configSource: {name: controller}\n    changeFrequency: 2\n    statusFrequency: 2\n"
        )
        Path(os.environ["FOGWIRE_CONFIG"]).write_text(config)
        print(config)

        say("Building the busybox image locally and loading it into the embedded containerd (nothing is pulled)")
        image = load_image(work)
        print(f"loaded {image}")

        say("Operator: create the node and ask for a provisioning key (iofogctl create agent / get provisioning-key)")
        node = stand_in.call(controller.create_node, "edge-1")
        key = stand_in.call(controller.provisioning_key, node)
        print(f"node edge-1 = {node}, key {key} (single use, 20 minutes)")

        say("Node: provision with the key (the credentials are stored 0600 and never printed)")
        fogwire("provision", key)

        say("Node: start the daemon (fogwire daemon); it polls the controller and reports its status")
        log = (work / "daemon.log").open("wb")
        daemon = subprocess.Popen([*FOGWIRE, "daemon"], stdout=log, stderr=subprocess.STDOUT)
        wait(lambda: (work / "run" / "fogwire.sock").exists(), "the daemon")

        say(f"Operator: deploy 'hello' (httpd on port {PORT}) and 'worker' to edge-1 (iofogctl deploy)")
        env = [{"key": "GREETING", "value": "hello"}]
        ports = [{"portInternal": 8080, "portExternal": PORT, "isUdp": False}]
        hello = stand_in.call(
            controller.deploy, node, x86=image, arm=image, registry_id=2, cmd=HTTPD, env=env, portMappings=ports
        )
        worker = stand_in.call(controller.deploy, node, x86=image, arm=image, registry_id=2, cmd=WORKER)
        wait(lambda: all(states().get(n) == "running" for n in (hello, worker)), "both to run")
        fogwire("status")

        def reported() -> dict[str, str]:
            entries = stand_in.call(controller.reported, node).get("microservices", {})
            return {uuid: entry["status"] for uuid, entry in entries.items()}

        wait(
            lambda: set(reported().values()) == {"RUNNING"} and len(reported()) == 2,
            "the controller to see them RUNNING",
        )
        print("the controller's view (iofogctl get microservices):", reported())
        url = f"http://127.0.0.1:{PORT}/index.html"
        print(f"GET {url} ->", wait(lambda: _get(url), "the page"))

        say("Operator: change GREETING to 'bonjour' (the controller flags a rebuild); the node replaces hello only")
        stand_in.call(controller.update, hello, env=[{"key": "GREETING", "value": "bonjour"}])
        print(f"GET {url} ->", wait(lambda: (_get(url) or "").startswith("bonjour") and _get(url), "the new page"))

        say("Operator: delete 'worker'; the node removes it")
        stand_in.call(controller.delete, worker)
        wait(lambda: states().get(worker, "absent") == "absent", "the worker to go")
        fogwire("status")

        say(
            "Node: leave the fleet (fogwire deprovision): the controller is told, the workloads go, the credentials too"
        )
        fogwire("deprovision")
        daemon.terminate()
        daemon.wait(60)
        daemon = None
        say("Done")
        return 0
    finally:
        if daemon is not None:
            # a failed demo still takes its workloads away: left running, their host port rules would outlive them
            subprocess.run([*FOGWIRE, "deprovision"], capture_output=True, timeout=120, check=False)
            daemon.terminate()
            daemon.wait(60)
            print((work / "daemon.log").read_text()[-3000:], file=sys.stderr)
        stand_in.close()
        mounts = Path("/proc/self/mountinfo").read_text()
        if f" {work}/" not in mounts:
            shutil.rmtree(work, ignore_errors=True)


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return str(response.read().decode().strip())
    except OSError:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
