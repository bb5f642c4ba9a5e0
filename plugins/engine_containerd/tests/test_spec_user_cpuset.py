"""The OCI spec the plugin writes for ``WorkloadSpec.user`` and ``cpuset_cpus`` (no containerd needed)."""

from __future__ import annotations

from typing import Any

import pytest
from fogwire_engine_containerd._spec import build_spec, user_ids, workload_user
from fogwire_engine_containerd._users import needs_lookup

from fogwire.engine import WorkloadSpec


def spec_of(spec: WorkloadSpec, image_user: str = "") -> dict[str, Any]:
    config = {"config": {"Cmd": ["sh"], "User": image_user}}
    return build_spec(spec, config, namespace="ns", mounts=[], host_files={}, cgroup_parent="/fw")


def test_cpuset_goes_to_linux_resources_cpu_cpus_beside_the_quota() -> None:
    out = spec_of(WorkloadSpec(name="w", image="i", cpuset_cpus="0-1", cpu_limit=0.5))
    assert out["linux"]["resources"]["cpu"] == {"quota": 50_000, "period": 100_000, "cpus": "0-1"}
    alone = spec_of(WorkloadSpec(name="w", image="i", cpuset_cpus="0"))
    assert alone["linux"]["resources"]["cpu"] == {"cpus": "0"}
    assert "cpu" not in spec_of(WorkloadSpec(name="w", image="i"))["linux"]["resources"]


@pytest.mark.parametrize(
    ("image_user", "user", "effective", "ids", "lookup"),
    [
        ("", None, "", (0, 0), False),
        ("1000:1000", None, "1000:1000", (1000, 1000), False),
        ("nobody", "2000:3000", "2000:3000", (2000, 3000), False),
        ("1000:1000", "nobody", "nobody", (0, 0), True),
        ("1000:1000", "65534", "65534", (65534, 0), True),
        ("nobody", "", "nobody", (0, 0), True),
    ],
)
def test_the_spec_user_takes_the_image_users_place(
    image_user: str, user: str | None, effective: str, ids: tuple[int, int], lookup: bool
) -> None:
    spec = WorkloadSpec(name="w", image="i", user=user)
    config = {"config": {"User": image_user}}
    assert workload_user(spec, config) == effective
    assert needs_lookup(effective) is lookup
    assert user_ids(spec, config) == ids
    process_user = spec_of(spec, image_user)["process"]["user"]
    assert (process_user["uid"], process_user["gid"]) == ids
