"""The ``fogwire`` command as tests drive it: a subprocess with a test's own paths, and a small application."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from harness import images

SLEEP = "trap 'exit 0' TERM; echo started $NAME; sleep 3600 & wait"
"""A workload command that says it started (``started $NAME``) and then waits to be stopped."""


def app(
    test_images: images.TestImages, names: list[str], value: str = "1", application: str = "cli"
) -> list[dict[str, Any]]:
    """The harness registry and one Application of ``names``, each running :data:`SLEEP` with ``NAME=<name>-<value>``."""
    return [
        test_images.registry_document(),
        {
            "apiVersion": "iofog.org/v3",
            "kind": "Application",
            "metadata": {"name": application},
            "spec": {
                "microservices": [
                    {
                        "name": n,
                        "images": {"x86": test_images.ref_v1, "arm": test_images.ref_v1, "registry": 3},
                        "container": {
                            "commands": ["sh", "-c", SLEEP],
                            "env": [{"key": "NAME", "value": f"{n}-{value}"}],
                        },
                    }
                    for n in names
                ]
            },
        },
    ]


class Cli:
    """``fogwire ARGS`` with the config, state, run and log dirs under ``tmp``."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.flags = [
            "--config", str(tmp / "config.yaml"), "--state-dir", str(tmp / "state"),
            "--run-dir", str(tmp / "run"), "--log-dir", str(tmp / "log"),
        ]  # fmt: skip

    def __call__(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        """Run it; with ``ok`` (the default) a non-zero exit fails the test with the output."""
        proc = subprocess.run(
            [sys.executable, "-m", "fogwire.cli", *args, *self.flags], capture_output=True, text=True, timeout=120
        )
        if ok:
            assert proc.returncode == 0, f"fogwire {args}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def json(self, *args: str) -> Any:
        """Run it with ``--json`` and parse the output."""
        return json.loads(self(*args, "--json").stdout)

    def write(self, name: str, documents: list[dict[str, Any]]) -> str:
        """Write ``documents`` as multi-document YAML to ``tmp/name``; return its path."""
        path = self.tmp / name
        path.write_text(yaml.safe_dump_all(documents))
        return str(path)
