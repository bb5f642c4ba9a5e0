"""``fogwire validate``: every kind of bad input gives its exact ``FILE:DOC#N: path: message`` line and exit 2.

Valid input exits 0; nothing of an invalid input is ever partially accepted.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from fogwire.config import parse_agent_config
from fogwire.convert import make_converter
from fogwire.errors import ConfigError
from fogwire.model.desired import assemble

REPO = Path(__file__).resolve().parents[2]
SEED_002_EXAMPLE = Path(__file__).parent / "data" / "seed_002_debugger.yaml"
"""Seed 002's debugger example, verbatim (the YAML its ``echo`` writes to /tmp/debugger.yaml)."""

MS = """\
apiVersion: iofog.org/v3
kind: Microservice
metadata: {name: web}
spec:
  images: {x86: 'nginx:1'}
"""


def ms(name: str = "web", images: str = "{x86: 'nginx:1'}", extra: str = "") -> str:
    """A valid Microservice document, optionally with more lines under ``spec``."""
    text = MS.replace("{name: web}", f"{{name: {name}}}").replace("{x86: 'nginx:1'}", images)
    return text + textwrap.indent(textwrap.dedent(extra), "  ")


# (id, file text, expected problem lines with {f} for the file name)
BAD_INPUTS: list[tuple[str, str, list[str]]] = [
    (
        "unsupported-container-fields",
        ms(extra="container:\n  pidMode: container:other\n  platform: linux/arm64\n  cpuSetCpus: all\n"),
        [
            "{f}:DOC#1: spec.container.platform: fogwire doesn't support platform (the image is chosen by the "
            "device's architecture (images.x86 / images.arm)); remove it or leave it empty (microservice 'web' is not run)",
            "{f}:DOC#1: spec.container.pidMode: expected 'host' (or 'private', the default), got 'container:other' "
            "(microservice 'web' is not run)",
            "{f}:DOC#1: spec.container.cpuSetCpus: expected a CPU list such as '0', '0-2' or '0,3', got 'all' "
            "(microservice 'web' is not run)",
        ],
    ),
    (
        "cdi-device-names",
        ms(extra="container:\n  cdiDevices: [vendor.example/gpu=0, gpu0, 'vendor.example/gpu=']\n"),
        [
            "{f}:DOC#1: spec.container.cdiDevices[1]: expected a qualified CDI device name (vendor.com/class=name), "
            "got 'gpu0' (microservice 'web' is not run)",
            "{f}:DOC#1: spec.container.cdiDevices[2]: expected a qualified CDI device name (vendor.com/class=name), "
            "got 'vendor.example/gpu=' (microservice 'web' is not run)",
        ],
    ),
    (
        "port-as-name",
        ms(extra="container:\n  ports:\n    - {internal: 80, external: 8080}\n    - {internal: 81, external: http}\n"),
        ["{f}:DOC#1: spec.container.ports[1].external: expected an integer 1-65535, got 'http'"],
    ),
    (
        "port-0-and-70000",
        ms(extra="container:\n  ports: [{internal: 0, external: 70000}]\n"),
        [
            "{f}:DOC#1: spec.container.ports[0].internal: expected an integer 1-65535, got 0",
            "{f}:DOC#1: spec.container.ports[0].external: expected an integer 1-65535, got 70000",
        ],
    ),
    (
        "port-as-numeric-string",
        ms(extra="container:\n  ports: [{internal: 80, external: '8080'}]\n"),
        ["{f}:DOC#1: spec.container.ports[0].external: expected an integer 1-65535, got '8080'"],
    ),
    ("typo-top-level", ms() + "metdata: {}\n", ["{f}:DOC#1: metdata: unknown field (check the spelling)"]),
    ("typo-in-spec", ms(extra="agnet: {name: a}\n"), ["{f}:DOC#1: spec.agnet: unknown field (check the spelling)"]),
    (
        "typo-in-container",
        ms(extra="container: {hostNetwrokMode: true}\n"),
        ["{f}:DOC#1: spec.container.hostNetwrokMode: unknown field (check the spelling)"],
    ),
    (
        "typo-in-port",
        ms(extra="container:\n  ports: [{internal: 80, external: 80, protocl: tcp}]\n"),
        ["{f}:DOC#1: spec.container.ports[0].protocl: unknown field (check the spelling)"],
    ),
    (
        "typos-inside-an-application",
        "apiVersion: datasance.com/v3\nkind: Application\nmetadata: {name: a}\nspec:\n  microservices:\n"
        "    - name: m\n      images: {x86: b}\n      container: {ports: [{internal: 1, external: 2, extrnal: 3}]}\n"
        "  routes: [{name: r, from: m, to: n, via: x}]\n",
        [
            "{f}:DOC#1: spec.microservices[0].container.ports[0].extrnal: unknown field (check the spelling)",
            "{f}:DOC#1: spec.routes[0].via: unknown field (check the spelling)",
        ],
    ),
    (
        "missing-kind",
        "apiVersion: iofog.org/v3\nspec: {}\n",
        ["{f}:DOC#1: kind: expected one of 'Application', 'Microservice', 'CatalogItem', 'Registry', got nothing"],
    ),
    (
        "unknown-kind",
        "apiVersion: iofog.org/v3\nkind: Deployment\nspec: {}\n",
        ["{f}:DOC#1: kind: expected one of 'Application', 'Microservice', 'CatalogItem', 'Registry', got 'Deployment'"],
    ),
    (
        "wrong-api-version",
        ms().replace("iofog.org/v3", "iofog.org/v2"),
        ["{f}:DOC#1: apiVersion: expected one of 'iofog.org/v3', 'datasance.com/v3', got 'iofog.org/v2'"],
    ),
    (
        "missing-api-version",
        ms().replace("apiVersion: iofog.org/v3\n", ""),
        ["{f}:DOC#1: apiVersion: required field is missing"],
    ),
    (
        "env-value-mapping",
        ms(extra="container:\n  env: [{key: A, value: {x: 1}}]\n"),
        ["{f}:DOC#1: spec.container.env[0].value: expected a string or number, got a mapping"],
    ),
    (
        "ports-not-a-list",
        ms(extra="container:\n  ports: {internal: 80, external: 80}\n"),
        ["{f}:DOC#1: spec.container.ports: expected a list, got a mapping"],
    ),
    (
        "commands-a-string",
        ms(extra="container:\n  commands: 'sleep 10'\n"),
        ["{f}:DOC#1: spec.container.commands: expected a list, got 'sleep 10'"],
    ),
    (
        "access-mode-rx",
        ms(extra="container:\n  volumes: [{hostDestination: /a, containerDestination: /b, accessMode: rx}]\n"),
        ["{f}:DOC#1: spec.container.volumes[0].accessMode: expected one of 'rw', 'ro', got 'rx'"],
    ),
    (
        "volume-missing-destination",
        ms(extra="container:\n  volumes: [{hostDestination: /a}]\n"),
        ["{f}:DOC#1: spec.container.volumes[0].containerDestination: required field is missing"],
    ),
    (
        "protocol-sctp",
        ms(extra="container:\n  ports: [{internal: 80, external: 80, protocol: sctp}]\n"),
        ["{f}:DOC#1: spec.container.ports[0].protocol: expected one of 'tcp', 'udp', got 'sctp'"],
    ),
    (
        "memory-limit-0",
        ms(extra="container: {memoryLimit: 0}\n"),
        ["{f}:DOC#1: spec.container.memoryLimit: expected an integer ≥ 1, got 0"],
    ),
    (
        "memory-limit-negative",
        ms(extra="container: {memoryLimit: -5}\n"),
        ["{f}:DOC#1: spec.container.memoryLimit: expected an integer ≥ 1, got -5"],
    ),
    (
        "boolean-as-yes-string",
        ms(extra="container: {isPrivileged: 'yes'}\n"),
        ["{f}:DOC#1: spec.container.isPrivileged: expected a boolean (true or false), got 'yes'"],
    ),
    (
        "catalog-id-nowhere",
        ms(images="{catalogId: 42}"),
        ["{f}:DOC#1: spec.images.catalogId: no CatalogItem 42 in this input or in the 'iofog' catalog (catalogFamily)"],
    ),
    (
        "registry-id-nowhere",
        ms(images="{x86: 'nginx:1', registry: 7}"),
        ["{f}:DOC#1: spec.images.registry: no Registry with id 7 in this input"],
    ),
    (
        "registry-unknown-name",
        ms(images="{x86: 'nginx:1', registry: dockerhub}"),
        [
            "{f}:DOC#1: spec.images.registry: expected 'remote', 'local', a registry id or a Registry's url,"
            " got 'dockerhub'"
        ],
    ),
    (
        "duplicate-microservice-names",
        ms() + "---\n" + ms(),
        ["{f}:DOC#2: spec.name: duplicate microservice 'web' (also DOC#1)"],
    ),
    (
        "same-host-port-twice",
        ms(extra="container:\n  ports: [{internal: 80, external: 8080}]\n")
        + "---\n"
        + ms("api", extra="container:\n  ports: [{internal: 81, external: 8080}]\n"),
        ["{f}:DOC#2: spec.container.ports[0].external: host port 8080/tcp is already published by 'web'"],
    ),
    (
        "catalog-item-without-image",
        "apiVersion: iofog.org/v3\nkind: CatalogItem\nspec: {id: 10, name: x}\n",
        ["{f}:DOC#1: spec: a catalog item needs an image: 'x86' and/or 'arm'"],
    ),
    (
        "catalog-item-registry-nowhere",
        "apiVersion: iofog.org/v3\nkind: Registry\nspec: {id: 3, url: r.example}\n---\n"
        "apiVersion: iofog.org/v3\nkind: CatalogItem\nspec: {id: 17, x86: 'a:1', registry: 9}\n",
        ["{f}:DOC#2: spec.registry: no Registry with id 9 in this input"],
    ),
    (
        "registry-with-builtin-id",
        "apiVersion: iofog.org/v3\nkind: Registry\nspec: {id: 1, url: registry.example}\n",
        ["{f}:DOC#1: spec.id: registry ids 1 and 2 are built in; got 1"],
    ),
    (
        "registry-url-a-number",
        '{"apiVersion": "iofog.org/v3", "kind": "Registry", "spec": {"id": 3, "url": 5}}\n',
        ["{f}:DOC#1: spec.url: expected a string, got 5"],
    ),
    (
        "microservice-without-image-source",
        ms(images="{}"),
        ["{f}:DOC#1: spec.images: expected 'catalogId', or an 'x86' and/or 'arm' image"],
    ),
    (
        "images-null",
        ms(images=""),
        ["{f}:DOC#1: spec.images: expected a mapping, got null"],
    ),
    (
        "invalid-yaml",
        ms(extra="container: [\n  ports: : x\n"),
        ["{f}:DOC#0: line 7: not valid YAML: expected the node content, but found ':'"],
    ),
    ("empty-file", "", ["{f}:DOC#0: no documents in file"]),
    ("only-separators", "---\n---\n", ["{f}:DOC#0: no documents in file"]),
    ("scalar-document", "hello\n", ["{f}:DOC#1: expected a mapping, got 'hello'"]),
    (
        "bad-current-profile",
        "currentProfile: prod\nprofiles:\n  default: {containerEngine: docker}\n",
        ["{f}:DOC#1: currentProfile: no profile named 'prod' (profiles: default)"],
    ),
    (
        "agent-config-typo",
        "currentProfile: default\nprofiles:\n  default: {containerEngin: docker}\n",
        ["{f}:DOC#1: profiles.default.containerEngin: unknown field (check the spelling)"],
    ),
    (
        "agent-config-negative-pruning",
        "profiles:\n  default: {pruningFrequency: -1}\n",
        ["{f}:DOC#1: profiles.default.pruningFrequency: expected an integer ≥ 0, got -1"],
    ),
]


