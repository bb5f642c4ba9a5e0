"""``fogwire plugins``: every plugin found, with kind, name, distribution, version and status."""

from __future__ import annotations

import argparse

from fogwire.cli.common import print_json


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    """``--json`` for machine-readable output."""
    parser.add_argument("--json", action="store_true", help="print a JSON list")


def run(args: argparse.Namespace) -> int:
    """List the plugins; exit 0 even if some failed (they are reported), unless strict."""
    from fogwire.plugins import PluginHost

    statuses = PluginHost().discover()
    if args.json:
        print_json(
            [
                {
                    "kind": s.kind,
                    "name": s.name,
                    "distribution": s.distribution,
                    "version": s.version,
                    "status": s.status,
                    "builtin": s.builtin,
                }
                for s in statuses
            ]
        )
        return 0
    rows = [("KIND", "NAME", "DISTRIBUTION", "VERSION", "STATUS")]
    rows += [(s.kind, s.name, s.distribution, s.version, s.status) for s in statuses]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4])
    return 0
