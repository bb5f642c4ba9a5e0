"""fogwire: the node agent of ioFog / Datasance PoT edge fleets.

The package root stays light (``fogwire --help`` imports almost nothing); the
public classes are importable from here lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Agent", "__version__"]

if TYPE_CHECKING:
    from fogwire.agent import Agent


def __getattr__(name: str) -> Any:
    if name == "Agent":
        from fogwire.agent import Agent

        return Agent
    raise AttributeError(f"module 'fogwire' has no attribute {name!r}")