def _write(tmp_path: Path, text: str, name: str = "input.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("text", "expected"), [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_exact_lines_and_exit_2(
    tmp_path: Path, run_cli: Callable[..., Any], isolated_paths: Path, text: str, expected: list[str]
) -> None:
    path = _write(tmp_path, text)
    result = run_cli("validate", "-f", str(path))
    assert result.code == 2
    assert result.err.splitlines() == [line.format(f=path) for line in expected]
    assert result.out == ""


def test_there_are_at_least_twenty_distinct_kinds_of_bad_input() -> None:
    assert len({case[0] for case in BAD_INPUTS}) == len(BAD_INPUTS) >= 20


def _seed_debugger_example() -> str:
    return SEED_002_EXAMPLE.read_text(encoding="utf-8")


def test_seed_002_example_names_hostnetworkmode_ture(
    tmp_path: Path, run_cli: Callable[..., Any], isolated_paths: Path
) -> None:
    text = _seed_debugger_example()
    assert "hostNetworkMode: ture" in text
    path = _write(tmp_path, text, "debugger.yaml")
    result = run_cli("validate", "-f", str(path))
    assert result.code == 2
    # Only the typo: the seed's Application (its metadata's `name` not indented, no spec yet) is read as meant.
    assert result.err.splitlines() == [
        f"{path}:DOC#2: spec.container.hostNetworkMode: expected a boolean (true or false), got 'ture'",
    ]


