"""Hatchling build hook: generate the gRPC stubs from the hand-written protos.

The ``.proto`` files under ``src/fogwire_engine_containerd/_proto/`` are a minimal
subset of containerd's v1 API. The message modules (``*_pb2.py`` and ``.pyi``)
are generated; the per-service client stubs are built from the service
descriptors at run time (:class:`fogwire_engine_containerd._client.Stub`). They are generated at build time (wheel and
editable builds) with the grpcio-tools pinned in ``[build-system] requires``: its
protobuf 4.25 gencode runs on every protobuf runtime from 4.25 to 7, so the plugin
does not pin the agent's protobuf. Generated modules are never committed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

PACKAGE = "fogwire_engine_containerd"


def generate(root: Path) -> list[Path]:
    """Run protoc on every proto of the package; return the files written."""
    import grpc_tools
    from grpc_tools import protoc

    src = root / "src"
    proto_dir = src / PACKAGE / "_proto"
    protos = sorted(proto_dir.glob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{src}",
        f"-I{well_known}",
        f"--python_out={src}",
        f"--pyi_out={src}",
        *(str(p.relative_to(src)) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {proto_dir}")
    (proto_dir / "__init__.py").touch()
    return sorted([*proto_dir.glob("*_pb2.py"), *proto_dir.glob("*_pb2.pyi")])


class ProtoStubsHook(BuildHookInterface):  # type: ignore[type-arg]
    """Generates the stubs before hatchling collects the package files."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Generate the stubs and make sure the (git-ignored) files are packaged."""
        root = Path(self.root)
        written = generate(root)
        for path in [*written, root / "src" / PACKAGE / "_proto" / "__init__.py"]:
            build_data["artifacts"].append(os.fspath(path.relative_to(root)))
