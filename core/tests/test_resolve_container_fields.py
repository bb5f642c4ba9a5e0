"""Container fields beyond the basics: runAsUser and cpuSetCpus reach the spec; the unsupported ones are rejected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fogwire.convert import make_converter
from fogwire.engine import WorkloadSpec
from fogwire.model.desired import DesiredState, assemble
from fogwire.resolve import UNSUPPORTED_CONTAINER_FIELDS, ResolveError, config_hash, diff_fields, resolve


def state(*microservices: dict[str, Any]) -> DesiredState:
    docs: list[dict[str, Any]] = [
        {"apiVersion": "iofog.org/v3", "kind": "Registry", "spec": {"id": 5, "url": "r.example"}},
        {
            "apiVersion": "iofog.org/v3",
            "kind": "Application",
            "metadata": {"name": "app"},
            "spec": {"microservices": list(microservices)},
        },
    ]
    return assemble(make_converter(), docs, "app.yaml")


def ms(name: str = "web", **container: Any) -> dict[str, Any]:
    return {"name": name, "images": {"x86": "x86/img:1", "arm": "arm/img:1"}, "container": container}


def spec_of(**container: Any) -> WorkloadSpec:
    desired = state(ms(**container))
    return resolve(desired.microservices["web"], desired, "amd64").spec


def test_run_as_user_and_cpuset_map_onto_the_spec() -> None:
    spec = spec_of(runAsUser="1000:1000", cpuSetCpus="0-1")
    assert (spec.user, spec.cpuset_cpus) == ("1000:1000", "0-1")
    assert (spec_of(runAsUser="nobody").user, spec_of(runAsUser="1000").user) == ("nobody", "1000")


@pytest.mark.parametrize("value", [None, ""])
def test_unset_or_empty_keeps_the_image_user_and_every_cpu(value: str | None) -> None:
    spec = spec_of(runAsUser=value, cpuSetCpus=value)
    assert (spec.user, spec.cpuset_cpus) == (None, None)


def test_run_as_user_and_cpuset_change_the_hash() -> None:
    hashes = {
        config_hash(WorkloadSpec(name="w", image="i:1")),
        config_hash(WorkloadSpec(name="w", image="i:1", user="1000")),
        config_hash(WorkloadSpec(name="w", image="i:1", user="1000:1000")),
        config_hash(WorkloadSpec(name="w", image="i:1", cpuset_cpus="0")),
        config_hash(WorkloadSpec(name="w", image="i:1", cpuset_cpus="1")),
    }
    assert len(hashes) == 5
    old = WorkloadSpec(name="w", image="i:1")
    assert diff_fields(old, WorkloadSpec(name="w", image="i:1", user="1000", cpuset_cpus="0")) == [
        "user",
        "cpuset_cpus",
    ]


def test_hashes_of_workloads_labelled_before_the_fields_existed_still_match() -> None:
    # Values computed by fogwire before WorkloadSpec had user/cpuset_cpus: an agent
    # upgrade must not replace every running workload.
    assert config_hash(WorkloadSpec(name="w", image="i:1")) == "sha256:b4210a9a0c758b5b179c0123adae590d"
    spec = WorkloadSpec(name="w", image="i:1", env={"A": "1"}, cap_add=("NET_ADMIN",), memory_limit_mib=64)
    assert config_hash(spec) == "sha256:37ed4b5d287c5f279867df099073ae4e"


@pytest.mark.parametrize(("key", "value"), [("platform", "linux/arm64")])
def test_an_unsupported_field_rejects_the_microservice_with_its_path(key: str, value: Any) -> None:
    desired = state(ms("good"), ms("bad", **{key: value}))
    with pytest.raises(ResolveError) as caught:
        resolve(desired.microservices["bad"], desired, "amd64")
    message = str(caught.value)
    assert message.startswith(f"app.yaml:DOC#2: spec.microservices[1].container.{key}: fogwire doesn't support {key}")
    assert "'bad'" in message
    assert resolve(desired.microservices["good"], desired, "amd64").spec.name == "good"


def test_every_unsupported_model_field_is_checked() -> None:
    assert set(UNSUPPORTED_CONTAINER_FIELDS) == {"platform"}


def test_empty_unsupported_fields_are_fine() -> None:
    spec = spec_of(pidMode="", ipcMode=None, runtime="", platform=None, cdiDevices=[], annotations={})
    assert spec.name == "web"
    assert (spec.pid_mode, spec.ipc_mode, spec.runtime, spec.annotations, spec.devices) == (None, None, None, {}, ())


def test_an_unknown_cdi_device_rejects_the_microservice_with_its_path(tmp_path: Path) -> None:
    desired = state(ms("good"), ms("bad", cdiDevices=["nvidia.com/gpu=all"]))
    with pytest.raises(ResolveError) as caught:
        resolve(desired.microservices["bad"], desired, "amd64", cdi_spec_dirs=[str(tmp_path)])
    message = str(caught.value)
    assert message.startswith("app.yaml:DOC#2: spec.microservices[1].container.cdiDevices: no CDI device")
    assert "'nvidia.com/gpu=all'" in message and "'bad'" in message


def test_cdi_devices_join_the_spec_and_a_malformed_name_is_refused_by_path(tmp_path: Path) -> None:
    (tmp_path / "null.json").write_text(
        '{"cdiVersion": "0.6.0", "kind": "fogwire.test/null", "containerEdits": {"env": ["KIND=null"]},'
        ' "devices": [{"name": "one", "containerEdits": {"deviceNodes": [{"path": "/dev/n1", "hostPath": "/dev/null"}],'
        ' "mounts": [{"hostPath": "/srv", "containerPath": "/srv", "options": ["ro"]}],'
        ' "hooks": [{"hookName": "createRuntime", "path": "/bin/true"}]}}]}'
    )
    desired = state(ms(cdiDevices=["fogwire.test/null=one"], env=[{"key": "OWN", "value": "1"}]))
    spec = resolve(desired.microservices["web"], desired, "amd64", cdi_spec_dirs=[str(tmp_path)]).spec
    assert spec.env == {"KIND": "null", "OWN": "1"}
    assert [(d.host_path, d.container_path, d.permissions) for d in spec.devices] == [("/dev/null", "/dev/n1", "rwm")]
    assert [(m.source, m.target, m.read_only) for m in spec.mounts] == [("/srv", "/srv", True)]
    assert [(h.hook_name, h.path) for h in spec.hooks] == [("createRuntime", "/bin/true")]
    bad = state(ms("good"), ms("bad", cdiDevices=["fogwire.test/null=one", "null=one"]))
    with pytest.raises(ResolveError) as caught:
        resolve(bad.microservices["bad"], bad, "amd64", cdi_spec_dirs=[str(tmp_path)])
    assert str(caught.value).startswith(
        "app.yaml:DOC#2: spec.microservices[1].container.cdiDevices[1]: expected a qualified CDI device name"
    )


def test_host_namespaces_devices_annotations_and_runtime_reach_the_spec() -> None:
    spec = spec_of(
        pidMode="host",
        ipcMode="host",
        runtime="fogwire-test-runc",
        annotations={"io.example/role": "sensor"},
        devices=[
            {"hostPath": "/dev/ttyUSB0", "containerPath": "/dev/serial0", "permissions": "rw"},
            {"hostPath": "/dev/null"},
        ],
    )
    assert (spec.pid_mode, spec.ipc_mode, spec.runtime) == ("host", "host", "fogwire-test-runc")
    assert spec.annotations == {"io.example/role": "sensor"}
    assert [(d.host_path, d.container_path, d.permissions) for d in spec.devices] == [
        ("/dev/ttyUSB0", "/dev/serial0", "rw"),
        ("/dev/null", "/dev/null", "rwm"),
    ]


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        ({"pidMode": "container:x"}, "pidMode", "expected 'host'"),
        ({"devices": [{"hostPath": "/etc/passwd"}]}, "devices[0].hostPath", "expected a path under /dev"),
        (
            {"devices": [{"hostPath": "/dev/null", "permissions": "rx"}]},
            "devices[0].permissions",
            "expected letters of 'rwm'",
        ),
    ],
)
def test_bad_host_modes_and_devices_are_refused_by_path(fields: dict[str, Any], path: str, message: str) -> None:
    desired = state(ms(**fields))
    with pytest.raises(ResolveError) as caught:
        resolve(desired.microservices["web"], desired, "amd64")
    assert f"container.{path}: {message}" in str(caught.value)


@pytest.mark.parametrize("value", ["0", "0-1", "0,3", "0-2,5,7-8"])
def test_cpu_lists_are_accepted(value: str) -> None:
    assert spec_of(cpuSetCpus=value).cpuset_cpus == value


@pytest.mark.parametrize("value", ["a", "0-", "0;1", " 0", "-1"])
def test_a_malformed_cpu_list_is_rejected_with_its_path(value: str) -> None:
    desired = state(ms(cpuSetCpus=value))
    with pytest.raises(ResolveError, match=r"spec\.microservices\[0\]\.container\.cpuSetCpus: expected a CPU list"):
        resolve(desired.microservices["web"], desired, "amd64")