def test_seed_002_examples_with_the_typo_fixed_validate_and_plan(
    tmp_path: Path, run_cli: Callable[..., Any], isolated_paths: Path
) -> None:
    """Seed 002 as written (its typo fixed): the debugger on catalog item 4, a CatalogItem and a Registry without ids."""
    text = _seed_debugger_example().replace("hostNetworkMode: ture", "hostNetworkMode: true")
    catalog_item = (
        "---\napiVersion: 'iofog.org/v3'\nkind: CatalogItem\nmetadata:\n  name: 'my-multiplatform-microservice'\n"
        "spec:\n  description: 'Alpine Linux'\n  x86: 'amd64/alpine:latest'\n  arm: 'arm32v6/alpine:latest'\n"
        "  registry: 'remote'\n"
    )
    registry = (
        "---\napiVersion: iofog.org/v3\nkind: Registry\nspec:\n  url: registry.hub.docker.com\n  username: john\n"
        "  password: q1u45ic9kst563art\n  email: user@domain.com\n"
    )
    path = _write(tmp_path, text + catalog_item + registry, "seed-002.yaml")
    result = run_cli("validate", "-f", str(path))
    assert (result.code, result.err) == (0, ""), result.err
    documents = list(yaml.safe_load_all(path.read_text()))
    desired = assemble(make_converter(), documents, "seed-002.yaml")
    debugger = desired.microservices["debugger"]
    assert debugger.spec.images.catalog_id == 4
    assert desired.catalog[4].x86 == "ghcr.io/eclipse-iofog/node-debugger:latest"  # what the operator's controller has
    (item_id,) = [i for i, item in desired.catalog.items() if item.name == "my-multiplatform-microservice"]
    assert item_id >= 1000  # a local id, the same on every run
    assert assemble(make_converter(), documents, "again.yaml").catalog[item_id].name == "my-multiplatform-microservice"
    assert any(r.username == "john" and i >= 1000 for i, r in desired.registries.items())
    # The datasance family's item 4 is Datasance's debugger.
    datasance = assemble(make_converter(), documents, "seed-002.yaml", catalog_family="datasance")
    assert datasance.catalog[4].x86 == "ghcr.io/datasance/node-debugger:latest"
    with pytest.raises(ConfigError, match="no CatalogItem 4 in this input"):
        assemble(make_converter(), documents, "seed-002.yaml", catalog_family="none")


