"""``fogwire validate`` checks skrouterd router configs through the router's validator plugin."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MICROSERVICE = """\
apiVersion: iofog.org/v3
kind: Microservice
metadata: {name: web}
spec:
  images: {x86: 'nginx:1'}
"""
ROUTER = "- [router, {id: r1, mode: interior}]\n- [listener, {name: amqp, host: 0.0.0.0, port: 5672}]\n"


def _validate(tmp_path: Path, text: str, name: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOGWIRE_")}
    env.update(FOGWIRE_CONFIG=str(tmp_path / "config.yaml"), FOGWIRE_STATE_DIR=str(tmp_path / "state"))
    return subprocess.run(
        [sys.executable, "-m", "fogwire.cli", "validate", "-f", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_router_config_documents_are_validated_with_their_document_number(tmp_path: Path) -> None:
    good = _validate(tmp_path, MICROSERVICE + "---\n" + ROUTER, "good.yaml")
    assert good.returncode == 0, good.stderr
    bad = _validate(tmp_path, MICROSERVICE + "---\n" + ROUTER.replace("name: amqp, ", ""), "bad.yaml")
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [f"{tmp_path / 'bad.yaml'}:DOC#2: [1].listener.name: required field is missing"]
