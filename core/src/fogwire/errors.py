"""The error hierarchy of fogwire.

Every error a user may see derives from :class:`FogwireError`. A message says what
went wrong, where (document, field path, plugin, distribution) and, where it can,
what to do. Secrets (tokens, registry passwords, keys) never appear in a message.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs


class FogwireError(Exception):
    """Base class of every error fogwire raises on purpose."""


@attrs.frozen
class Problem:
    """One validation problem: where it is and what was expected.

    ``document`` names the file (or other origin) and ``index`` the document
    inside it (1-based, as a person counts); ``path`` is the field path such as
    ``spec.container.ports[1].external``.
    """

    document: str
    index: int
    path: str
    message: str

    def __str__(self) -> str:
        location = f"{self.document}:DOC#{self.index}"
        return f"{location}: {self.path}: {self.message}" if self.path else f"{location}: {self.message}"


class ConfigError(FogwireError):
    """A configuration or desired-state document is invalid.

    Carries every problem found, so a user fixes them all in one pass; nothing of
    an invalid input is ever applied.
    """

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid configuration")


class PluginLoadError(FogwireError):
    """A plugin the user selected could not be found or imported."""


class UnknownPluginError(PluginLoadError):
    """No plugin of the requested kind has the requested name."""


class DuplicatePluginError(PluginLoadError):
    """Two distributions claim the same plugin name for one kind."""


class EngineError(FogwireError):
    """A container engine operation failed."""


class ImageNotFoundError(EngineError):
    """The image is neither available locally nor pullable."""


class RegistryError(EngineError):
    """A registry (or a proxy or CDN on the way to it) could not be reached or answered with an error."""


class RegistryAuthError(RegistryError):
    """The registry refused the credentials (the password is never included)."""


class RegistryCertificateError(RegistryError):
    """The registry's TLS certificate could not be verified (no CA, or the wrong one, for it)."""


class PortInUseError(EngineError):
    """A host port a workload asks for is already taken."""


class WorkloadNotFoundError(EngineError):
    """The named managed workload does not exist."""


class SinkError(FogwireError):
    """A reload sink failed as a whole (not per item)."""


class SourceError(FogwireError):
    """A config source could not deliver configuration."""


class NotFoundError(FogwireError):
    """What a request names does not exist (a microservice not in the desired state)."""


class ConflictError(FogwireError):
    """The request can't be done in the agent's current state (the desired state belongs to another source)."""
