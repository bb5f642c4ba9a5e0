"""Unix-socket connections that close their socket when connecting fails, and what "unreachable" looks like.

podman-py's ``UDSConnection.connect`` (5.8) creates a ``UDSSocket`` and, when
connecting fails (no socket file, connection refused: the service is down or
restarting), raises without closing it or keeping it on the connection, so
urllib3's ``conn.close()`` cannot reach it. The socket then lives on in the
exception's traceback, in a reference cycle, until some later garbage
collection finalises it with a ``ResourceWarning``, wherever the process is by
then. :func:`close_failed_connects` gives a client's unix-socket pools a
connection class that closes the socket itself. Only the clients this plugin
makes get it; podman-py is not patched for anyone else in the process.

podman-py also turns every ``OSError`` of a request, connection failures
included, into an ``APIError`` (an ``HTTPError``); :func:`unreachable` finds the
connection failure under it.
"""

from __future__ import annotations

from typing import Any

import podman.api.uds
import requests
import requests.exceptions


class ClosingUDSConnection(podman.api.uds.UDSConnection):
    """podman-py's unix-socket connection, closing its socket when connecting fails."""

    def connect(self) -> None:
        """Connect as podman-py does; on any failure close the new socket before raising."""
        sock = podman.api.uds.UDSSocket(self.uds)
        try:
            sock.settimeout(self.timeout)
            sock.connect()  # type: ignore[no-untyped-call]  # podman-py has no type hints
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class ClosingUDSConnectionPool(podman.api.uds.UDSConnectionPool):
    """A pool of :class:`ClosingUDSConnection`."""

    ConnectionCls = ClosingUDSConnection


def close_failed_connects(session: requests.Session) -> None:
    """Make ``session``'s (a podman-py ``APIClient``) unix-socket pools use :class:`ClosingUDSConnection`.

    Call it before the first request: pools are made on first use, from the
    pool manager's ``pool_classes_by_scheme``. Adapters of other transports
    (TCP, SSH) are left as they are.
    """
    for adapter in session.adapters.values():
        manager: Any = getattr(adapter, "poolmanager", None)
        if not isinstance(manager, podman.api.uds.UDSPoolManager):
            continue
        manager.pool_classes_by_scheme = {
            scheme: ClosingUDSConnectionPool if cls is podman.api.uds.UDSConnectionPool else cls
            for scheme, cls in manager.pool_classes_by_scheme.items()
        }


def unreachable(error: BaseException) -> bool:
    """Whether ``error`` (from podman-py or requests) means the service could not be reached."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, requests.exceptions.ConnectionError):
            return True
        cause = cause.__cause__
    return False
