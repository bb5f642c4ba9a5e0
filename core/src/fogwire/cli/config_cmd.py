"""``fogwire init-config`` and ``fogwire config show``."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from fogwire.cli.common import paths_from, print_json


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    """``config show [--json]``; ``init-config`` takes no arguments of its own."""
    if name == "config":
        parser.add_argument(
            "action",
            choices=("show", "set", "switch"),
            help="show: the effective config; set KEY VALUE: change a key of the current profile; "
            "switch PROFILE: make another profile current",
        )
        parser.add_argument(
            "words",
            nargs="*",
            metavar="ARG",
            help="set: KEY VALUE (a key, or edgelet's flag: --change-frequency-seconds, --cf, ...); switch: PROFILE",
        )
        parser.add_argument("--json", action="store_true")
        from fogwire.model.agent_config import EDGELET_LONG_FLAGS, EDGELET_SHORT_FLAGS

        group = parser.add_argument_group("set: edgelet's config flags (any number at once)")
        shorts = {key: short for short, key in EDGELET_SHORT_FLAGS.items()}
        taken = {"config", "log-level", "log-dir", "state-dir", "run-dir", "log-format", "debug", "json", "help"}
        for long, key in EDGELET_LONG_FLAGS.items():
            names = [f"--{long}"] if long not in taken else []
            if key in shorts:
                names.append(f"--{shorts[key]}")
            if names:
                group.add_argument(*names, dest=f"set_{key}", metavar="VALUE", help=f"set {key}")


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
    if args.action in ("set", "switch"):
        return _change(args, paths)
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


def _change(args: argparse.Namespace, paths: Any) -> int:
    """``config set KEY VALUE`` / ``config switch PROFILE``: validate the whole new file, write it, tell the daemon."""
    import yaml

    from fogwire.config import parse_agent_config
    from fogwire.errors import ConfigError, Problem
    from fogwire.model.agent_config import profile_key
    from fogwire.paths import replace_file

    target = paths.config_file
    origin = str(target)
    data = yaml.safe_load(target.read_text(encoding="utf-8")) if target.exists() else None
    data = dict(data or {})
    current = str(data.get("currentProfile") or "default")
    profiles = dict(data.get("profiles") or {})
    if args.action == "switch":
        if len(args.words) != 1:
            print("fogwire config switch: expected one PROFILE", file=sys.stderr)
            return 2
        (wanted,) = args.words
        if wanted not in profiles:
            names = ", ".join(sorted(profiles)) or "none"
            raise ConfigError(
                [Problem(origin, 1, "currentProfile", f"no profile named {wanted!r} (profiles: {names})")]
            )
        data["currentProfile"] = wanted
        what = f"current profile: {wanted}"
    else:
        pairs = [(key.removeprefix("set_"), value) for key, value in vars(args).items() if key.startswith("set_")]
        pairs = [(key, value) for key, value in pairs if value is not None]
        if len(args.words) == 2:
            pairs.append((args.words[0], args.words[1]))
        elif args.words or not pairs:
            print("fogwire config set: expected KEY VALUE, or edgelet's flags (--cf 30 ...)", file=sys.stderr)
            return 2
        profile = dict(profiles.get(current) or {})
        changes = []
        for name, text in pairs:
            key = profile_key(name)
            if key is None:
                raise ConfigError([Problem(origin, 1, f"profiles.{current}.{name.lstrip('-')}", "unknown config key")])
            value = yaml.safe_load(text) if text != "" else None
            for alias in [k for k in profile if k != key and profile_key(k) == key]:
                del profile[alias]  # the file's other spelling of the same setting gives way
            profile[key] = value
            changes.append(f"{key} = {value!r}")
        profiles[current] = profile
        data["profiles"] = profiles
        what = f"{', '.join(changes)} in profile {current}"
    parse_agent_config(data, origin)  # the whole file validates, or nothing is written
    target.parent.mkdir(parents=True, exist_ok=True)
    replace_file(target, yaml.safe_dump(data, sort_keys=False), mode=0o644)
    result: dict[str, Any] = {"changed": what, "file": origin}
    from fogwire.api.client import ApiClient

    client = ApiClient(paths.api_socket, paths.api_token_file)
    if client.available():
        result["daemon"] = client.request("POST", "/v1/system/reload")
    if args.json:
        print_json(result)
    else:
        print(f"{what} ({origin})")
        daemon = result.get("daemon")
        if daemon is not None:
            applied = ", ".join(daemon["applied"]) or "nothing"
            print(
                f"the daemon applied: {applied}"
                + (f"; needs a restart for: {', '.join(daemon['needRestart'])}" if daemon["needRestart"] else "")
            )
    return 0
