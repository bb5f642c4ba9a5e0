"""fogwire: the node agent of ioFog / Datasance PoT edge fleets.

The package root stays light (``fogwire --help`` imports almost nothing, not even
``typing``); the public classes are importable from here lazily.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from fogwire.agent import Agent

__version__ = "0.1.0"

__all__ = ["Agent", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Agent":
        from fogwire.agent import Agent

        return Agent
    raise AttributeError(f"module 'fogwire' has no attribute {name!r}")
