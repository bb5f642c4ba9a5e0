"""Edgelet's own manifests (``apiVersion: edgelet.iofog.org/v1``), read as the ioFog documents they mean.

What ``edgelet deploy -f`` takes (edgelet's manifest-reference.md): a ``Microservice``
with one ``image`` and an optional ``registry`` id, and a ``Registry`` with its
credentials. They become an ioFog ``Microservice`` (the image for every
architecture) and ``Registry``, so they are validated, resolved and run exactly as
those are. Container fields edgelet has and fogwire can't honour yet are refused by
their path, never dropped; edgelet's other kinds (``Model``, ``RuntimeClass``,
``ControlPlane``) are skipped with a notice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fogwire.convert import pem_problem
from fogwire.errors import ConfigError, Problem

API_VERSION = "edgelet.iofog.org/v1"
"""The manifests' apiVersion."""

SKIPPED_KINDS = frozenset({"Model", "RuntimeClass", "ControlPlane"})
"""Edgelet kinds that mean nothing to a fogwire node: skipped with a notice."""

SHARED_CONTAINER_FIELDS = frozenset(
    {
        "hostNetworkMode",
        "isPrivileged",
        "runAsUser",
        "runtime",
        "cdiDevices",
        "platform",
        "ipcMode",
        "pidMode",
        "capAdd",
        "capDrop",
        "env",
        "extraHosts",
        "ports",
        "volumes",
        "commands",
        "cpuSetCpus",
        "memoryLimit",
        "annotations",
        "healthCheck",
        "logSize",
        "rootHostAccess",
        "devices",
    }
)
"""``spec.container`` fields an edgelet manifest shares with ioFog's container (same meaning)."""

EDGELET_ONLY_FIELDS = frozenset(
    {
        "runAsGroup",
        "readOnlyRootFilesystem",
        "tmpfs",
        "sysctls",
        "ulimits",
        "entrypoint",
        "workingDir",
        "cpus",
        "memoryReservation",
        "memorySwap",
        "shmSize",
    }
)
"""Edgelet container fields fogwire does not apply yet: refused by path when set."""


def translate(mapping: Mapping[str, Any], origin: str, index: int) -> dict[str, Any]:
    """The ioFog document an edgelet ``Microservice`` or ``Registry`` manifest means; :class:`ConfigError` otherwise."""
    kind = mapping.get("kind")
    metadata = mapping.get("metadata") or {}
    spec = mapping.get("spec")
    problems: list[Problem] = []
    unknown = sorted(set(mapping) - {"apiVersion", "kind", "metadata", "spec"})
    problems += [Problem(origin, index, key, "unknown field (check the spelling)") for key in unknown]
    if not isinstance(spec, Mapping):
        raise ConfigError([*problems, Problem(origin, index, "spec", f"expected a mapping, got {_shown(spec)}")])
    if not isinstance(metadata, Mapping):
        raise ConfigError(
            [*problems, Problem(origin, index, "metadata", f"expected a mapping, got {_shown(metadata)}")]
        )
    if kind == "Registry":
        if spec.get("type", "oci") != "oci":
            problems.append(
                Problem(
                    origin, index, "spec.type", f"fogwire pulls container images only ('oci'), got {spec['type']!r}"
                )
            )
        ca = spec.get("ca")
        if ca not in (None, ""):
            why = pem_problem(ca) if isinstance(ca, str) else f"expected PEM text of a CA certificate, got {_shown(ca)}"
            if why:
                problems.append(Problem(origin, index, "spec.ca", why))
        if problems:
            raise ConfigError(problems)
        registry = {key: value for key, value in spec.items() if key not in ("type", "ca")}
        if ca:
            # edgelet's engine trusts ``ca`` for this registry: what ioFog says with requiresCert and certificate
            registry.update(requiresCert=True, certificate=ca)
        return {"apiVersion": "iofog.org/v3", "kind": "Registry", "metadata": dict(metadata), "spec": registry}
    # Microservice
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        problems.append(Problem(origin, index, "metadata.name", "a microservice needs a name"))
    image = spec.get("image")
    if not isinstance(image, str) or not image:
        problems.append(Problem(origin, index, "spec.image", f"expected an image reference, got {_shown(image)}"))
    models = spec.get("models")
    if models and (not isinstance(models, Mapping) or models.get("items")):
        problems.append(Problem(origin, index, "spec.models", "fogwire doesn't bind model catalogs"))
    container = spec.get("container") or {}
    if not isinstance(container, Mapping):
        problems.append(Problem(origin, index, "spec.container", f"expected a mapping, got {_shown(container)}"))
        container = {}
    for key, value in container.items():
        if key in EDGELET_ONLY_FIELDS:
            if value not in (None, [], {}, "", False, 0):
                problems.append(
                    Problem(
                        origin,
                        index,
                        f"spec.container.{key}",
                        f"fogwire doesn't support {key} (an edgelet manifest field); remove it or leave it empty",
                    )
                )
        elif key == "cmd":
            pass
        elif key not in SHARED_CONTAINER_FIELDS:
            problems.append(Problem(origin, index, f"spec.container.{key}", "unknown field (check the spelling)"))
    unknown_spec = sorted(set(spec) - {"image", "registry", "models", "container", "schedule", "config"})
    problems += [Problem(origin, index, f"spec.{key}", "unknown field (check the spelling)") for key in unknown_spec]
    if problems:
        raise ConfigError(problems)
    shared = {key: value for key, value in container.items() if key in SHARED_CONTAINER_FIELDS}
    if "cmd" in container and "commands" not in container:
        shared["commands"] = container["cmd"]
    images: dict[str, Any] = {"x86": image, "arm": image}
    if spec.get("registry") is not None:
        images["registry"] = spec["registry"]
    translated: dict[str, Any] = {"name": name, "images": images, "container": shared}
    for key in ("schedule", "config"):
        if spec.get(key) is not None:
            translated[key] = spec[key]
    out_metadata = {key: value for key, value in metadata.items() if key in ("name", "labels", "annotations")}
    return {"apiVersion": "iofog.org/v3", "kind": "Microservice", "metadata": out_metadata, "spec": translated}


def _shown(value: Any) -> str:
    return "null" if value is None else repr(value)
