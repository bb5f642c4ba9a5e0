"""A workaround for a cost of ``h2`` that grows with every byte received: the repr of each frame.

``h2`` formats ``repr(frame)`` for a trace line before its logger can decline it
(``H2Connection._receive_frame``, h2 4.1 to 4.4.1, upstream main too), and
``hyperframe`` builds a frame's repr by hex-encoding the frame's whole body only to
keep its first ten bytes (``hyperframe.frame._raw_data_repr``). Every DATA frame a
reply brings is thus hex-encoded in full and thrown away: measured on containerd's
``Containers.List`` of 30 containers (75 KB), that was a sixth of the call's
client CPU (docs/engines.md, "The gRPC client").

:func:`install` replaces that one hyperframe function with one that encodes only
the bytes it keeps: the same string for every input (a test compares the two on
many), at a cost that no longer depends on the size of the frame. It touches
nothing else and only the hyperframe releases whose function is known
(:data:`KNOWN_VERSIONS`); on any other release it leaves hyperframe alone (calls
are slower, not wrong) and the plugin's tests fail until the new release is
checked. Everything else in the process that uses hyperframe sees the same reprs.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable

import hyperframe
import hyperframe.frame

__all__ = ["KNOWN_VERSIONS", "install", "installed", "original"]

KNOWN_VERSIONS = frozenset({"6.0.0", "6.0.1", "6.1.0"})
"""hyperframe releases whose ``_raw_data_repr`` is the function replaced (checked by a test)."""

_KEPT_HEX_CHARS = 20
"""What hyperframe's repr keeps of a body: 20 hex digits, i.e. the first 10 bytes, then ``...``."""

_original: Callable[[bytes | None], str] | None = None


def _raw_data_repr(data: bytes | memoryview | None) -> str:
    """hyperframe's ``_raw_data_repr``, encoding one byte more than it keeps instead of the whole body.

    The byte beyond the kept ten makes the result longer than 20 digits exactly when
    the original's is, so the ``...`` appears in the same cases.
    """
    if not data:
        return "None"
    digits = binascii.hexlify(data[: _KEPT_HEX_CHARS // 2 + 1]).decode("ascii")
    if len(digits) > _KEPT_HEX_CHARS:
        digits = digits[:_KEPT_HEX_CHARS] + "..."
    return "<hex:" + digits + ">"


def install() -> bool:
    """Replace hyperframe's body repr with the constant-cost one; True if it is in place.

    Idempotent. Does nothing (and returns False) on a hyperframe release not in
    :data:`KNOWN_VERSIONS` or without the function.
    """
    global _original
    current = getattr(hyperframe.frame, "_raw_data_repr", None)
    if current is _raw_data_repr:
        return True
    if hyperframe.__version__ not in KNOWN_VERSIONS or current is None:
        return False
    _original = current
    hyperframe.frame._raw_data_repr = _raw_data_repr
    return True


def installed() -> bool:
    """Is the constant-cost repr the one hyperframe uses now?"""
    return getattr(hyperframe.frame, "_raw_data_repr", None) is _raw_data_repr


def original() -> Callable[[bytes | None], str] | None:
    """hyperframe's own function, as it was before :func:`install` (None if it never ran)."""
    return _original
