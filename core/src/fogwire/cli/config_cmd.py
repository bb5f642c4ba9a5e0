"""``fogwire init-config`` and ``fogwire config show``."""

from __future__ import annotations

import argparse
import os
import sys

from fogwire.cli.common import paths_from, print_json


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    """``config show [--json]``; ``init-config`` takes no arguments of its own."""
    if name == "config":
        parser.add_argument("action", choices=("show",), help="show: the effective config")
        parser.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    """Write the default config (never overwriting), or show the effective one."""
    from fogwire.config import default_config, dump_agent_config, load_agent_config
    from fogwire.convert import make_converter

    paths = paths_from(args)
    if args.command == "init-config":
        target = paths.config_file
        if target.exists():
            print(f"{target} exists; not overwritten", file=sys.stderr)
            return 0
        target.parent.mkdir(parents=True, exist_ok=True)
        text = dump_agent_config(default_config(paths.config_dir / "desired.yaml"))
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
        print(f"wrote {target}")
        return 0
    config = load_agent_config(paths.config_file)
    if args.json:
        print_json(
            {
                "configFile": str(paths.config_file),
                "configFileExists": paths.config_file.exists(),
                "stateDir": str(paths.state_dir),
                "logDir": str(paths.log_dir),
                "runDir": str(paths.run_dir),
                "config": make_converter().unstructure(config),
            }
        )
    else:
        print(f"# config file: {paths.config_file}{'' if paths.config_file.exists() else ' (absent: defaults)'}")
        print(f"# state dir: {paths.state_dir}\n# log dir: {paths.log_dir}\n# run dir: {paths.run_dir}")
        print(dump_agent_config(config), end="")
    return 0