def test_seed_002_example_with_only_the_typo_fixed_is_valid_given_its_catalog_item(
    tmp_path: Path, run_cli: Callable[..., Any], isolated_paths: Path
) -> None:
    documents = list(yaml.safe_load_all(_seed_debugger_example()))
    microservice = documents[1]
    microservice["spec"]["container"]["hostNetworkMode"] = True
    catalog = {
        "apiVersion": "iofog.org/v3",
        "kind": "CatalogItem",
        "metadata": {"name": "Debug"},
        "spec": {"id": 4, "name": "Debug", "x86": "ghcr.io/eclipse-iofog/node-debugger:latest"},
    }
    path = _write(tmp_path, yaml.safe_dump_all([microservice, catalog]), "fixed.yaml")
    result = run_cli("validate", "-f", str(path))
    assert (result.code, result.err) == (0, "")
    assert result.out == f"valid: {path}\n"


def test_documents_for_the_controller_and_other_nodes_are_skipped_with_one_notice_each(
    tmp_path: Path, run_cli: Callable[..., Any], isolated_paths: Path
) -> None:
    others = [
        {
            "apiVersion": "iofog.org/v3",
            "kind": kind,
            "metadata": {"name": f"x-{kind.lower()}"},
            "spec": {"any": "thing"},
        }
        for kind in ("Agent", "LocalAgent", "AgentConfig", "ControlPlane", "Controller", "Namespace", "Route")
    ]
    others += [
        {"apiVersion": "datasance.com/v3", "kind": kind, "metadata": {"name": "y"}, "spec": {}}
        for kind in ("EdgeResource", "ApplicationTemplate")
    ]
    others.append(  # a Volume for named agents, and this node has none: skipped with its notice
        {
            "apiVersion": "iofog.org/v3",
            "kind": "Volume",
            "metadata": {"name": "v"},
            "spec": {"source": "/tmp", "destination": "/tmp", "agents": ["edge-9"]},
        }
    )
    good = yaml.safe_load(ms("good"))
    path = _write(tmp_path, yaml.safe_dump_all([good, *others]), "fleet.yaml")
    result = run_cli("validate", "-f", str(path))
    assert result.code == 0, result.err
    notices = result.err.splitlines()
    assert len(notices) == len(others)
    assert notices[0] == f"notice: {path}:DOC#2: Agent 'x-agent' is for the controller or other nodes; skipped here"
    assert all("skipped here" in n for n in notices)
    # a kind nobody knows is still an error with its path
    unknown = {"apiVersion": "iofog.org/v3", "kind": "Agnet", "spec": {}}
    path = _write(tmp_path, yaml.safe_dump_all([good, unknown]), "typo.yaml")
    result = run_cli("validate", "-f", str(path))
    assert result.code == 2
    assert f"{path}:DOC#2: kind: expected one of" in result.err and "'Agnet'" in result.err


