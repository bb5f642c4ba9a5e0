"""Small supervision helpers: systemd notification and jittered intervals.

:func:`sd_notify` speaks the ``sd_notify`` protocol (one datagram to the unix
socket named by ``$NOTIFY_SOCKET``), so the agent can run as ``Type=notify`` with
``WatchdogSec`` without linking libsystemd.
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Mapping


def sd_notify(message: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``message`` (e.g. ``READY=1``, ``WATCHDOG=1``) to ``$NOTIFY_SOCKET``.

    Returns ``False`` when there is no notify socket (not under systemd) or the
    send fails; a supervisor that isn't listening (or reading) never blocks or
    breaks the agent.
    """
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            # Never block the event loop: a full receive queue drops the message.
            sock.setblocking(False)
            sock.sendto(message.encode(), address)
    except OSError:
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings: half of ``$WATCHDOG_USEC``, or ``None`` if unset.

    ``$WATCHDOG_PID``, when set, must be this process (systemd sets it for the main PID).
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 1e6 / 2


def jittered(seconds: float, spread: float = 0.2) -> float:
    """``seconds`` ± ``spread`` (a fraction), so many agents don't act in lock-step."""
    return seconds * random.uniform(1 - spread, 1 + spread)
