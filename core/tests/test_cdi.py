"""CDI spec files: read as the CDI spec says, merged per device, bad files named by file and field path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from fogwire.cdi import CdiDeviceNode, CdiError, CdiMount, load_registry, resolve_devices
from fogwire.engine import OciHook


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
                "intelRdt": {"closID": "ignored"},
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
