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
from fogwire.model import edgelet
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
    Volume,
    VolumeSpec,
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
    """Everything the agent should make true, keyed for lookups.

    ``elsewhere`` holds the microservices the documents place on another agent
    (name → that agent): validated, never run here. ``notices`` say what was
    accepted and left alone (documents for the controller or other nodes).
    ``volumes`` are the iofogctl Volumes that name this node's agent: their folders
    are copied into place before the workloads run.
    """

    microservices: Mapping[str, DesiredMicroservice] = attrs.field(factory=dict)
    catalog: Mapping[int, CatalogItemSpec] = attrs.field(factory=dict)
    registries: Mapping[int, RegistrySpec] = attrs.field(factory=lambda: dict(BUILTIN_REGISTRIES))
    elsewhere: Mapping[str, str] = attrs.field(factory=dict)
    notices: tuple[str, ...] = ()
    volumes: tuple[VolumeSpec, ...] = ()


OTHER_KINDS = frozenset(
    {
        "Agent",
        "LocalAgent",
        "RemoteAgent",
        "AgentConfig",
        "ControlPlane",
        "KubernetesControlPlane",
        "LocalControlPlane",
        "RemoteControlPlane",
        "Controller",
        "Namespace",
        "Route",
        "EdgeResource",
        "ApplicationTemplate",
    }
)
"""Kinds iofogctl and potctl files hold for the controller and other nodes: accepted, skipped with a notice."""

LOCAL_ID_BASE = 1000
"""Ids given locally to a CatalogItem or Registry that has none start here (clear of a controller's seeds)."""


@attrs.frozen
class SkippedDocument:
    """A document of one of :data:`OTHER_KINDS`: nothing on this node acts on it."""

    kind: str
    name: str | None


def local_id(key: str, taken: set[int]) -> int:
    """A stable id for ``key`` (a name or URL): the same across runs, clear of ``taken``."""
    import zlib

    candidate = LOCAL_ID_BASE + zlib.crc32(key.encode()) % 1_000_000
    while candidate in taken:
        candidate += 1
    return candidate


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
    if mapping.get("apiVersion") == edgelet.API_VERSION:
        if kind_value in edgelet.SKIPPED_KINDS:
            metadata = mapping.get("metadata")
            name = metadata.get("name") if isinstance(metadata, dict) else None
            return SkippedDocument(f"edgelet {kind_value}", str(name) if name is not None else None)
        if kind_value not in ("Microservice", "Registry"):
            kinds = "'Microservice', 'Registry', 'Model', 'RuntimeClass', 'ControlPlane'"
            got = "nothing" if kind_value is None else repr(kind_value)
            raise ConfigError([Problem(origin, index, "kind", f"expected one of {kinds}, got {got}")])
        mapping = edgelet.translate(mapping, origin, index)
    if kind_value == "Volume":
        return structure(converter, mapping, Volume, origin, index)
    if isinstance(kind_value, str) and kind_value in OTHER_KINDS:
        metadata = mapping.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else mapping.get("name")
        return SkippedDocument(kind_value, str(name) if name is not None else None)
    if (
        isinstance(kind_value, str)
        and kind_value in (k.value for k in Kind)
        and mapping.get("metadata") is None
        and isinstance(mapping.get("name"), str)
    ):
        # "metadata:" with its "name:" not indented under it (seed 002's Application): what was meant is plain
        mapping = {**{k: v for k, v in mapping.items() if k != "name"}, "metadata": {"name": mapping["name"]}}
    if kind_value == Kind.APPLICATION.value and "spec" in mapping and mapping["spec"] is None:
        mapping = {**mapping, "spec": {}}  # an Application declared before its microservices are (seed 002)
    try:
        kind = Kind(kind_value)
    except ValueError:
        choices = ", ".join(repr(k.value) for k in Kind)
        got = "nothing" if kind_value is None else repr(kind_value)
        raise ConfigError([Problem(origin, index, "kind", f"expected one of {choices}, got {got}")]) from None
    return structure(converter, mapping, DOCUMENT_CLASSES[kind], origin, index)


