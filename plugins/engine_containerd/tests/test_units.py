"""Pure functions of the plugin: references, chain IDs, the runtime spec, the light entry point."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from fogwire_engine_containerd import _ref
from fogwire_engine_containerd._images import chain_ids, sha256
from fogwire_engine_containerd._spec import build_spec, capabilities, process_args, process_env

from fogwire.engine import WorkloadSpec
from fogwire.errors import EngineError


@pytest.mark.parametrize(
    ("reference", "name"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("fogwire/busybox:1", "docker.io/fogwire/busybox:1"),
        ("127.0.0.1:5001/fogwire/busybox:1", "127.0.0.1:5001/fogwire/busybox:1"),
        ("localhost/app", "localhost/app:latest"),
        ("quay.io/a/b@sha256:" + "0" * 64, "quay.io/a/b@sha256:" + "0" * 64),
    ],
)
def test_references_are_normalised_like_containerd_names_them(reference: str, name: str) -> None:
    assert _ref.normalize(reference) == name


@pytest.mark.parametrize("bad", ["", "Upper/Case", "a b", "x@sha256:short", "repo:"])
def test_malformed_references_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        _ref.parse(bad)


def test_chain_ids_follow_the_oci_rule() -> None:
    a, b = sha256(b"a"), sha256(b"b")
    assert chain_ids([a]) == [a]
    assert chain_ids([a, b]) == [a, sha256(f"{a} {b}".encode())]


def test_entrypoint_override_drops_the_image_command() -> None:
    config = {"config": {"Entrypoint": ["/init"], "Cmd": ["serve"], "Env": ["PATH=/bin", "A=1"]}}
    assert process_args(WorkloadSpec("w", "i"), config) == ["/init", "serve"]
    assert process_args(WorkloadSpec("w", "i", command=("x",)), config) == ["/init", "x"]
    assert process_args(WorkloadSpec("w", "i", entrypoint=("/bin/sh",)), config) == ["/bin/sh"]
    assert process_env(WorkloadSpec("w", "i", env={"A": "2"}), config) == ["PATH=/bin", "A=2"]
    with pytest.raises(EngineError, match="no command"):
        process_args(WorkloadSpec("w", "i"), {"config": {}})


def test_capabilities_add_drop_and_unknown() -> None:
    caps = capabilities(WorkloadSpec("w", "i", cap_add=("net_admin",), cap_drop=("CAP_NET_RAW",)))
    assert "CAP_NET_ADMIN" in caps and "CAP_NET_RAW" not in caps
    assert capabilities(WorkloadSpec("w", "i", cap_drop=("ALL",))) == []
    with pytest.raises(EngineError, match="unknown capability"):
        capabilities(WorkloadSpec("w", "i", cap_add=("NOT_A_CAP",)))


def test_spec_carries_limits_network_and_mounts() -> None:
    spec = WorkloadSpec("w", "i", command=("true",), cpu_limit=0.25, memory_limit_mib=32, host_network=True)
    out = build_spec(spec, {}, namespace="ns", mounts=[], host_files={}, cgroup_parent="/fw")
    assert out["linux"]["resources"]["cpu"] == {"quota": 25000, "period": 100000}
    assert out["linux"]["resources"]["memory"]["limit"] == 32 * 1024 * 1024
    assert {"type": "network"} not in out["linux"]["namespaces"]
    assert out["linux"]["cgroupsPath"] == "/fw/ns/w"
    bridged = build_spec(
        WorkloadSpec("w", "i", command=("true",)), {}, namespace="ns", mounts=[], host_files={}, cgroup_parent="/fw"
    )
    assert {"type": "network"} in bridged["linux"]["namespaces"] and bridged["hostname"] == "w"
    assert bridged["annotations"] == {}
    grouped = build_spec(spec, {}, namespace="ns", mounts=[], host_files={}, cgroup_parent="/fw", shim_group="g1")
    assert grouped["annotations"] == {"io.containerd.runc.v2.group": "g1"}


def test_the_entry_point_module_imports_no_grpc() -> None:
    code = (
        "import sys, fogwire_engine_containerd.plugin as p\n"
        "from fogwire.registry import FactoryRegistry\n"
        "r = FactoryRegistry('engine'); p.fogwire_register_engines(registry=r)\n"
        "assert r.get('edgelet') is r.get('containerd')\n"
        "print(sorted(m for m in sys.modules if m.startswith(('grpc', 'hpack', 'google.protobuf'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def _context(tmp_path: Any, options: dict[str, Any]) -> Any:
    from fogwire.engine import EngineContext

    return EngineContext("opts", tmp_path / "d", tmp_path / "r", tmp_path / "l", options=options)


def test_options_are_read_through_the_model(tmp_path: Any) -> None:
    from fogwire_engine_containerd.engine import ContainerdEngine

    engine = ContainerdEngine(
        _context(
            tmp_path,
            {"namespace": "ns1", "shimGroups": 2, "logMaxBytes": 1000, "embedded": False, "cniBridge": "br9"},
        )
    )
    assert (engine.namespace, engine.containers.shim_groups, engine.log_max_bytes, engine.embedded_mode) == (
        "ns1",
        2,
        1000,
        False,
    )
    assert engine.network.cni.bridge == "br9"
    assert engine.shim_group == "fogwire-ns1-opts"
    single = ContainerdEngine(_context(tmp_path, {"shimGroup": "one"}))
    assert (single.shim_group, single.containers.shim_groups) == ("one", 1)


def test_the_largest_reply_accepted_is_an_option_with_grpcs_default(tmp_path: Any) -> None:
    from fogwire_engine_containerd._client import Client
    from fogwire_engine_containerd.engine import ContainerdEngine

    assert ContainerdEngine(_context(tmp_path, {})).options.grpc_max_receive_bytes == 4 * 1024 * 1024
    engine = ContainerdEngine(_context(tmp_path, {"grpcMaxReceiveBytes": 16 * 1024 * 1024}))
    assert engine.options.grpc_max_receive_bytes == 16 * 1024 * 1024
    client = Client("unix:///nonexistent.sock", "ns", engine.max_receive_message_bytes)
    assert client.channel.max_receive_message_bytes == 16 * 1024 * 1024


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"shim_groups": 2}, "engineOptions.shim_groups: unknown field: it is spelled 'shimGroups'"),
        ({"logMaxBytes": "10M"}, "engineOptions.logMaxBytes: expected an integer ≥ 1, got '10M'"),
        ({"embedded": "always"}, "engineOptions.embedded: expected true, false or 'auto', got 'always'"),
        ({"shimGroups": 0}, "engineOptions.shimGroups: expected an integer ≥ 1, got 0"),
        ({"grpcMaxReceiveBytes": 0}, "engineOptions.grpcMaxReceiveBytes: expected an integer ≥ 1, got 0"),
        ({"snapshoter": "native"}, "engineOptions.snapshoter: unknown field (check the spelling)"),
    ],
)
def test_a_bad_option_is_an_error_naming_its_path(tmp_path: Any, options: dict[str, Any], message: str) -> None:
    from fogwire_engine_containerd.engine import ContainerdEngine

    from fogwire.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        ContainerdEngine(_context(tmp_path, options))
    assert str(caught.value) == f"engineOptions (containerd):DOC#1: {message}"
