"""The agent's own ``fogwire`` subcommands, as plain data.

Kept apart from the plugin module so ``fogwire daemon`` (or any built-in command)
starts without loading the plugin host: the CLI looks a built-in name up here, and
only a name that is not built in (or ``fogwire --help``) scans ``fogwire.commands``
entry points.
"""

from __future__ import annotations

BUILTIN_COMMANDS: dict[str, tuple[str, str]] = {
    "plugins": ("fogwire.cli.plugins_cmd", "list installed plugins and their status"),
    "validate": ("fogwire.cli.validate_cmd", "validate ioFog documents or the agent config"),
    "init-config": ("fogwire.cli.config_cmd", "write the default agent config if none exists"),
    "config": ("fogwire.cli.config_cmd", "show the effective agent config"),
    "daemon": ("fogwire.cli.agent_cmd", "run the agent in the foreground"),
    "apply": ("fogwire.cli.agent_cmd", "set the desired state from a YAML file"),
    "plan": ("fogwire.cli.agent_cmd", "show what apply would do, changing nothing"),
    "status": ("fogwire.cli.agent_cmd", "show each microservice: desired, actual, health, errors"),
    "logs": ("fogwire.cli.agent_cmd", "show a microservice's output"),
    "delete": ("fogwire.cli.agent_cmd", "remove a microservice from the desired state"),
    "prune": ("fogwire.cli.agent_cmd", "remove images no microservice uses, now"),
    "ms": ("fogwire.cli.agent_cmd", "start, stop or restart one microservice (the daemon keeps a stopped one stopped)"),
}
"""Subcommand → (module, one-line help). A module defines ``add_arguments(name, parser)`` and ``run(args) -> int``."""
