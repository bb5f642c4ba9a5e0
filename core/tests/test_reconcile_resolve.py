"""Resolving desired microservices into workload specs: images by arch/catalog, registries, fields, hashes."""

from __future__ import annotations

from typing import Any

import pytest

from fogwire.convert import make_converter
from fogwire.engine import SPEC_HASH_LABEL, PullPolicy, WorkloadSpec
from fogwire.model.desired import DesiredState, assemble
from fogwire.resolve import (
    CONFIG_HASH_LABEL,
    DIGEST_LABEL,
    ResolveError,
    config_hash,
    diff_fields,
    image_field,
    resolve,
)


def state(*microservices: dict[str, Any], extra: list[dict[str, Any]] | None = None) -> DesiredState:
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "iofog.org/v3",
            "kind": "Application",
            "metadata": {"name": "app"},
            "spec": {"microservices": list(microservices)},
        }
    ]
    return assemble(make_converter(), docs + (extra or []), "test.yaml")


def ms(name: str = "web", **container: Any) -> dict[str, Any]:
    return {"name": name, "images": {"x86": "x86/img:1", "arm": "arm/img:1"}, "container": container}


@pytest.mark.parametrize(("arch", "field"), [("amd64", "x86"), ("arm64", "arm"), ("arm/v7", "arm"), ("arm", "arm")])
def test_architecture_picks_the_image_field(arch: str, field: str) -> None:
    desired = state(ms())
    r = resolve(desired.microservices["web"], desired, arch)
    assert image_field(arch) == field
    assert r.spec.image == f"{field}/img:1"


def test_unknown_architecture_is_a_clear_error() -> None:
    desired = state(ms())
    with pytest.raises(ResolveError, match="riscv64.*x86 is amd64"):
        resolve(desired.microservices["web"], desired, "riscv64")


def test_missing_image_for_this_arch_names_the_field() -> None:
    desired = state({"name": "web", "images": {"x86": "only/x86:1"}})
    with pytest.raises(ResolveError, match="no 'arm' image"):
        resolve(desired.microservices["web"], desired, "arm64")


def test_catalog_item_supplies_image_and_registry() -> None:
    catalog = {
        "apiVersion": "iofog.org/v3",
        "kind": "CatalogItem",
        "spec": {"id": 17, "x86": "amd64/alpine:3", "arm": "arm32v6/alpine:3", "registry": "local"},
    }
    desired = state({"name": "cat", "images": {"catalogId": 17}}, extra=[catalog])
    r = resolve(desired.microservices["cat"], desired, "arm/v7")
    assert r.spec.image == "arm32v6/alpine:3"
    assert r.policy is PullPolicy.NEVER
    assert r.auth is None


def test_registries_remote_local_and_credentials() -> None:
    registry = {
        "apiVersion": "iofog.org/v3",
        "kind": "Registry",
        "spec": {"id": 3, "url": "http://127.0.0.1:5001", "username": "u", "password": "s3cret", "insecure": True},
    }
    desired = state(
        {"name": "a", "images": {"x86": "i:1", "registry": "remote"}},
        {"name": "b", "images": {"x86": "i:1", "registry": "from_cache"}},
        {"name": "c", "images": {"x86": "i:1", "registry": 3}},
        extra=[registry],
    )
    a, b, c = (resolve(desired.microservices[n], desired, "amd64") for n in "abc")
    assert (a.policy, a.auth) == (PullPolicy.PULL, None)
    assert (b.policy, b.auth) == (PullPolicy.NEVER, None)
    assert c.policy is PullPolicy.PULL
    assert c.auth is not None
    assert (c.auth.server, c.auth.username, c.auth.password, c.auth.insecure) == ("127.0.0.1:5001", "u", "s3cret", True)
    assert "s3cret" not in repr(c)


