"""``h2``'s connection without one eager trace line, which cost a tenth of a call's client CPU.

``h2.connection.H2Connection._receive_frame`` starts every received frame with
``self.config.logger.trace("Received frame: %s", repr(frame))``. The frame's repr is
built before the logger can decline it, and the default logger discards everything.
hyperframe builds that repr by formatting the frame's fields and hex-encoding its
whole body. On containerd's calls that one line was about 15 µs of a 170 µs
``Version`` call and a sixth of a 75 KB ``Containers.List``: in one process, the
client cost 1.45–1.47× the hand-written client it replaced with the line and
1.32–1.34× without it (docs/engines.md, "The gRPC client").

:class:`TraceFreeConnection` overrides that one method with the same work and no
trace line: the frame goes to ``h2``'s own handler for its type, and a frame on a
closed stream is answered as ``h2`` answers it (a RST_STREAM when the stream was
reset, a connection error otherwise). Nothing in the process but this client's
connections is touched.

The method is ``h2``'s private one, so :func:`new_connection` uses the override only
on the ``h2`` releases whose method it was checked against (:data:`KNOWN_VERSIONS`:
from 4.2.0 on the method is the same; 4.1.0 raised the error for a frame on a
stream that ended without chaining its cause, which the override chains).
On any other release it returns ``h2``'s own connection: calls cost more, nothing
is wrong, and the plugin's tests fail until the new release is checked (they
compare the installed method's source with the one checked, and both classes'
behaviour frame by frame). The fix belongs upstream (pass ``frame``, not
``repr(frame)``, to the trace call); this module goes when a release makes it.
"""

from __future__ import annotations

import h2
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import hyperframe.frame

__all__ = ["KNOWN_VERSIONS", "TraceFreeConnection", "new_connection"]

KNOWN_VERSIONS = frozenset({"4.1.0", "4.2.0", "4.3.0", "4.4.0", "4.4.1"})
"""``h2`` releases whose ``H2Connection._receive_frame`` the override was checked against."""


class TraceFreeConnection(h2.connection.H2Connection):
    """An ``h2`` connection that does not format a trace line for every frame it receives."""

    def _receive_frame(self, frame: hyperframe.frame.Frame) -> list[h2.events.Event]:
        """Hand ``frame`` to ``h2``'s handler for its type; answer a frame on a closed stream as ``h2`` does."""
        events: list[h2.events.Event]
        try:
            frames, events = self._frame_dispatch_table[frame.__class__](frame)
        except h2.exceptions.StreamClosedError as closed:
            if not self._stream_is_closed_by_reset(closed.stream_id):
                raise
            _queue_reset(self, closed.stream_id, closed.error_code)
            events = closed._events
        except h2.exceptions.StreamIDTooLowError as too_low:
            # A stream h2 has already forgotten: which way it closed decides the error.
            if self._stream_is_closed_by_reset(too_low.stream_id):
                _queue_reset(self, too_low.stream_id, h2.errors.ErrorCodes.STREAM_CLOSED)
                events = []
            elif self._stream_is_closed_by_end(too_low.stream_id):
                raise h2.exceptions.StreamClosedError(too_low.stream_id) from too_low
            else:
                raise
        else:
            self._prepare_for_sending(frames)
        return events


def _queue_reset(connection: h2.connection.H2Connection, stream_id: int, error_code: int) -> None:
    """Queue a RST_STREAM for ``stream_id`` on ``connection`` (a stream error: the connection lives on).

    A function, not a method: a name added to ``H2Connection``'s namespace could meet one of ``h2``'s own.
    """
    reset = hyperframe.frame.RstStreamFrame(stream_id)
    reset.error_code = error_code
    connection._prepare_for_sending([reset])


def new_connection(config: h2.config.H2Configuration) -> h2.connection.H2Connection:
    """A connection for ``config``: trace-free on a known ``h2`` release, ``h2``'s own on any other."""
    if h2.__version__ in KNOWN_VERSIONS:
        return TraceFreeConnection(config)
    return h2.connection.H2Connection(config)
