"""The document validator contract: ``fogwire validate`` checks documents a plugin owns.

``fogwire validate -f FILE`` checks ioFog documents and agent configs itself; a
document of another kind (the router wrapper's skrouterd config, say) is offered to
every installed validator (``fogwire.validators`` entry points), and the first that
claims it reports its problems. A broken validator plugin is warned about and
skipped, like any plugin that is only discovered.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, ClassVar

from fogwire.payloads import JSONValue

if TYPE_CHECKING:
    import cattrs

    from fogwire.errors import Problem


class DocumentValidator(abc.ABC):
    """Checks the documents of one kind a plugin owns."""

    name: ClassVar[str] = ""

    @abc.abstractmethod
    def claims(self, document: JSONValue) -> bool:
        """True when ``document`` is of this validator's kind (decided by shape, cheaply)."""

    @abc.abstractmethod
    def problems(self, document: JSONValue, origin: str, index: int, converter: cattrs.Converter) -> list[Problem]:
        """Every problem in ``document``, the ``index``-th (1-based) of file ``origin``; empty when valid."""
