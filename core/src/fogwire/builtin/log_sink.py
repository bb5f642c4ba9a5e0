"""The ``log`` reload sink: logs each change it is given and applies nothing.

Useful to see what a config change would do, and as the simplest example of a sink.
"""

from __future__ import annotations

import logging

from fogwire.sinks import ApplyReport, ItemResult, Outcome, ReloadSink

log = logging.getLogger(__name__)


class LogSink(ReloadSink[object]):
    """Logs the new desired state (and whether it differs from the last applied)."""

    name = "log"

    async def apply(self, desired: object, last_applied: object | None) -> ApplyReport:
        """Log the change; report one item, ``applied`` or ``unchanged``."""
        if desired == last_applied:
            log.info("log sink: desired state unchanged")
            return ApplyReport(self.name, (ItemResult("config", "none", Outcome.UNCHANGED),))
        log.info("log sink: new desired state: %r", desired)
        action = "create" if last_applied is None else "update"
        return ApplyReport(self.name, (ItemResult("config", action, Outcome.APPLIED),))
