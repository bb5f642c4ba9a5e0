"""Entry point of the ``fogwire`` command.

Only argparse is imported to build the parser; a subcommand's module (and what it
needs: attrs, cattrs, pluggy, SDKs) is imported only when that subcommand runs, so
``fogwire --help`` stays fast.

Exit codes: 0 ok, 1 runtime failure, 2 usage or validation error.
"""

from __future__ import annotations

import argparse
import importlib
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

COMMANDS: dict[str, tuple[str, str]] = {
    "plugins": ("fogwire.cli.plugins_cmd", "list installed plugins and their status"),
    "validate": ("fogwire.cli.validate_cmd", "validate ioFog documents, agent config or router config"),
    "init-config": ("fogwire.cli.config_cmd", "write the default agent config if none exists"),
    "config": ("fogwire.cli.config_cmd", "show the effective agent config"),
    "daemon": ("fogwire.cli.agent_cmd", "run the agent in the foreground"),
    "apply": ("fogwire.cli.agent_cmd", "set the desired state from a YAML file"),
    "plan": ("fogwire.cli.agent_cmd", "show what apply would do, changing nothing"),
    "status": ("fogwire.cli.agent_cmd", "show each microservice: desired, actual, health, errors"),
    "logs": ("fogwire.cli.agent_cmd", "show a microservice's output"),
    "delete": ("fogwire.cli.agent_cmd", "remove a microservice from the desired state"),
    "bundle": ("fogwire.cli.bundle_cmd", "create, import and watch offline image bundles"),
    "router": ("fogwire.router.command", "run the skupper-router wrapper (container entrypoint)"),
}
"""Subcommand → (module, one-line help). A module defines ``add_arguments(name, parser)`` and ``run(args) -> int``."""

EPILOG = """\
examples:
  fogwire init-config                  write /etc/fogwire/config.yaml (root) if absent
  fogwire validate -f app.yaml         check documents; exit 2 with FILE:DOC#N: path: message
  fogwire plugins --json               every installed plugin and its status
  fogwire daemon                       run the agent (foreground)
  fogwire apply -f app.yaml            set the desired state while the daemon runs
  fogwire status --json                what runs, what failed and why

exit codes: 0 ok, 1 runtime failure, 2 usage or validation error.
environment: FOGWIRE_CONFIG, FOGWIRE_STATE_DIR, FOGWIRE_LOG_DIR, FOGWIRE_RUN_DIR,
  FOGWIRE_DISABLE_PLUGINS, FOGWIRE_LOAD_PLUGINS, FOGWIRE_STRICT_PLUGINS.
"""


def _version() -> str:
    from fogwire import __version__

    return f"fogwire {__version__}"


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one stub sub-parser per command (filled on use)."""
    parser = argparse.ArgumentParser(
        prog="fogwire",
        description="fogwire: keeps an edge device's containerised microservices equal to what the fleet wants.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    add_common_arguments(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags every command accepts: paths and logging."""
    group = parser.add_argument_group("paths and logging")
    group.add_argument("--config", dest="config_file", metavar="FILE", help="agent config file (env FOGWIRE_CONFIG)")
    group.add_argument("--state-dir", metavar="DIR", help="state directory (env FOGWIRE_STATE_DIR)")
    group.add_argument("--log-dir", metavar="DIR", help="log directory (env FOGWIRE_LOG_DIR)")
    group.add_argument("--run-dir", metavar="DIR", help="runtime directory (env FOGWIRE_RUN_DIR)")
    group.add_argument("--log-format", choices=("text", "json"), default=None, help="log line format (default text)")
    group.add_argument("--log-level", default=None, help="debug, info, warning, error (default info)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fogwire`` command; returns the exit code (also via ``SystemExit``)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    top, rest = parser.parse_known_args(args_list)
    if top.command is None:
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        parser.print_help()
        return EXIT_USAGE
    module_name, help_text = COMMANDS[top.command]
    if top.command == "router":
        module = importlib.import_module(module_name)
        return int(module.main(rest))
    command_parser = argparse.ArgumentParser(
        prog=f"fogwire {top.command}", description=help_text, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_arguments(command_parser)
    module = importlib.import_module(module_name)
    module.add_arguments(top.command, command_parser)
    args = command_parser.parse_args(rest, namespace=top)
    from fogwire.cli import common

    common.setup_logging(args)
    try:
        return int(module.run(args))
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        from fogwire.errors import ConfigError, FogwireError

        if isinstance(error, ConfigError):
            print(str(error), file=sys.stderr)
            return EXIT_USAGE
        if isinstance(error, (FogwireError, OSError)):  # OSError: an unwritable path, a full disk, ...
            print(f"fogwire {top.command}: error: {error}", file=sys.stderr)
            return EXIT_FAILURE
        raise


def entry() -> None:
    """Console-script wrapper: exit with :func:`main`'s code."""
    sys.exit(main())
