"""Entry point of the ``fogwire`` command.

The agent's own commands are looked up in a plain table
(:data:`fogwire.builtin.commands.BUILTIN_COMMANDS`); any other name, and
``fogwire --help``, go through the plugin host's ``fogwire.commands`` entry points,
where distributions such as the router wrapper add theirs
(:func:`fogwire.hookspecs.fogwire_register_commands`). A subcommand's module (and
what it needs: SDKs) is imported only when that subcommand runs.

Exit codes: 0 ok, 1 runtime failure, 2 usage or validation error.
"""

from __future__ import annotations

import argparse
import importlib
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

EPILOG = """\
examples:
  fogwire init-config                  write /etc/fogwire/config.yaml (root) if absent
  fogwire validate -f app.yaml         check documents; exit 2 with FILE:DOC#N: path: message
  fogwire plugins --json               every installed plugin and its status
  fogwire daemon                       run the agent (foreground)
  fogwire apply -f app.yaml            set the desired state while the daemon runs
  fogwire status --json                what runs, what failed and why
  fogwire ms stop NAME                 stop one microservice until 'fogwire ms start NAME'

exit codes: 0 ok, 1 internal or runtime failure, 2 invalid input, 3 unauthorised,
  4 not found, 5 conflict, 10 no daemon running (for commands that need one).
environment: FOGWIRE_CONFIG, FOGWIRE_STATE_DIR, FOGWIRE_LOG_DIR, FOGWIRE_RUN_DIR,
  FOGWIRE_DISABLE_PLUGINS, FOGWIRE_LOAD_PLUGINS, FOGWIRE_STRICT_PLUGINS.
"""

Commands = dict[str, tuple[str, str, bool]]
"""Command name → (module, one-line help, parses its own argv)."""


def _version() -> str:
    from fogwire import __version__

    return f"fogwire {__version__}"


def builtin_commands() -> Commands:
    """The agent's own commands, without loading any plugin."""
    from fogwire.builtin.commands import BUILTIN_COMMANDS

    return {name: (module, text, False) for name, (module, text) in BUILTIN_COMMANDS.items()}


def plugin_command_names() -> dict[str, str]:
    """Commands distributions add (``fogwire.commands`` entry points): name → the distribution.

    Only the entry points are read, no plugin is imported, so ``fogwire --help`` stays
    fast and a broken distribution can't break it; the command's own help comes
    with ``fogwire NAME --help``.
    """
    import os

    from fogwire._entrypoints import LoadPolicy, find

    policy = LoadPolicy.from_environ(os.environ)
    return {r.name: f"{r.distribution} {r.version}" for r in find("fogwire.commands") if policy.refusal(r) is None}


def plugin_command(name: str) -> tuple[str, str, bool]:
    """Load the plugin command ``name`` through the plugin host: (module, help, own argv)."""
    from fogwire.plugins import PluginHost

    spec = PluginHost().command(name)
    return spec.module, spec.help, spec.own_argv


def build_parser(commands: Commands | None = None) -> argparse.ArgumentParser:
    """The top-level parser with one stub sub-parser per command of ``commands`` (default: built-ins)."""
    commands = builtin_commands() if commands is None else commands
    parser = argparse.ArgumentParser(
        prog="fogwire",
        description="fogwire: keeps an edge device's containerised microservices equal to what the fleet wants.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    add_common_arguments(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text, _own) in commands.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def command_parser(name: str, module: Any, help_text: str) -> argparse.ArgumentParser:
    """The full parser of command ``name`` (its module's arguments plus the common ones)."""
    parser = argparse.ArgumentParser(
        prog=f"fogwire {name}", description=help_text, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_arguments(parser)
    module.add_arguments(name, parser)
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
    group.add_argument("--debug", action="store_true", help="on an error, print its traceback too")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fogwire`` command; returns the exit code (also via ``SystemExit``)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    commands = builtin_commands()
    first = next((a for a in args_list if not a.startswith("-")), None)
    if first not in commands:  # --help, a plugin's command, or a typo: list every command
        for name, distribution in plugin_command_names().items():
            commands.setdefault(name, ("", f"from {distribution} (fogwire {name} --help)", False))
    parser = build_parser(commands)
    top, rest = parser.parse_known_args(args_list)
    if top.command is None:
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        parser.print_help()
        return EXIT_USAGE
    module_name, help_text, own_argv = commands[top.command]
    if not module_name:
        from fogwire.errors import PluginLoadError

        try:
            module_name, help_text, own_argv = plugin_command(top.command)
        except PluginLoadError as error:
            print(f"fogwire {top.command}: error: {error}", file=sys.stderr)
            return EXIT_FAILURE
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        print(
            f"fogwire {top.command}: error: the command's module {module_name!r} fails to import "
            f"({type(error).__name__}: {error}); reinstall the distribution that provides it",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    if own_argv:
        return int(module.main(rest))
    args = command_parser(top.command, module, help_text).parse_args(rest, namespace=top)
    from fogwire.cli import common

    common.setup_logging(args)
    try:
        return int(module.run(args))
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        from fogwire.errors import ConfigError, FogwireError

        if not isinstance(error, (FogwireError, OSError)):  # OSError: an unwritable path, a full disk, ...
            raise
        if args.debug:
            import traceback

            traceback.print_exc()
        if isinstance(error, ConfigError):
            print(str(error), file=sys.stderr)
            return EXIT_USAGE
        print(f"fogwire {top.command}: error: {error}", file=sys.stderr)
        return int(getattr(error, "exit_code", EXIT_FAILURE))


def entry() -> None:
    """Console-script wrapper: exit with :func:`main`'s code."""
    sys.exit(main())
