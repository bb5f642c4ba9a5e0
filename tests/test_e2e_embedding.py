"""``examples/embed_agent.py``, the embedding example from docs/embedding.md, runs as documented."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

from harness import images, services

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "embed_agent.py"


def test_embedding_example_runs(harness_images: images.TestImages) -> None:
    url = services.start_dockerd().host
    proc = subprocess.run(
        [
            sys.executable, str(EXAMPLE), "--engine", "docker", "--url", url,
            "--image", harness_images.ref_v1, "--registry", harness_images.registry,
            "--username", harness_images.username, "--password", harness_images.password,
            "--agent-id", f"t6-embed-{uuid.uuid4().hex[:6]}",
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert 'apply: [["create", "embedded-heartbeat", true]]' in lines
    assert "status: embedded-heartbeat running running" in lines
    assert "log: beat" in lines
    assert 'cleanup: [["remove", "embedded-heartbeat", true]]' in lines
    assert "host program ticks while the agent ran: True" in lines
    assert harness_images.password not in proc.stdout + proc.stderr
