"""``make demo-fleet`` keeps working: the script runs to its end and shows each step's outcome."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_fleet_demo_runs_to_its_end() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo_fleet.py")], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "provisioned as node" in out
    assert "-> hello from fogwire" in out and "-> bonjour from fogwire" in out
    assert "'RUNNING'" in out
    assert "deprovisioned: the controller at" in out and "Done" in out