def test_a_microservice_for_another_agent_is_validated_and_not_run_here() -> None:
    mine = yaml.safe_load(ms("mine", extra="agent: {name: edge-1}\n"))
    theirs = yaml.safe_load(ms("theirs", extra="agent: {name: edge-2}\n"))
    anywhere = yaml.safe_load(ms("anywhere"))
    desired = assemble(make_converter(), [mine, theirs, anywhere], "fleet.yaml", agent_name="edge-1")
    assert sorted(desired.microservices) == ["anywhere", "mine"]
    assert desired.elsewhere == {"theirs": "edge-2"}
    assert any("edge-2" in n for n in desired.notices)
    # still validated: a bad field of a microservice for another agent is refused
    broken = yaml.safe_load(ms("broken", extra="agent: {name: edge-2}\ncontainer: {hostNetworkMode: ture}\n"))
    with pytest.raises(ConfigError, match="hostNetworkMode"):
        assemble(make_converter(), [mine, broken], "fleet.yaml", agent_name="edge-1")
    # no agentName configured: everything runs here
    assert sorted(assemble(make_converter(), [mine, theirs], "fleet.yaml").microservices) == ["mine", "theirs"]


def test_agent_config_containerd_refused_on_macos() -> None:
    data = {"currentProfile": "default", "profiles": {"default": {"containerEngine": "containerd"}}}
    with pytest.raises(ConfigError) as caught:
        parse_agent_config(data, "config.yaml", platform="darwin")
    assert [str(p) for p in caught.value.problems] == [
        "config.yaml:DOC#1: profiles.default.containerEngine: engine 'containerd' does not run on darwin; "
        "expected one of docker, podman"
    ]
    alias = {"profiles": {"default": {"containerEngine": "edgelet"}}}
    with pytest.raises(ConfigError, match="engine 'containerd' does not run on win32"):
        parse_agent_config(alias, "config.yaml", platform="win32")


