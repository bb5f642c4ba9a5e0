"""The Docker-API helpers docker and podman share: create arguments, pull errors, port conflicts."""

from __future__ import annotations

from fogwire import dockerapi
from fogwire.engine import Health, PortMapping, RegistryAuth, RestartPolicy, WorkloadSpec
from fogwire.errors import EngineError, ImageNotFoundError, PortInUseError, RegistryAuthError

AUTH = RegistryAuth("reg.example:5000", "me", "s3cret")


def test_create_arguments_map_the_spec_both_sdks_spell_alike() -> None:
    spec = WorkloadSpec(
        name="web",
        image="img",
        env={"A": "1"},
        ports=(PortMapping(80, 8080), PortMapping(53, 53, "udp", host_ip="127.0.0.1")),
        extra_hosts={"iofog": "10.0.0.1"},
        restart=RestartPolicy("on-failure", 3),
        user="1000:1000",
        cpuset_cpus="0-1",
        memory_limit_mib=64,
        cap_add=("NET_ADMIN",),
        entrypoint=("/bin/sh",),
    )
    arguments = dockerapi.create_arguments(spec, {"io.fogwire.managed": "a"})
    assert arguments == {
        "name": "web",
        "environment": {"A": "1"},
        "labels": {"io.fogwire.managed": "a"},
        "entrypoint": ["/bin/sh"],
        "ports": {"80/tcp": [8080], "53/udp": [("127.0.0.1", 53)]},
        "extra_hosts": {"iofog": "10.0.0.1"},
        "restart_policy": {"Name": "on-failure", "MaximumRetryCount": 3},
        "user": "1000:1000",
        "cpuset_cpus": "0-1",
        "mem_limit": 64 * 1024 * 1024,
        "memswap_limit": 64 * 1024 * 1024,
        "cap_add": ["NET_ADMIN"],
    }
    host = dockerapi.create_arguments(WorkloadSpec(name="h", image="i", host_network=True, ports=spec.ports), {})
    assert host["network_mode"] == "host" and "ports" not in host


def test_pull_errors_are_classified_and_the_password_never_shows() -> None:
    ref = "reg.example:5000/app:1"
    fix = "list {server} as insecure"
    denied = "pull access denied for app, repository does not exist or may require 'docker login'"
    assert isinstance(dockerapi.pull_error(denied, ref, AUTH, daemon="d", plain_http_fix=fix), ImageNotFoundError)
    refused = dockerapi.pull_error(denied, ref, AUTH, daemon="d", plain_http_fix=fix, auth_first=True)
    assert isinstance(refused, RegistryAuthError)
    leaked = dockerapi.pull_error("401 Unauthorized for me:s3cret", ref, AUTH, daemon="d", plain_http_fix=fix)
    assert isinstance(leaked, RegistryAuthError) and "s3cret" not in str(leaked)
    plain = dockerapi.pull_error(
        "http: server gave HTTP response to HTTPS client", ref, None, daemon="podman", plain_http_fix=fix
    )
    assert type(plain) is EngineError
    assert "podman wants HTTPS" in str(plain) and "list 'reg.example:5000' as insecure" in str(plain)
    assert "app-401f" in str(
        dockerapi.pull_error("manifest unknown", "r/app-401f:1", None, daemon="d", plain_http_fix=fix)
    )


def test_port_conflict_names_the_published_ports() -> None:
    inspected = {"HostConfig": {"PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}}}
    conflict = dockerapi.port_conflict("web", inspected, "listen tcp :8080: bind: address already in use")
    assert isinstance(conflict, PortInUseError)
    assert "(*:8080)" in str(conflict)
    assert dockerapi.port_conflict("web", inspected, "no such file") is None


def test_health_and_image_ids() -> None:
    assert dockerapi.health_of("healthy") is Health.HEALTHY
    assert dockerapi.health_of("weird") is Health.NONE and dockerapi.health_of(None) is Health.NONE
    assert dockerapi.image_id("abc") == "sha256:abc" and dockerapi.image_id("sha256:abc") == "sha256:abc"
    assert dockerapi.image_id("") is None
