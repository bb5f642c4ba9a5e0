"""Regenerate the containerd plugin's protobuf modules: the committed ``*_pb2.py`` and ``*_pb2.pyi``.

    python3 scripts/regen-containerd-stubs.py            # rewrite them in place (after editing a .proto)
    python3 scripts/regen-containerd-stubs.py --out DIR  # write them into DIR instead (the stubs test does)
    python3 scripts/regen-containerd-stubs.py --setup    # only make the protoc venv (make setup does)

The protos are ``plugins/engine_containerd/src/fogwire_engine_containerd/_proto/*.proto``.
protoc is grpcio-tools, pinned in ``scripts/stubs-requirements.txt`` (its protobuf 4.25 gencode runs
on protobuf 4.25 to 7). It needs protobuf<5 itself, so it lives in a venv of its own,
``.cache/stubs-venv``, made with uv (``.venv/bin/uv``, from ``make setup``) and remade when the
requirements file changes; its wheels stop at CPython 3.12, so that venv gets a 3.11 or 3.12
interpreter (this one if it is one, else whichever uv finds). Building the plugin needs none of
this: the wheel packages the committed modules. The same protos and the same grpcio-tools give
the same bytes; ``plugins/engine_containerd/tests/test_proto_stubs_current.py`` checks that the
committed modules are what this script generates. Stdlib only.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "plugins" / "engine_containerd" / "src"
PACKAGE = "fogwire_engine_containerd"
PROTO_DIR = SRC / PACKAGE / "_proto"
REQUIREMENTS = ROOT / "scripts" / "stubs-requirements.txt"
VENV = ROOT / ".cache" / "stubs-venv"
COMMAND = "python3 scripts/regen-containerd-stubs.py"
"""How to regenerate the committed modules (what the stubs test tells you to run)."""

PROTOC = """
import importlib.metadata, os, sys
import grpc_tools
from grpc_tools import protoc
want, src, out, protos = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
have = importlib.metadata.version("grpcio-tools")
if have != want:
    sys.exit(f"grpcio-tools {have} in {sys.prefix}, not the pinned {want}")
well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
args = ["grpc_tools.protoc", "-I" + src, "-I" + well_known, "--python_out=" + out, "--pyi_out=" + out, *protos]
sys.exit(protoc.main(args))
"""
"""Runs in the protoc venv: check the installed grpcio-tools is the pinned one, then run protoc."""


def log(message: str) -> None:
    print(f"regen-containerd-stubs: {message}", file=sys.stderr)


def pinned_version() -> str:
    """The grpcio-tools version ``scripts/stubs-requirements.txt`` pins."""
    for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"grpcio-tools==(\S+)", line.split("#")[0].strip())
        if match:
            return match.group(1)
    raise SystemExit(f"{REQUIREMENTS.relative_to(ROOT)} pins no grpcio-tools (want a 'grpcio-tools==X' line)")


def _uv() -> str:
    local = ROOT / ".venv" / "bin" / "uv"
    if os.access(local, os.X_OK):
        return str(local)
    found = shutil.which("uv")
    if found is None:
        raise SystemExit(f"no uv to make {VENV.relative_to(ROOT)} with: run 'make setup' first")
    return found


def _interpreter() -> str:
    """This interpreter if grpcio-tools has wheels for it, else a version range for uv to find."""
    return sys.executable if sys.version_info[:2] in ((3, 11), (3, 12)) else ">=3.11,<3.13"


def _run(args: list[str]) -> None:
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")


def ensure_venv() -> Path:
    """The protoc venv's python; (re)made when missing or when the requirements file changed."""
    python = VENV / "bin" / "python"
    stamp_file = VENV / ".fogwire-stamp"
    stamp = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / f"{VENV.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs at once build it once
        if python.exists() and stamp_file.is_file() and stamp_file.read_text() == stamp:
            return python
        log(f"making {VENV.relative_to(ROOT)} from {REQUIREMENTS.relative_to(ROOT)}")
        shutil.rmtree(VENV, ignore_errors=True)
        uv = _uv()
        _run([uv, "venv", "-q", "--python", _interpreter(), str(VENV)])
        _run([uv, "pip", "install", "-q", "--python", str(python), "-r", str(REQUIREMENTS)])
        stamp_file.write_text(stamp)
    return python


def generate(out: Path) -> list[Path]:
    """Run the pinned protoc on every proto; write the modules into ``out``; return the files written."""
    python = ensure_venv()
    protos = sorted(PROTO_DIR.glob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files in {PROTO_DIR}")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fogwire-stubs-") as tmp:
        _run(
            [
                str(python),
                "-c",
                PROTOC,
                pinned_version(),
                str(SRC),
                tmp,
                *(str(p.relative_to(SRC)) for p in protos),
            ]
        )
        made = sorted((Path(tmp) / PACKAGE / "_proto").glob("*_pb2.py*"))
        if len(made) != 2 * len(protos):
            raise SystemExit(f"protoc wrote {len(made)} modules for {len(protos)} protos: {[p.name for p in made]}")
        for path in made:
            shutil.copyfile(path, out / path.name)
    return [out / path.name for path in made]


def regenerate_in_place() -> None:
    """Regenerate into ``_proto/``: rewrite the modules that changed, remove the ones no proto makes."""
    with tempfile.TemporaryDirectory(prefix="fogwire-stubs-") as tmp:
        made = generate(Path(tmp))
        names = {p.name for p in made}
        changed = 0
        for path in made:
            target = PROTO_DIR / path.name
            if not target.is_file() or target.read_bytes() != path.read_bytes():
                shutil.copyfile(path, target)
                log(f"wrote {target.relative_to(ROOT)}")
                changed += 1
    for stale in sorted([*PROTO_DIR.glob("*_pb2.py"), *PROTO_DIR.glob("*_pb2.pyi")]):
        if stale.name not in names:
            stale.unlink()
            log(f"removed {stale.relative_to(ROOT)} (no proto makes it)")
            changed += 1
    (PROTO_DIR / "__init__.py").touch()
    log(f"{changed} file(s) changed" if changed else "up to date")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--out", type=Path, help="write the modules into this folder, not into _proto/")
    what.add_argument("--setup", action="store_true", help="only make (or check) the protoc venv")
    args = parser.parse_args(argv)
    if args.setup:
        ensure_venv()
    elif args.out is not None:
        generate(args.out)
    else:
        regenerate_in_place()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