def test_agent_config_engines_per_os() -> None:
    linux = parse_agent_config(
        {"profiles": {"default": {}, "edge": {"containerEngine": "edgelet"}}}, "c", platform="linux"
    )
    assert linux.profiles["default"].container_engine == "containerd"
    assert linux.profiles["edge"].container_engine == "containerd"
    mac = parse_agent_config({"profiles": {"default": {}}}, "c", platform="darwin")
    assert mac.profile.container_engine == "docker"
    podman = parse_agent_config({"profiles": {"default": {"containerEngine": "podman"}}}, "c", platform="darwin")
    assert podman.profile.container_engine == "podman"
    third_party = parse_agent_config({"profiles": {"default": {"containerEngine": "acme"}}}, "c", platform="darwin")
    assert third_party.profile.container_engine == "acme"


VALID = """\
apiVersion: {api}
kind: Registry
spec: {{id: 3, url: 127.0.0.1:5001, username: fogwire, password: fogwire-test-secret, private: true}}
---
apiVersion: {api}
kind: CatalogItem
metadata: {{name: busybox}}
spec: {{id: 17, name: busybox, x86: '127.0.0.1:5001/fogwire/busybox:1', registry: 3}}
---
apiVersion: {api}
kind: Application
metadata: {{name: shop}}
spec:
  microservices:
    - name: front
      images: {{catalogId: 17}}
      container:
        ports: [{{internal: 80, external: 8080}}, {{internal: 53, external: 8080, protocol: udp}}]
        env: [{{key: PORT, value: 8080}}, {{key: DEBUG, value: true}}]
        volumes: [{{hostDestination: /srv/front, containerDestination: /data, accessMode: ro}}]
        hostNetworkMode: false
        memoryLimit: 64
    - name: back
      images: {{x86: '127.0.0.1:5001/fogwire/busybox:2', registry: 3}}
      container:
        commands: [sleep, '3600']
        extraHosts: ['db:10.0.0.5', {{name: cache, address: 10.0.0.6}}]
        cdiDevices: [vendor.example/serial=ttyS0]
"""


@pytest.mark.parametrize("api", ["iofog.org/v3", "datasance.com/v3"])
def test_valid_input_exits_0(tmp_path: Path, run_cli: Callable[..., Any], isolated_paths: Path, api: str) -> None:
    path = _write(tmp_path, VALID.format(api=api))
    result = run_cli("validate", "-f", str(path))
    assert (result.code, result.err, result.out) == (0, "", f"valid: {path}\n")
    json_result = run_cli("validate", "-f", str(path), "--json")
    assert json_result.code == 0
    assert json.loads(json_result.out) == {"valid": True, "notices": [], "problems": []}


def test_valid_input_assembles_into_the_desired_state() -> None:
    documents = list(yaml.safe_load_all(VALID.format(api="datasance.com/v3")))
    state = assemble(make_converter(), documents, "valid.yaml")
    assert sorted(state.microservices) == ["back", "front"]
    front = state.microservices["front"]
    assert (front.application, front.index, front.path) == ("shop", 3, "spec.microservices[0]")
    assert [e.value for e in front.spec.container.env] == ["8080", "true"]
    assert state.catalog[17].x86 == "127.0.0.1:5001/fogwire/busybox:1"
    assert state.registries[3].username == "fogwire"
    assert "fogwire-test-secret" not in repr(state.registries[3])
    assert sorted(state.registries) == [1, 2, 3]
    assert state.microservices["back"].spec.container.extra_hosts[0].address == "10.0.0.5"
    assert state.microservices["back"].spec.container.cdi_devices == ("vendor.example/serial=ttyS0",)


