"""The core's built-in plugins, registered through the same hooks as third-party ones."""

from __future__ import annotations

from fogwire.builtin.commands import BUILTIN_COMMANDS
from fogwire.hookspecs import hookimpl
from fogwire.payloads import ANY, IOFOG_DOCUMENTS
from fogwire.registry import CommandRegistry, SinkRegistry, SourceRegistry
from fogwire.sinks import ReloadSink, SinkContext
from fogwire.sources import ConfigSource, SourceContext


def _file_source(context: SourceContext) -> ConfigSource[object]:
    from fogwire.builtin.file_source import FileSource

    return FileSource(context)


def _log_sink(context: SinkContext) -> ReloadSink[object]:
    from fogwire.builtin.log_sink import LogSink

    return LogSink(context)


@hookimpl
def fogwire_register_config_sources(registry: SourceRegistry) -> None:
    """Register the ``file`` source: desired state from a local YAML/JSON file, watched."""
    registry.add(
        "file",
        _file_source,
        produces=IOFOG_DOCUMENTS,
        description="desired state from a local YAML/JSON file, watched",
    )


@hookimpl
def fogwire_register_reload_sinks(registry: SinkRegistry) -> None:
    """Register the ``log`` sink: logs each change it is given, applies nothing."""
    registry.add("log", _log_sink, consumes=ANY, description="logs what changed; applies nothing")


@hookimpl
def fogwire_register_commands(registry: CommandRegistry) -> None:
    """Register the agent's own commands (``daemon``, ``apply``, ``status``, …)."""
    for name, (module, help_text) in BUILTIN_COMMANDS.items():
        registry.add(name, help=help_text, module=module)
