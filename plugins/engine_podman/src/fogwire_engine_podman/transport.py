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

The connection class subclasses podman-py internals (``podman.api.uds``), so it
is guarded: the distribution requires ``podman>=5.0,<6``, and
:func:`internals_changed` checks the shapes it relies on before anything is
patched. On a release that changed them the plugin logs a warning and leaves
podman-py as it is (the leak may come back; nothing breaks), and the plugin's
test ``test_podman_internals_are_as_the_transport_expects`` fails loudly.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import logging
from typing import Any

import podman.api.uds
import requests
import requests.exceptions

log = logging.getLogger(__name__)


@functools.cache
def internals_changed() -> str | None:
    """What of ``podman.api.uds`` the connection class relies on is gone or changed; ``None``: as verified (5.x)."""
    uds = podman.api.uds
    for name in ("UDSConnection", "UDSSocket", "UDSConnectionPool", "UDSPoolManager"):
        if not inspect.isclass(getattr(uds, name, None)):
            return f"podman.api.uds.{name} is not a class any more"
    if getattr(uds.UDSConnectionPool, "ConnectionCls", None) is not uds.UDSConnection:
        return "UDSConnectionPool.ConnectionCls is not UDSConnection"
    if list(inspect.signature(uds.UDSSocket).parameters)[:1] != ["uds"]:
        return "UDSSocket no longer takes the socket path first"
    for method in ("connect", "settimeout", "close"):
        if not callable(getattr(uds.UDSSocket, method, None)):
            return f"UDSSocket.{method} is gone"
    pools = getattr(uds.UDSPoolManager(), "pool_classes_by_scheme", None)  # type: ignore[no-untyped-call]
    if not isinstance(pools, dict) or uds.UDSConnectionPool not in pools.values():
        return "UDSPoolManager.pool_classes_by_scheme does not name UDSConnectionPool"
    return None


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
    (TCP, SSH) are left as they are. podman-py internals that changed
    (:func:`internals_changed`) leave the session as it is, with a warning.
    """
    changed = internals_changed()
    if changed is not None:
        version = importlib.metadata.version("podman")
        log.warning(
            "podman-py %s: %s; its unix sockets are left unpatched (a failed connect may leak one)", version, changed
        )
        return
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