def test_json_output_shape(tmp_path: Path, run_cli: Callable[..., Any], isolated_paths: Path) -> None:
    path = _write(tmp_path, ms(extra="container:\n  ports: [{internal: 80, external: http}]\n"))
    result = run_cli("validate", "-f", str(path), "--json")
    assert result.code == 2
    assert json.loads(result.out) == {
        "valid": False,
        "notices": [],
        "problems": [
            {
                "document": str(path),
                "index": 1,
                "path": "spec.container.ports[0].external",
                "message": "expected an integer 1-65535, got 'http'",
            }
        ],
    }


def test_every_problem_in_a_file_is_reported(tmp_path: Path, run_cli: Callable[..., Any], isolated_paths: Path) -> None:
    text = (
        ms(images="{catalogId: 9}", extra="container: {hostNetworkMode: ture, memoryLimit: 0}\nflavour: x\n")
        + "---\n"
        + "apiVersion: iofog.org/v3\nkind: Registry\nspec: {id: 2, url: r}\n"
        + "---\n"
        + ms("api", images="{x86: a, registry: 12}")
        + "---\n"
        + "kind: Application\napiVersion: iofog.org/v3\nspec: {microservices: [{images: {x86: b}}]}\n"
    )
    path = _write(tmp_path, text)
    result = run_cli("validate", "-f", str(path))
    assert result.code == 2
    assert result.err.splitlines() == [
        f"{path}:DOC#1: spec.container.hostNetworkMode: expected a boolean (true or false), got 'ture'",
        f"{path}:DOC#1: spec.container.memoryLimit: expected an integer ≥ 1, got 0",
        f"{path}:DOC#1: spec.flavour: unknown field (check the spelling)",
        f"{path}:DOC#2: spec.id: registry ids 1 and 2 are built in; got 2",
        f"{path}:DOC#4: spec.microservices[0].name: a microservice needs a name",
        f"{path}:DOC#3: spec.images.registry: no Registry with id 12 in this input",
    ]


def test_several_files_each_report_their_own_problems(
    tmp_path: Path, run_cli: Callable[..., Any], isolated_paths: Path
) -> None:
    good = _write(tmp_path, ms(), "good.yaml")
    bad = _write(tmp_path, ms(extra="container: {memoryLimit: -1}\n"), "bad.yaml")
    missing = tmp_path / "missing.yaml"
    result = run_cli("validate", "-f", str(good), "-f", str(bad), "-f", str(missing))
    assert result.code == 2
    assert result.err.splitlines() == [
        f"{bad}:DOC#1: spec.container.memoryLimit: expected an integer ≥ 1, got -1",
        f"{missing}:DOC#0: cannot read: No such file or directory",
    ]
    assert run_cli("validate", "-f", str(good)).code == 0


def test_validate_without_file_is_a_usage_error(run_cli: Callable[..., Any], isolated_paths: Path) -> None:
    result = run_cli("validate")
    assert result.code == 2
    assert "the following arguments are required: -f/--file" in result.err


def test_nothing_is_partially_accepted() -> None:
    good = yaml.safe_load(ms("good"))
    bad = yaml.safe_load(ms("bad", extra="container: {hostNetworkMode: ture}\n"))
    converter = make_converter()
    outcome: list[Any] = []
    with pytest.raises(ConfigError) as caught:
        outcome.append(assemble(converter, [good, bad], "mixed.yaml"))
    assert outcome == []
    assert [str(p) for p in caught.value.problems] == [
        "mixed.yaml:DOC#2: spec.container.hostNetworkMode: expected a boolean (true or false), got 'ture'"
    ]
    # A broken reference is enough too: both documents are structurally fine.
    dangling = yaml.safe_load(ms("dangling", images="{catalogId: 42}"))
    with pytest.raises(ConfigError, match="DOC#2: spec.images.catalogId: no CatalogItem 42 in this input"):
        outcome.append(assemble(converter, [good, dangling], "mixed.yaml"))
    assert outcome == []
    assert sorted(assemble(converter, [good], "good.yaml").microservices) == ["good"]
