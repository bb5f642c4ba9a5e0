"""The error every bundle operation raises."""

from __future__ import annotations

from fogwire.errors import FogwireError


class BundleError(FogwireError):
    """A bundle could not be created, read, verified or imported.

    The message names the bundle file (or registry) and what is wrong with it;
    nothing of a bundle that fails verification is made visible anywhere.
    """
