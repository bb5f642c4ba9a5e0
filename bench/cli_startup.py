"""Benchmark: how long the ``fogwire`` command takes to start.

Median wall time over N fresh processes of ``fogwire --help`` and
``fogwire plugins --json``, against ``python -c pass`` measured in the same run.
Goal: ``fogwire --help`` under 120 ms and under 4x the bare interpreter.

Usage: python bench/cli_startup.py [--runs 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def median_ms(command: list[str], runs: int) -> float:
    """Median wall time in ms of ``runs`` fresh runs of ``command`` (after one warm-up run)."""
    subprocess.run(command, check=True, capture_output=True)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def fogwire_command() -> list[str]:
    """The console script next to this interpreter, else ``python -m fogwire.cli``."""
    script = Path(sys.executable).with_name("fogwire")
    if script.exists():
        return [str(script)]
    found = shutil.which("fogwire")
    return [found] if found else [sys.executable, "-m", "fogwire.cli"]


def main() -> int:
    """Run the benchmark and print a table (and a JSON line with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args()
    fogwire = fogwire_command()
    python_ms = median_ms([sys.executable, "-c", "pass"], args.runs)
    help_ms = median_ms([*fogwire, "--help"], args.runs)
    plugins_ms = median_ms([*fogwire, "plugins", "--json"], args.runs)
    result = {
        "runs": args.runs,
        "python_ms": round(python_ms, 1),
        "help_ms": round(help_ms, 1),
        "plugins_json_ms": round(plugins_ms, 1),
        "ratio": round(help_ms / python_ms, 2),
        "plugins_ratio": round(plugins_ms / python_ms, 2),
        "goal_help_ms": 120,
        "goal_ratio": 4.0,
    }
    print(f"{'command':<28}{'median ms':>10}{'x python':>10}")
    print(f"{'python -c pass':<28}{python_ms:>10.1f}{1.0:>10.2f}")
    print(f"{'fogwire --help':<28}{help_ms:>10.1f}{result['ratio']:>10.2f}")
    print(f"{'fogwire plugins --json':<28}{plugins_ms:>10.1f}{result['plugins_ratio']:>10.2f}")
    ok = help_ms < 120 and result["ratio"] < 4.0
    print(f"goal (--help < 120 ms and < 4x python): {'met' if ok else 'NOT met'}")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
