"""Defaults the contract modules share, imported only when a default is used.

The contexts of the plugin contracts carry the consumer's converter; one built
without it (a test, a tool) gets a plain core converter from here, so importing a
contract module never imports cattrs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import cattrs


def core_converter() -> cattrs.Converter:
    """A new core converter (:func:`fogwire.convert.make_converter`)."""
    from fogwire.convert import make_converter

    return make_converter()
