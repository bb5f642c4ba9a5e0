"""The containerd engine's HTTP/2 client before ``h2``, for benchmarks that measure today's engine beside it.

Until commit 452b9f1 the containerd plugin carried its own HTTP/2 (framing, flow
control, HPACK encoding); the client is now on ``h2``. The benchmarks read that
client from this repository's history and measure both in the same run:

* ``bench/grpc_client.py`` loads the module on its own and times the same calls;
* ``bench/containerd_import.py`` and ``bench/reconcile.py`` run today's engine with
  it in place of ``fogwire_engine_containerd._grpc`` (:func:`install_code`), so the
  engine import and the idle daemon are measured with one client and then the other.

The hand-written client has the same interface except two names added since: the
``DEFAULT_MAX_RECEIVE_BYTES`` constant and ``Channel``'s ``max_receive_message_bytes``
argument (it had no receive limit). :func:`install_code` supplies both. Its pool
keeps up to 16 idle connections where today's keeps 32: an idle daemon holds one.

The benchmarks need the repository's history for it: in a shallow clone or an
unpacked source archive :func:`write_module` finds nothing, and they leave the
hand-written figures out.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMIT = "452b9f1"
"""A commit with the hand-written HTTP/2 client in its final form (the module is the same until the move to ``h2``)."""
MODULE = "plugins/engine_containerd/src/fogwire_engine_containerd/_grpc.py"

_INSTALL = r"""
import importlib.util as _util, sys as _sys
_spec = _util.spec_from_file_location("fogwire_engine_containerd._grpc", {path!r})
_client = _util.module_from_spec(_spec)
_spec.loader.exec_module(_client)
_client.DEFAULT_MAX_RECEIVE_BYTES = 4 * 1024 * 1024


class _Channel(_client.Channel):
    def __init__(self, path, max_receive_message_bytes=None):
        super().__init__(path)


_client.Channel = _Channel
_sys.modules["fogwire_engine_containerd._grpc"] = _client
"""


def write_module(directory: Path) -> Path | None:
    """Write the hand-written client's module (as of :data:`COMMIT`) into ``directory``; returns its path.

    ``None`` when the repository's history does not have it (a shallow clone, a source archive).
    """
    try:
        shown = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{COMMIT}:{MODULE}"], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:  # no git at all
        return None
    if shown.returncode != 0:
        return None
    path = directory / "hand_written_grpc.py"
    path.write_text(shown.stdout)
    return path


def install_code(path: Path) -> str:
    """Python source that makes ``fogwire_engine_containerd._grpc`` the client at ``path``.

    Run it in a fresh process before the engine is imported: the engine's modules
    then import the hand-written client wherever they import the current one.
    """
    return _INSTALL.format(path=str(path))
