"""CDI spec files: read as the CDI spec says, merged per device, bad files named by file and field path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from fogwire.cdi import (
    CdiDeviceNode,
    CdiError,
    CdiMount,
    ContainerEdits,
    load_registry,
    name_problem,
    resolve_devices,
    with_edits,
)
from fogwire.engine import DeviceMapping, OciHook, VolumeMount, WorkloadSpec


def write(folder: Path, name: str, spec: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(spec) if name.endswith(".json") else yaml.safe_dump(spec))
    return path


GPU = {
    "cdiVersion": "0.6.0",
    "kind": "vendor.example/gpu",
    "containerEdits": {
        "env": ["VENDOR_COMMON=1"],
        "mounts": [{"hostPath": "/usr/lib/vendor", "containerPath": "/lib/v", "options": ["ro"]}],
    },
    "devices": [
        {
            "name": "0",
            "containerEdits": {"deviceNodes": [{"path": "/dev/vgpu0", "hostPath": "/dev/null"}], "env": ["GPU=0"]},
        },
        {
            "name": "all",
            "containerEdits": {
                "deviceNodes": [{"path": "/dev/vgpu0"}, {"path": "/dev/vgpu1", "permissions": "rw"}],
                "hooks": [
                    {
                        "hookName": "createContainer",
                        "path": "/usr/bin/vendor-hook",
                        "args": ["vendor-hook", "x"],
                        "timeout": 5,
                    }
                ],
                "futureEdit": {"unknown": "fields are ignored"},
            },
        },
    ],
}


def test_json_and_yaml_specs_merge_spec_wide_and_device_edits(tmp_path: Path) -> None:
    write(tmp_path / "etc", "gpu.json", GPU)
    write(
        tmp_path / "etc",
        "serial.yaml",
        {
            "cdiVersion": "0.5.0",
            "kind": "vendor.example/serial",
            "devices": [{"name": "ttyS0", "containerEdits": {"deviceNodes": [{"path": "/dev/ttyS0"}]}}],
        },
    )
    edits = resolve_devices(["vendor.example/gpu=0", "vendor.example/serial=ttyS0"], [tmp_path / "etc"])
    assert edits.env == ("VENDOR_COMMON=1", "GPU=0")
    assert edits.device_nodes == (CdiDeviceNode("/dev/vgpu0", "/dev/null"), CdiDeviceNode("/dev/ttyS0"))
    assert edits.mounts == (CdiMount("/usr/lib/vendor", "/lib/v", read_only=True),)
    every = resolve_devices(["vendor.example/gpu=all"], [tmp_path / "etc"])
    assert every.device_nodes[1].permissions == "rw"
    assert every.hooks == (OciHook("createContainer", "/usr/bin/vendor-hook", ("vendor-hook", "x"), (), 5),)


def test_a_later_directory_overrides_a_device(tmp_path: Path) -> None:
    write(tmp_path / "etc", "gpu.json", GPU)
    newer = {**GPU, "containerEdits": {}, "devices": [{"name": "0", "containerEdits": {"env": ["GPU=runtime"]}}]}
    write(tmp_path / "run", "gpu.yaml", newer)
    registry = load_registry([tmp_path / "etc", tmp_path / "run", tmp_path / "missing"])
    assert registry["vendor.example/gpu=0"].env == ("GPU=runtime",)
    assert "vendor.example/gpu=all" in registry, "devices only the earlier directory defines stay"


def test_an_unknown_device_names_the_known_ones(tmp_path: Path) -> None:
    write(tmp_path, "gpu.json", GPU)
    with pytest.raises(
        CdiError, match=r"no CDI device 'vendor.example/gpu=7'.*known: vendor.example/gpu=0, vendor.example/gpu=all"
    ):
        resolve_devices(["vendor.example/gpu=7"], [tmp_path])


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"kind": "no-slash"}, "kind"),
        ({"cdiVersion": None}, "cdiVersion"),
        ({"devices": []}, "devices"),
        ({"devices": [{"name": "0", "containerEdits": {"env": ["NOEQUALS"]}}]}, "devices[0].containerEdits.env[0]"),
        (
            {"devices": [{"name": "0", "containerEdits": {"deviceNodes": [{"hostPath": "/dev/null"}]}}]},
            "devices[0].containerEdits.deviceNodes[0].path",
        ),
        (
            {"devices": [{"name": "0", "containerEdits": {"hooks": [{"hookName": "later", "path": "/x"}]}}]},
            "devices[0].containerEdits.hooks[0].hookName",
        ),
        ({"devices": [{"name": "0", "containerEdits": {"mounts": "/x"}}]}, "devices[0].containerEdits.mounts"),
        ({"devices": [{"name": "0"}]}, "devices[0].containerEdits"),
    ],
)
def test_a_bad_spec_names_its_file_and_field(tmp_path: Path, change: dict[str, Any], path: str) -> None:
    file = write(tmp_path, "bad.json", {**GPU, **change})
    with pytest.raises(CdiError) as error:
        load_registry([tmp_path])
    assert str(error.value).startswith(f"CDI spec {file}: {path}: expected"), error.value


def test_unreadable_yaml_is_named(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("kind: [unclosed\n")
    with pytest.raises(CdiError, match="broken.yaml: cannot be read"):
        load_registry([tmp_path])


def test_two_devices_of_one_spec_get_its_top_level_edits_once(tmp_path: Path) -> None:
    write(tmp_path, "gpu.json", GPU)
    edits = resolve_devices(["vendor.example/gpu=0", "vendor.example/gpu=all", "vendor.example/gpu=0"], [tmp_path])
    assert edits.env == ("VENDOR_COMMON=1", "GPU=0")
    assert edits.mounts == (CdiMount("/usr/lib/vendor", "/lib/v", read_only=True),)
    assert [n.path for n in edits.device_nodes] == ["/dev/vgpu0", "/dev/vgpu0", "/dev/vgpu1"]


def test_an_unknown_kind_is_named_as_such(tmp_path: Path) -> None:
    write(tmp_path, "gpu.json", GPU)
    with pytest.raises(
        CdiError, match=r"no CDI device 'other.example/gpu=0'.*no spec file defines kind 'other.example/gpu'"
    ):
        resolve_devices(["other.example/gpu=0"], [tmp_path])
    with pytest.raises(CdiError, match=r"known: none"):
        resolve_devices(["other.example/gpu=0"], [tmp_path / "absent"])


def test_only_json_and_yaml_files_are_specs(tmp_path: Path) -> None:
    write(tmp_path, "gpu.json", GPU)
    (tmp_path / "notes.txt").write_text("not a spec")
    (tmp_path / "old.yml").write_text("kind: [not read")
    assert sorted(load_registry([tmp_path])) == ["vendor.example/gpu=0", "vendor.example/gpu=all"]


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        ({"additionalGids": [44]}, "additionalGids"),
        ({"intelRdt": {"closID": "gold"}}, "intelRdt"),
        ({"netDevices": [{"hostInterfaceName": "eth1", "name": "net0"}]}, "netDevices"),
        ({"mounts": [{"hostPath": "tmpfs", "containerPath": "/scratch", "type": "tmpfs"}]}, "mounts[0].type"),
    ],
)
def test_edits_fogwire_cannot_make_refuse_the_device_naming_file_and_field(
    tmp_path: Path, edit: dict[str, Any], field: str
) -> None:
    spec = {
        **GPU,
        "devices": [
            {"name": "x", "containerEdits": {"env": ["A=1"], **edit}},
            {"name": "ok", "containerEdits": {"env": ["B=2"]}},
        ],
    }
    file = write(tmp_path, "gpu.yaml", spec)
    with pytest.raises(CdiError) as error:
        resolve_devices(["vendor.example/gpu=x"], [tmp_path])
    assert f"{file}: devices[0].containerEdits.{field}" in str(error.value)
    assert resolve_devices(["vendor.example/gpu=ok"], [tmp_path]).env == ("VENDOR_COMMON=1", "B=2")


def test_a_zero_additional_gid_and_bind_typed_mounts_are_fine(tmp_path: Path) -> None:
    mounts = [
        {"hostPath": "/a", "containerPath": "/a", "type": "bind"},
        {"hostPath": "/b", "containerPath": "/b", "type": "none", "options": ["rbind", "nosuid"]},
    ]
    spec = {**GPU, "devices": [{"name": "x", "containerEdits": {"additionalGids": [0], "mounts": mounts}}]}
    write(tmp_path, "gpu.yaml", spec)
    edits = resolve_devices(["vendor.example/gpu=x"], [tmp_path])
    assert [m.container_path for m in edits.mounts] == ["/lib/v", "/a", "/b"]


@pytest.mark.parametrize("name", ["nvidia.com/gpu=all", "vendor.example/class_1=dev:0", "a/b=0", "x.y/z.w=a-b.c"])
def test_qualified_names(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize(
    "name", ["gpu", "nvidia.com/gpu", "nvidia.com=0", "1vendor/gpu=0", "v/gpu-=0", "v/g=", "v/g=-x", "v/g=a b"]
)
def test_malformed_names(name: str) -> None:
    assert name_problem(name) == f"expected a qualified CDI device name (vendor.com/class=name), got {name!r}"


def test_edits_join_a_spec_replacing_what_sits_at_the_same_container_path() -> None:
    spec = WorkloadSpec(
        name="w",
        image="i:1",
        env={"GPU": "mine", "OWN": "1"},
        mounts=(VolumeMount("/srv/own", "/own"), VolumeMount("/srv/lib", "/lib/v")),
        devices=(DeviceMapping("/dev/zero", "/dev/vgpu0"), DeviceMapping("/dev/full", "/dev/full")),
        hooks=(OciHook("poststop", "/bin/true"),),
    )
    edits = ContainerEdits(
        env=("GPU=0", "VENDOR=1"),
        device_nodes=(CdiDeviceNode("/dev/vgpu0", "/dev/null", "rw"), CdiDeviceNode("/dev/ttyS0")),
        mounts=(CdiMount("/usr/lib/vendor", "/lib/v", read_only=True),),
        hooks=(OciHook("createRuntime", "/usr/bin/vendor-hook"),),
    )
    out = with_edits(spec, edits)
    assert out.env == {"GPU": "mine", "VENDOR": "1", "OWN": "1"}
    assert out.devices == (
        DeviceMapping("/dev/full", "/dev/full"),
        DeviceMapping("/dev/null", "/dev/vgpu0", "rw"),
        DeviceMapping("/dev/ttyS0", "/dev/ttyS0"),
    )
    assert out.mounts == (VolumeMount("/srv/own", "/own"), VolumeMount("/usr/lib/vendor", "/lib/v", read_only=True))
    assert out.hooks == (OciHook("poststop", "/bin/true"), OciHook("createRuntime", "/usr/bin/vendor-hook"))