def assemble(
    converter: cattrs.Converter,
    documents: Sequence[Any],
    origin: str,
    indices: Sequence[int] | None = None,
    *,
    catalog_family: str = "iofog",
    agent_name: str | None = None,
) -> DesiredState:
    """Turn raw documents into a :class:`DesiredState`, or raise one :class:`ConfigError` with every problem.

    Nothing is returned unless every document is valid: there is no partial result.
    ``catalog_family`` names the built-in catalog ``catalogId`` refers to
    (:mod:`fogwire.model.catalogs`); ``agent_name`` is this node's agent name: a
    microservice whose ``agent.name`` differs is validated and kept out of the
    microservices to run (``elsewhere``). CatalogItems and Registries without an id
    get a stable local one, and are referred to by name (``catalogId: <name>``) or
    URL (``registry: <url>``).
    """
    from fogwire.model.catalogs import CATALOGS

    problems: list[Problem] = []
    notices: list[str] = []
    parsed: list[tuple[int, Any]] = []
    numbers = list(indices) if indices is not None else list(range(1, len(documents) + 1))
    for number, raw in zip(numbers, documents, strict=True):
        try:
            parsed.append((number, parse_document(converter, raw, origin, number)))
        except ConfigError as error:
            problems.extend(error.problems)

    microservices: dict[str, DesiredMicroservice] = {}
    elsewhere: dict[str, str] = {}
    catalog: dict[int, CatalogItemSpec] = dict(CATALOGS.get(catalog_family, {}))
    catalog_index: dict[int, int] = {}
    catalog_names: dict[str, int] = {}
    registries: dict[int, RegistrySpec] = dict(BUILTIN_REGISTRIES)
    registry_urls: dict[str, int] = {}
    unnamed: list[tuple[int, str, Any]] = []  # (document index, kind, spec) of items without an id

    def add_microservice(spec: MicroserviceSpec, name: str | None, app: str | None, index: int, path: str) -> None:
        if not name:
            problems.append(Problem(origin, index, f"{path}.name", "a microservice needs a name"))
            return
        if name in microservices or name in elsewhere:
            other = microservices.get(name)
            where = f" (also DOC#{other.index})" if other else ""
            problems.append(Problem(origin, index, f"{path}.name", f"duplicate microservice {name!r}{where}"))
            return
        wanted = spec.agent.name if spec.agent is not None else None
        if wanted and agent_name and wanted != agent_name:
            elsewhere[name] = wanted
            return
        microservices[name] = DesiredMicroservice(name, app, spec, origin, index, path)

    volumes: list[VolumeSpec] = []
    for index, document in parsed:
        if isinstance(document, Volume):
            volume = document.spec
            what = f"Volume {document.metadata.name or volume.name or volume.destination!r}"
            if volume.permissions and not _octal_mode(volume.permissions):
                problems.append(
                    Problem(
                        origin,
                        index,
                        "spec.permissions",
                        f"expected an octal mode such as '644', got {volume.permissions!r}",
                    )
                )
            elif agent_name and agent_name in volume.agents:
                volumes.append(attrs.evolve(volume, name=volume.name or document.metadata.name))
            else:
                why = (
                    f"for agents {', '.join(volume.agents) or 'none'}, not {agent_name!r}"
                    if agent_name
                    else "for named agents, and this node has no agentName"
                )
                notices.append(f"{origin}:DOC#{index}: {what} is {why}; skipped here")
        elif isinstance(document, SkippedDocument):
            what = f"{document.kind} {document.name!r}" if document.name else document.kind
            notices.append(f"{origin}:DOC#{index}: {what} is for the controller or other nodes; skipped here")
        elif isinstance(document, Application):
            app_name = document.metadata.name or document.spec.name
            for position, spec in enumerate(document.spec.microservices):
                add_microservice(spec, spec.name, app_name, index, f"spec.microservices[{position}]")
        elif isinstance(document, Microservice):
            add_microservice(
                document.spec, document.metadata.name or document.spec.name, document.spec.application, index, "spec"
            )
        elif isinstance(document, CatalogItem):
            item = document.spec
            name = document.metadata.name or item.name
            if item.id is None:
                if not name:
                    problems.append(
                        Problem(origin, index, "metadata.name", "a catalog item without an id needs a name")
                    )
                else:
                    unnamed.append((index, "catalog", attrs.evolve(item, name=name)))
            elif item.id in catalog_index:
                problems.append(Problem(origin, index, "spec.id", f"duplicate catalog item id {item.id}"))
            else:
                catalog[item.id] = attrs.evolve(item, name=name)
                catalog_index[item.id] = index
                if name:
                    catalog_names[name] = item.id
            if not item.x86 and not item.arm:
                problems.append(Problem(origin, index, "spec", "a catalog item needs an image: 'x86' and/or 'arm'"))
        elif isinstance(document, Registry):
            reg = document.spec
            if reg.id is None:
                unnamed.append((index, "registry", reg))
            elif reg.id in BUILTIN_REGISTRIES:
                problems.append(Problem(origin, index, "spec.id", f"registry ids 1 and 2 are built in; got {reg.id}"))
            elif reg.id in registries:
                problems.append(Problem(origin, index, "spec.id", f"duplicate registry id {reg.id}"))
            else:
                registries[reg.id] = reg
                registry_urls.setdefault(reg.url, reg.id)

    # Items without an id: a stable local id each, after the numbered ones took theirs.
    for index, kind, spec in unnamed:
        if kind == "catalog":
            if spec.name in catalog_names:
                problems.append(Problem(origin, index, "metadata.name", f"duplicate catalog item {spec.name!r}"))
                continue
            item_id = local_id(f"catalog:{spec.name}", set(catalog))
            catalog[item_id] = attrs.evolve(spec, id=PositiveInt(item_id))
            catalog_index[item_id] = index
            catalog_names[spec.name] = item_id
        else:
            if spec.url in registry_urls:
                problems.append(Problem(origin, index, "spec.url", f"duplicate registry {spec.url!r}"))
                continue
            rid = local_id(f"registry:{spec.url}", set(registries))
            registries[rid] = attrs.evolve(spec, id=PositiveInt(rid))
            registry_urls[spec.url] = rid

    def registry_ref(ref: int | str | None) -> int | None:
        if isinstance(ref, str) and ref in registry_urls:
            return registry_urls[ref]
        return registry_id(ref)

    ports: dict[tuple[int, str], str] = {}
    for name, ms in list(microservices.items()):
        images = ms.spec.images
        where = f"{ms.path}.images"
        if images.catalog_id is None and not images.x86 and not images.arm:
            problems.append(Problem(origin, ms.index, where, "expected 'catalogId', or an 'x86' and/or 'arm' image"))
        normal = images
        if images.catalog_id is not None:
            ref = images.catalog_id
            found = catalog_names.get(ref) if isinstance(ref, str) and not ref.isdigit() else int(ref)
            if found is None or found not in catalog:
                family = "" if catalog_family == "none" else f" or in the {catalog_family!r} catalog (catalogFamily)"
                problems.append(
                    Problem(origin, ms.index, f"{where}.catalogId", f"no CatalogItem {ref!r} in this input{family}")
                )
            else:
                normal = attrs.evolve(normal, catalog_id=found)
        if images.registry is not None:
            wanted_registry = registry_ref(images.registry)
            if wanted_registry is None:
                problems.append(
                    Problem(
                        origin,
                        ms.index,
                        f"{where}.registry",
                        f"expected 'remote', 'local', a registry id or a Registry's url, got {images.registry!r}",
                    )
                )
            elif wanted_registry not in registries:
                problems.append(
                    Problem(
                        origin, ms.index, f"{where}.registry", f"no Registry with id {wanted_registry} in this input"
                    )
                )
            else:
                normal = attrs.evolve(normal, registry=wanted_registry)
        if normal is not images:
            microservices[name] = attrs.evolve(ms, spec=attrs.evolve(ms.spec, images=normal))
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
    for item_id, item in list(catalog.items()):
        item_registry = registry_ref(item.registry)
        if item_registry is None:
            if item_id in catalog_index:
                problems.append(
                    Problem(
                        origin,
                        catalog_index[item_id],
                        "spec.registry",
                        f"expected 'remote', 'local', a registry id or a Registry's url, got {item.registry!r}",
                    )
                )
        elif item_registry not in registries:
            if item_id in catalog_index:
                problems.append(
                    Problem(
                        origin,
                        catalog_index[item_id],
                        "spec.registry",
                        f"no Registry with id {item_registry} in this input",
                    )
                )
        elif item_registry != item.registry:
            catalog[item_id] = attrs.evolve(item, registry=item_registry)
    if problems:
        raise ConfigError(problems)
    if elsewhere:
        agents = ", ".join(sorted(set(elsewhere.values())))
        notices.append(f"{len(elsewhere)} microservice(s) are for other agents ({agents}), not {agent_name!r}: skipped")
    return DesiredState(microservices, catalog, registries, elsewhere, tuple(notices), tuple(volumes))


def _octal_mode(text: str) -> bool:
    digits = text.removeprefix("0o")
    return 0 < len(digits) <= 4 and all(c in "01234567" for c in digits)