def test_container_fields_map_onto_the_spec() -> None:
    desired = state(
        ms(
            env=[{"key": "PORT", "value": 8080}, {"key": "MODE", "value": "x"}],
            ports=[{"internal": 80, "external": 18080}, {"internal": 53, "external": 5353, "protocol": "udp"}],
            volumes=[
                {"hostDestination": "/srv/www", "containerDestination": "/www", "accessMode": "ro"},
                {"hostDestination": "data", "containerDestination": "/data", "type": "volume"},
            ],
            commands=["httpd", "-f"],
            extraHosts=["db:10.0.0.5", {"name": "cache", "address": "10.0.0.6"}],
            rootHostAccess=True,
            capAdd=["NET_ADMIN"],
            capDrop=["MKNOD"],
            memoryLimit=64,
            healthCheck={"test": ["CMD", "true"], "interval": 5, "timeout": 2, "retries": 1},
        )
    )
    spec = resolve(desired.microservices["web"], desired, "amd64").spec
    assert dict(spec.env) == {"PORT": "8080", "MODE": "x"}
    assert [(p.container_port, p.host_port, p.protocol, p.host_ip) for p in spec.ports] == [
        (80, 18080, "tcp", ""),
        (53, 5353, "udp", ""),
    ]
    assert [(m.source, m.target, m.kind, m.read_only) for m in spec.mounts] == [
        ("/srv/www", "/www", "bind", True),
        ("data", "/data", "volume", False),
    ]
    assert spec.command == ("httpd", "-f")
    assert dict(spec.extra_hosts) == {"db": "10.0.0.5", "cache": "10.0.0.6"}
    assert spec.host_network and spec.privileged
    assert (spec.cap_add, spec.cap_drop, spec.memory_limit_mib) == (("NET_ADMIN",), ("MKNOD",), 64)
    assert spec.health_check is not None
    assert (spec.health_check.test, spec.health_check.interval_s, spec.health_check.retries) == (
        ("CMD", "true"),
        5.0,
        1,
    )
    assert spec.restart.name == "no"


def test_host_network_mode_alone_is_not_privileged() -> None:
    desired = state(ms(hostNetworkMode=True))
    spec = resolve(desired.microservices["web"], desired, "amd64").spec
    assert spec.host_network and not spec.privileged


def test_config_hash_is_stable_and_sensitive() -> None:
    base = state(ms(env=[{"key": "A", "value": "1"}]))
    same = state(ms(env=[{"key": "A", "value": "1"}]))
    other = state(ms(env=[{"key": "A", "value": "2"}]))
    h = [resolve(d.microservices["web"], d, "amd64").config_hash for d in (base, same, other)]
    assert h[0] == h[1] != h[2]
    r0 = resolve(base.microservices["web"], base, "amd64")
    r2 = resolve(other.microservices["web"], other, "amd64")
    assert diff_fields(r0.spec, r2.spec) == ["env"]


def test_every_field_that_matters_changes_the_hash() -> None:
    spec = WorkloadSpec(name="w", image="i:1")
    variants = [
        WorkloadSpec(name="w", image="i:2"),
        WorkloadSpec(name="w", image="i:1", command=("x",)),
        WorkloadSpec(name="w", image="i:1", host_network=True),
        WorkloadSpec(name="w", image="i:1", privileged=True),
        WorkloadSpec(name="w", image="i:1", memory_limit_mib=10),
        WorkloadSpec(name="w", image="i:1", env={"A": "1"}),
    ]
    hashes = {config_hash(spec)} | {config_hash(v) for v in variants}
    assert len(hashes) == len(variants) + 1


def test_labelled_spec_carries_hashes_and_digest() -> None:
    desired = state(ms())
    r = resolve(desired.microservices["web"], desired, "amd64")
    with_digest = r.labelled("sha256:abc")
    without = r.labelled(None)
    assert with_digest.labels[CONFIG_HASH_LABEL] == without.labels[CONFIG_HASH_LABEL] == r.config_hash
    assert with_digest.labels[SPEC_HASH_LABEL] != without.labels[SPEC_HASH_LABEL]
    assert with_digest.labels[DIGEST_LABEL] == "sha256:abc"
    assert DIGEST_LABEL not in without.labels
    assert with_digest.labels["io.fogwire.application"] == "app"
