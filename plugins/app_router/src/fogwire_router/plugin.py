"""Entry point of ``fogwire-router``: the ``router`` command, the ``router-file`` source, the ``skrouterd`` validator.

Imports only ``fogwire``: the supervisor, the model and the file source load when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fogwire.hookspecs import hookimpl

if TYPE_CHECKING:
    from fogwire.payloads import JSONValue
    from fogwire.registry import CommandRegistry, SourceRegistry, ValidatorRegistry
    from fogwire.sources import ConfigSource, SourceContext
    from fogwire.validation import DocumentValidator


def _router_file_source(context: SourceContext) -> ConfigSource[JSONValue]:
    from fogwire_router.sources import RouterFileSource

    return RouterFileSource(context)


def _skrouterd_validator() -> DocumentValidator:
    from fogwire_router.validate import SkrouterdValidator

    return SkrouterdValidator()


@hookimpl
def fogwire_register_commands(registry: CommandRegistry) -> None:
    """Register ``fogwire router``, which parses its own arguments (it is the container entrypoint)."""
    registry.add(
        "router",
        help="run the skupper-router wrapper (container entrypoint)",
        module="fogwire_router.command",
        own_argv=True,
    )


@hookimpl
def fogwire_register_config_sources(registry: SourceRegistry) -> None:
    """Register ``router-file``: a router config (either form) from a local YAML/JSON file, watched."""
    from fogwire_router.model import ROUTER_DOCUMENT

    registry.add(
        "router-file",
        _router_file_source,
        produces=ROUTER_DOCUMENT,
        description="router config (controller object or skrouterd list) from a local file, watched",
    )


@hookimpl
def fogwire_register_validators(registry: ValidatorRegistry) -> None:
    """Register the ``skrouterd`` validator: ``fogwire validate`` checks skrouterd entity lists."""
    registry.add("skrouterd", _skrouterd_validator, description="skrouterd [[type, {attributes}], …] configs")
