"""Edgelet's manifests (edgelet.iofog.org/v1) read as the ioFog documents they mean."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from fogwire.convert import make_converter
from fogwire.errors import ConfigError
from fogwire.model.desired import assemble
from fogwire.resolve import resolve, unsupported_fields

MANIFEST = """
apiVersion: edgelet.iofog.org/v1
kind: Registry
spec:
  id: 10
  type: oci
  url: registry.example.com:5000
  private: true
  username: robot
  password: s3cret
---
apiVersion: edgelet.iofog.org/v1
kind: Microservice
metadata:
  name: sensor
  namespace: edgelet
spec:
  image: registry.example.com:5000/acme/sensor:1.2
  registry: 10
  schedule: 1
  config: {interval: 5}
  container:
    hostNetworkMode: false
    env: [{key: MODE, value: edge}]
    ports: [{internal: 8080, external: 18080, protocol: tcp}]
    cmd: ["/sensor", "--verbose"]
    memoryLimit: 64
    cpuSetCpus: "0"
    healthCheck: {test: ["CMD", "true"], interval: 10, timeout: 2, retries: 3}
---
apiVersion: edgelet.iofog.org/v1
kind: Model
metadata: {name: llama}
spec: {repo: org/name, registry: 3}
"""


def test_an_edgelet_microservice_and_registry_become_the_ioFog_documents_they_mean() -> None:
    desired = assemble(make_converter(), list(yaml.safe_load_all(MANIFEST)), "edgelet.yaml")
    sensor = desired.microservices["sensor"]
    assert sensor.spec.config == {"interval": 5}
    assert unsupported_fields(sensor) == []
    resolved = resolve(sensor, desired, "amd64")
    spec = resolved.spec
    assert spec.image == "registry.example.com:5000/acme/sensor:1.2"
    assert spec.command == ("/sensor", "--verbose")
    assert spec.env == {"MODE": "edge"}
    assert [(p.container_port, p.host_port) for p in spec.ports] == [(8080, 18080)]
    assert spec.memory_limit_mib == 64 and spec.cpuset_cpus == "0"
    assert resolved.auth is not None and resolved.auth.username == "robot"
    assert resolve(sensor, desired, "arm64").spec.image == spec.image  # one image for every architecture
    assert desired.notices == (
        "edgelet.yaml:DOC#3: edgelet Model 'llama' is for the controller or other nodes; skipped here",
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"tmpfs": [{"containerPath": "/tmp"}]},
            "edgelet.yaml:DOC#1: spec.container.tmpfs: fogwire doesn't support tmpfs (an edgelet manifest field); "
            "remove it or leave it empty",
        ),
        ({"hostNetwork": True}, "edgelet.yaml:DOC#1: spec.container.hostNetwork: unknown field (check the spelling)"),
        ({"memoryLimit": "lots"}, "edgelet.yaml:DOC#1: spec.container.memoryLimit: expected"),
    ],
)
def test_what_fogwire_cant_honour_is_refused_by_its_path(change: dict[str, object], expected: str) -> None:
    manifest = {
        "apiVersion": "edgelet.iofog.org/v1",
        "kind": "Microservice",
        "metadata": {"name": "web"},
        "spec": {"image": "nginx:1", "container": change},
    }
    with pytest.raises(ConfigError) as caught:
        assemble(make_converter(), [manifest], "edgelet.yaml")
    assert str(caught.value.problems[0]).startswith(expected)


def test_an_edgelet_manifest_of_another_kind_or_without_an_image_is_refused() -> None:
    bad = [
        {"apiVersion": "edgelet.iofog.org/v1", "kind": "Application", "spec": {}},
        {"apiVersion": "edgelet.iofog.org/v1", "kind": "Microservice", "metadata": {"name": "x"}, "spec": {}},
        {"apiVersion": "edgelet.iofog.org/v1", "kind": "Registry", "spec": {"url": "huggingface.co", "type": "hf"}},
    ]
    with pytest.raises(ConfigError) as caught:
        assemble(make_converter(), bad, "edgelet.yaml")
    assert [str(p) for p in caught.value.problems] == [
        "edgelet.yaml:DOC#1: kind: expected one of 'Microservice', 'Registry', 'Model', 'RuntimeClass', "
        "'ControlPlane', got 'Application'",
        "edgelet.yaml:DOC#2: spec.image: expected an image reference, got null",
        "edgelet.yaml:DOC#3: spec.type: fogwire pulls container images only ('oci'), got 'hf'",
    ]


def test_an_edgelet_registry_ca_is_the_registrys_own_ca(tmp_path: Path) -> None:
    """edgelet's ``ca`` means what ioFog's requiresCert and certificate mean; a bad one is refused at spec.ca."""
    from fogwire.testing.pki import make_pki

    ca_pem = make_pki(tmp_path).ca_cert.read_text()
    manifest: dict[str, Any] = {
        "apiVersion": "edgelet.iofog.org/v1",
        "kind": "Registry",
        "spec": {"id": 7, "url": "registry.example.com:5443", "ca": ca_pem},
    }
    desired = assemble(make_converter(), [manifest], "edgelet.yaml")
    registry = desired.registries[7]
    assert (registry.requires_cert, registry.certificate) == (True, ca_pem)

    manifest["spec"] = {"url": "registry.example.com:5443", "ca": "/etc/ssl/ca.pem"}
    with pytest.raises(ConfigError) as caught:
        assemble(make_converter(), [manifest], "edgelet.yaml")
    assert str(caught.value.problems[0]).startswith(
        "edgelet.yaml:DOC#1: spec.ca: expected PEM text of a CA certificate"
    )
