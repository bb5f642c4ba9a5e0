"""The committed ``_proto/*_pb2.py`` and ``*_pb2.pyi`` are what the pinned protoc makes of the protos.

They are committed, so building the plugin needs only hatchling (grpcio-tools has no wheel for
every Python the plugin supports). ``scripts/regen-containerd-stubs.py --out DIR`` regenerates
them into a temporary folder with the grpcio-tools pinned in ``scripts/stubs-requirements.txt``,
run from a venv of its own (``.cache/stubs-venv``, made on first use: that grpcio-tools needs
protobuf<5, and the test venvs run the newest protobuf). Every file must match byte for byte,
and no module may be left over from a proto that is gone. When the protoc venv cannot be made
or grpcio-tools is not the pinned one, the script fails, and so does this test: it never skips.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "scripts" / "regen-containerd-stubs.py"
PROTO_DIR = REPO / "plugins" / "engine_containerd" / "src" / "fogwire_engine_containerd" / "_proto"
REGENERATE = "python3 scripts/regen-containerd-stubs.py"


def _modules(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted([*folder.glob("*_pb2.py"), *folder.glob("*_pb2.pyi")])}


def test_the_committed_stubs_are_what_the_pinned_grpcio_tools_generates(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, f"{REGENERATE} --out {tmp_path} failed:\n{result.stdout}{result.stderr}"
    fresh, committed = _modules(tmp_path), _modules(PROTO_DIR)
    assert len(fresh) == 2 * len(list(PROTO_DIR.glob("*.proto"))), sorted(fresh)
    problems = [f"missing: {name}" for name in sorted(fresh.keys() - committed.keys())]
    problems += [f"made by no proto: {name}" for name in sorted(committed.keys() - fresh.keys())]
    problems += [
        f"differs: {name}" for name in sorted(fresh.keys() & committed.keys()) if fresh[name] != committed[name]
    ]
    assert not problems, (
        f"the committed containerd stubs in {PROTO_DIR.relative_to(REPO)} are not what the protos generate "
        f"({'; '.join(problems)}): run `{REGENERATE}` and commit the result"
    )
    assert (PROTO_DIR / "__init__.py").is_file()
