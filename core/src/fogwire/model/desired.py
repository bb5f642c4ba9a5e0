"""ioFog documents assembled into one desired state, with cross-document checks.

With the ``file`` source the input is the *whole* desired state, so every
reference (catalog id, registry id) must resolve inside it; the built-in
registries ``remote`` (1) and ``local``/``from_cache`` (2) always exist.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import cattrs

from fogwire.convert import PositiveInt, require_mapping, structure
from fogwire.errors import ConfigError, Problem
from fogwire.model.iofog import (
    DOCUMENT_CLASSES,
    Application,
    CatalogItem,
    CatalogItemSpec,
    Kind,
    Microservice,
    MicroserviceSpec,
    Registry,
    RegistrySpec,
)

REMOTE_REGISTRY_ID = 1
"""The built-in public registry (Docker Hub)."""
LOCAL_REGISTRY_ID = 2
"""The built-in ``from_cache`` registry: never pull, use what is present."""
REGISTRY_ALIASES = {"remote": REMOTE_REGISTRY_ID, "local": LOCAL_REGISTRY_ID, "from_cache": LOCAL_REGISTRY_ID}
"""Registry names accepted wherever a registry id is."""

BUILTIN_REGISTRIES = {
    REMOTE_REGISTRY_ID: RegistrySpec(url="registry.hub.docker.com", id=PositiveInt(REMOTE_REGISTRY_ID)),
    LOCAL_REGISTRY_ID: RegistrySpec(url="from_cache", id=PositiveInt(LOCAL_REGISTRY_ID)),
}


@attrs.frozen
class DesiredMicroservice:
    """One microservice of the desired state, with the document it came from."""

    name: str
    application: str | None
    spec: MicroserviceSpec
    origin: str
    index: int
    path: str
    """Where its spec sits in its document, e.g. ``spec`` or ``spec.microservices[1]``."""


@attrs.frozen
class DesiredState:
    """Everything the agent should make true, keyed for lookups."""

    microservices: Mapping[str, DesiredMicroservice] = attrs.field(factory=dict)
    catalog: Mapping[int, CatalogItemSpec] = attrs.field(factory=dict)
    registries: Mapping[int, RegistrySpec] = attrs.field(factory=lambda: dict(BUILTIN_REGISTRIES))


def registry_id(ref: int | str | None, default: int = REMOTE_REGISTRY_ID) -> int | None:
    """The numeric id of a registry reference, or ``None`` if the name is unknown."""
    if ref is None:
        return default
    if isinstance(ref, int):
        return ref
    if ref.isdigit():
        return int(ref)
    return REGISTRY_ALIASES.get(ref)


def parse_document(converter: cattrs.Converter, data: Any, origin: str, index: int) -> Any:
    """Structure one raw document by its ``kind``, raising :class:`ConfigError` with paths."""
    mapping = require_mapping(data, origin, index, "")
    kind_value = mapping.get("kind")
    try:
        kind = Kind(kind_value)
    except ValueError:
        choices = ", ".join(repr(k.value) for k in Kind)
        got = "nothing" if kind_value is None else repr(kind_value)
        raise ConfigError([Problem(origin, index, "kind", f"expected one of {choices}, got {got}")]) from None
    return structure(converter, mapping, DOCUMENT_CLASSES[kind], origin, index)


def assemble(
    converter: cattrs.Converter, documents: Sequence[Any], origin: str, indices: Sequence[int] | None = None
) -> DesiredState:
    """Turn raw documents into a :class:`DesiredState`, or raise one :class:`ConfigError` with every problem.

    Nothing is returned unless every document is valid: there is no partial result.
    """
    problems: list[Problem] = []
    parsed: list[tuple[int, Any]] = []
    numbers = list(indices) if indices is not None else list(range(1, len(documents) + 1))
    for number, raw in zip(numbers, documents, strict=True):
        try:
            parsed.append((number, parse_document(converter, raw, origin, number)))
        except ConfigError as error:
            problems.extend(error.problems)

    microservices: dict[str, DesiredMicroservice] = {}
    catalog: dict[int, CatalogItemSpec] = {}
    catalog_index: dict[int, int] = {}
    registries: dict[int, RegistrySpec] = dict(BUILTIN_REGISTRIES)

    def add_microservice(spec: MicroserviceSpec, name: str | None, app: str | None, index: int, path: str) -> None:
        if not name:
            problems.append(Problem(origin, index, f"{path}.name", "a microservice needs a name"))
            return
        if name in microservices:
            other = microservices[name]
            problems.append(
                Problem(origin, index, f"{path}.name", f"duplicate microservice {name!r} (also DOC#{other.index})")
            )
            return
        microservices[name] = DesiredMicroservice(name, app, spec, origin, index, path)

    for index, document in parsed:
        if isinstance(document, Application):
            app_name = document.metadata.name or document.spec.name
            for position, spec in enumerate(document.spec.microservices):
                add_microservice(spec, spec.name, app_name, index, f"spec.microservices[{position}]")
        elif isinstance(document, Microservice):
            add_microservice(
                document.spec, document.metadata.name or document.spec.name, document.spec.application, index, "spec"
            )
        elif isinstance(document, CatalogItem):
            item = document.spec
            if item.id is None:
                problems.append(Problem(origin, index, "spec.id", "a catalog item needs an id to be referenced"))
            elif item.id in catalog:
                problems.append(Problem(origin, index, "spec.id", f"duplicate catalog item id {item.id}"))
            else:
                catalog[item.id] = item
                catalog_index[item.id] = index
            if not item.x86 and not item.arm:
                problems.append(Problem(origin, index, "spec", "a catalog item needs an image: 'x86' and/or 'arm'"))
            if registry_id(item.registry) is None:
                problems.append(
                    Problem(
                        origin, index, "spec.registry", f"expected 'remote', 'local' or an id, got {item.registry!r}"
                    )
                )
        elif isinstance(document, Registry):
            reg = document.spec
            if reg.id is None:
                problems.append(
                    Problem(origin, index, "spec.id", "a registry needs an id (3 or more) to be referenced")
                )
            elif reg.id in BUILTIN_REGISTRIES:
                problems.append(Problem(origin, index, "spec.id", f"registry ids 1 and 2 are built in; got {reg.id}"))
            elif reg.id in registries:
                problems.append(Problem(origin, index, "spec.id", f"duplicate registry id {reg.id}"))
            else:
                registries[reg.id] = reg

    ports: dict[tuple[int, str], str] = {}
    for ms in microservices.values():
        images = ms.spec.images
        where = f"{ms.path}.images"
        if images.catalog_id is None and not images.x86 and not images.arm:
            problems.append(Problem(origin, ms.index, where, "expected 'catalogId', or an 'x86' and/or 'arm' image"))
        if images.catalog_id is not None and images.catalog_id not in catalog:
            problems.append(
                Problem(
                    origin, ms.index, f"{where}.catalogId", f"no CatalogItem with id {images.catalog_id} in this input"
                )
            )
        if images.registry is not None:
            rid = registry_id(images.registry)
            if rid is None:
                problems.append(
                    Problem(
                        origin,
                        ms.index,
                        f"{where}.registry",
                        f"expected 'remote', 'local' or an id, got {images.registry!r}",
                    )
                )
            elif rid not in registries:
                problems.append(
                    Problem(origin, ms.index, f"{where}.registry", f"no Registry with id {rid} in this input")
                )
        for position, port in enumerate(ms.spec.container.ports):
            key = (port.external, port.protocol.value)
            if key in ports:
                problems.append(
                    Problem(
                        origin,
                        ms.index,
                        f"{ms.path}.container.ports[{position}].external",
                        f"host port {port.external}/{port.protocol.value} is already published by {ports[key]!r}",
                    )
                )
            else:
                ports[key] = ms.name
    for item_id, item in catalog.items():
        rid = registry_id(item.registry)
        if rid is not None and rid not in registries:
            problems.append(
                Problem(origin, catalog_index[item_id], "spec.registry", f"no Registry with id {rid} in this input")
            )
    if problems:
        raise ConfigError(problems)
    return DesiredState(microservices, catalog, registries)
