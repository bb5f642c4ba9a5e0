"""The one cattrs converter core owns, and its errors turned into field paths.

Strict on purpose: a YAML ``ture`` is not a boolean, ``"8080"`` is not an integer,
and an unknown key is an error, so a typo is never dropped silently. Models hold no
serialisation code; everything about turning plain data into them lives here.
"""

from __future__ import annotations

import enum
import types
import typing
import weakref
from collections.abc import Callable, Mapping
from typing import Any, NewType, TypeVar

import attrs
import cattrs
from cattrs.cols import homogenous_tuple_structure_factory, list_structure_factory
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from fogwire.errors import ConfigError, Problem

T = TypeVar("T")

Port = NewType("Port", int)
"""A TCP/UDP port number, 1-65535."""
NonNegativeInt = NewType("NonNegativeInt", int)
"""An integer ≥ 0."""
PositiveInt = NewType("PositiveInt", int)
"""An integer ≥ 1."""


class ValueProblem(ValueError):
    """A value of the wrong type or range; its message is what the user reads."""


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _strict_bool(value: Any, _: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueProblem(f"expected a boolean (true or false), got {_describe(value)}")


def _strict_int(value: Any, _: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueProblem(f"expected an integer, got {_describe(value)}")


def _strict_float(value: Any, _: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ValueProblem(f"expected a number, got {_describe(value)}")


def _strict_str(value: Any, _: Any) -> str:
    if isinstance(value, str):
        return value
    raise ValueProblem(f"expected a string, got {_describe(value)}")


def _ranged(low: int, high: int | None, what: str) -> Callable[[Any, Any], int]:
    def structure(value: Any, _: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and low <= value and (high is None or value <= high):
            return value
        raise ValueProblem(f"expected {what}, got {_describe(value)}")

    return structure


def _enum_hook(cls: type[enum.Enum]) -> Callable[[Any, Any], enum.Enum]:
    values = [m.value for m in cls]

    def structure(value: Any, _: Any) -> enum.Enum:
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(repr(v) for v in values)
            raise ValueProblem(f"expected one of {choices}, got {_describe(value)}") from None

    return structure


def _is_literal(t: Any) -> bool:
    return typing.get_origin(t) is typing.Literal


def _literal_hook(t: Any) -> Callable[[Any, Any], Any]:
    values = typing.get_args(t)

    def structure(value: Any, _: Any) -> Any:
        if any(value == v and type(value) is type(v) for v in values):
            return value
        raise ValueProblem(f"expected one of {', '.join(repr(v) for v in values)}, got {_describe(value)}")

    return structure


def to_camel(name: str) -> str:
    """``host_network_mode`` → ``hostNetworkMode``; ``from_`` → ``from``; camelCase stays."""
    head, *rest = name.rstrip("_").split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


_CAMEL_CLASSES: weakref.WeakSet[type[Any]] = weakref.WeakSet()
"""Plugin classes registered with :func:`register_options_class` (spelled camelCase like core's models)."""


def _is_model_class(cls: Any) -> bool:
    if not attrs.has(cls):
        return False
    return getattr(cls, "__module__", "").startswith("fogwire.model.") or cls in _CAMEL_CLASSES


def _camel_structure(converter: cattrs.Converter) -> Callable[[Any], Any]:
    def factory(cls: Any) -> Any:
        overrides = {a.name: override(rename=to_camel(a.name)) for a in attrs.fields(cls) if to_camel(a.name) != a.name}
        return _require_mapping(
            make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=True, **overrides)  # type: ignore[arg-type]
        )

    return factory


def _require_mapping(structure: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """``structure``, refusing anything but a mapping with a message (not a ``TypeError``)."""

    def checked(value: Any, cls: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValueProblem(f"expected a mapping, got {_describe(value)}")
        return structure(value, cls)

    return checked


def _is_sequence(t: Any) -> bool:
    origin = typing.get_origin(t)
    args = typing.get_args(t)
    return origin is list or (origin is tuple and len(args) == 2 and args[1] is Ellipsis)


def _sequence(converter: cattrs.Converter) -> Callable[[Any], Callable[[Any, Any], Any]]:
    """Lists only: cattrs alone would take a string as a list of characters and a mapping as its keys."""

    def factory(t: Any) -> Callable[[Any, Any], Any]:
        make = list_structure_factory if typing.get_origin(t) is list else homogenous_tuple_structure_factory
        structure = make(t, converter)

        def checked(value: Any, cls: Any) -> Any:
            if not isinstance(value, (list, tuple)):
                raise ValueProblem(f"expected a list, got {_describe(value)}")
            return structure(value, cls)

        return checked

    return factory


def _is_mapping(t: Any) -> bool:
    return typing.get_origin(t) in (dict, Mapping)


def _mapping(converter: cattrs.Converter) -> Callable[[Any], Callable[[Any, Any], Any]]:
    def factory(t: Any) -> Callable[[Any, Any], Any]:
        return _require_mapping(converter.gen_structure_mapping(t))

    return factory


def _camel_unstructure(converter: cattrs.Converter) -> Callable[[Any], Any]:
    def factory(cls: Any) -> Any:
        overrides = {a.name: override(rename=to_camel(a.name)) for a in attrs.fields(cls) if to_camel(a.name) != a.name}
        return make_dict_unstructure_fn(cls, converter, **overrides)  # type: ignore[arg-type]

    return factory


def _is_int_str_union(t: Any) -> bool:
    args = set(typing.get_args(t))
    return typing.get_origin(t) in (typing.Union, types.UnionType) and {int, str} <= args


def _int_or_str(t: Any) -> Callable[[Any, Any], Any]:
    optional = type(None) in typing.get_args(t)

    def structure(value: Any, _: Any) -> Any:
        if value is None and optional:
            return None
        if isinstance(value, (int, str)) and not isinstance(value, bool):
            return value
        raise ValueProblem(f"expected a registry name ('remote', 'local') or id, got {_describe(value)}")

    return structure


def _scalar_text(value: Any, _: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    raise ValueProblem(f"expected a string or number, got {_describe(value)}")


def make_converter(converter: cattrs.Converter | None = None) -> cattrs.Converter:
    """Configure ``converter`` (a new one by default) the fogwire way and return it.

    Never the global cattrs converter: every consumer makes its own through here
    (usually via :meth:`fogwire.plugins.PluginHost.make_converter`, which lets
    plugins add their types).
    """
    converter = converter or cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(bool, _strict_bool)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(float, _strict_float)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(Port, _ranged(1, 65535, "an integer 1-65535"))
    converter.register_structure_hook(NonNegativeInt, _ranged(0, None, "an integer ≥ 0"))
    converter.register_structure_hook(PositiveInt, _ranged(1, None, "an integer ≥ 1"))
    converter.register_unstructure_hook(Port, int)
    converter.register_unstructure_hook(NonNegativeInt, int)
    converter.register_unstructure_hook(PositiveInt, int)
    converter.register_structure_hook_factory(lambda t: isinstance(t, type) and issubclass(t, enum.Enum), _enum_hook)
    converter.register_structure_hook_factory(_is_int_str_union, _int_or_str)
    converter.register_structure_hook_factory(_is_literal, _literal_hook)
    converter.register_structure_hook_factory(_is_sequence, _sequence(converter))
    converter.register_structure_hook_factory(_is_mapping, _mapping(converter))
    converter.register_structure_hook_factory(_is_model_class, _camel_structure(converter))
    converter.register_unstructure_hook_factory(_is_model_class, _camel_unstructure(converter))
    _register_iofog_scalars(converter)
    return converter


def _register_iofog_scalars(converter: cattrs.Converter) -> None:
    from fogwire.model import iofog

    converter.register_structure_hook(iofog.EnvValue, lambda v, _: iofog.EnvValue(_scalar_text(v, None)))
    converter.register_unstructure_hook(iofog.EnvValue, str)
    structure_host = converter.get_structure_hook(iofog.ExtraHost)

    def extra_host(value: Any, _: Any) -> iofog.ExtraHost:
        if isinstance(value, str):
            name, sep, address = value.partition(":")
            if not sep or not name or not address:
                raise ValueProblem(f"expected 'name:address' or {{name, address}}, got {_describe(value)}")
            return iofog.ExtraHost(name, address)
        return structure_host(value, iofog.ExtraHost)  # type: ignore[no-any-return]

    converter.register_structure_hook(iofog.ExtraHost, extra_host)
    structure_registry = converter.get_structure_hook(iofog.RegistrySpec)

    def registry_spec(value: Any, _: Any) -> iofog.RegistrySpec:
        spec: iofog.RegistrySpec = structure_registry(value, iofog.RegistrySpec)
        if spec.requires_cert:
            problem = (
                "requiresCert is true: give the registry's CA certificate here (PEM text)"
                if not spec.certificate
                else pem_problem(spec.certificate)
            )
            if problem:
                raise _field_error(iofog.RegistrySpec, "certificate", ValueProblem(problem))
        return spec

    converter.register_structure_hook(iofog.RegistrySpec, registry_spec)


def pem_problem(text: str) -> str | None:
    """Why ``text`` is not PEM text of one or more certificates a TLS client can trust, or ``None``."""
    import ssl  # only when a registry brings its own CA

    if "-----BEGIN CERTIFICATE-----" not in text:
        return "expected PEM text of a CA certificate ('-----BEGIN CERTIFICATE-----' …), got no such block"
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=text)
    except (ssl.SSLError, ValueError) as error:
        return f"expected PEM text of a CA certificate, but it does not parse: {error}"
    return None


def _field_error(cls: type[Any], name: str, error: Exception) -> ClassValidationError:
    """``error`` as cattrs reports one about attribute ``name`` of ``cls``, so it gets that field path."""
    error.__notes__ = [AttributeValidationNote(f"Structuring class {cls.__qualname__} @ attribute {name}", name, str)]
    return ClassValidationError(f"While structuring {cls.__qualname__}", [error], cls)


def make_renaming_hook(converter: cattrs.Converter, cls: type[Any], **renames: str) -> None:
    """Structure/unstructure ``cls`` with some attributes under other keys (``x86_image="x86"``)."""
    overrides = {attr: override(rename=key) for attr, key in renames.items()}
    converter.register_structure_hook(cls, make_dict_structure_fn(cls, converter, **overrides))  # type: ignore[arg-type]
    converter.register_unstructure_hook(cls, make_dict_unstructure_fn(cls, converter, **overrides))  # type: ignore[arg-type]


def mark_camel_case(*classes: type[Any]) -> None:
    """Spell ``classes`` in camelCase (strict, field-path errors) on every converter :func:`make_converter` makes.

    For a plugin's own model module (the router wrapper's entities): call it once at
    import, after the classes are defined. An options class read from the agent
    config needs only :func:`structure_options`.
    """
    _CAMEL_CLASSES.update(classes)


def register_options_class(converter: cattrs.Converter, cls: type[Any]) -> None:
    """Structure and unstructure a plugin's attrs class the way core's models are.

    Keys are the camelCase of the attribute names (``log_max_bytes`` → ``logMaxBytes``),
    scalars are strict, an unknown key is an error, and errors carry camelCase field
    paths. Call it from ``fogwire_configure_converter`` for every options class a
    plugin structures (nested attrs classes included), then structure with
    :func:`structure_options`.
    """
    _register_camel(converter, cls, set())


def _register_camel(converter: cattrs.Converter, cls: type[Any], seen: set[type[Any]]) -> None:
    seen.add(cls)
    _CAMEL_CLASSES.add(cls)
    attrs.resolve_types(cls)
    for field in attrs.fields(cls):
        for inner in (field.type, *typing.get_args(field.type)):
            if attrs.has(inner) and inner not in seen and not str(inner.__module__).startswith("fogwire.model."):
                _register_camel(converter, inner, seen)
    converter.register_structure_hook(cls, _camel_structure(converter)(cls))
    converter.register_unstructure_hook(cls, _camel_unstructure(converter)(cls))


def structure_options(
    converter: cattrs.Converter, data: Any, cls: type[T], *, plugin: str, key: str = "engineOptions"
) -> T:
    """A plugin's options from the agent config, or :class:`ConfigError` naming every bad key.

    ``plugin`` names the plugin in the error's document (``engine options (docker)``);
    ``key`` is the config key the options sit under, the base of every field path.
    ``None`` means no options. A snake_case key whose camelCase form is a field gets a
    hint with the right spelling.
    """
    register_options_class(converter, cls)
    document = f"{key} ({plugin})"
    mapping = {} if data is None else data
    try:
        return structure(converter, mapping, cls, document, 1, key)
    except ConfigError as error:
        raise ConfigError([_with_spelling_hint(problem, cls) for problem in error.problems]) from error


def _with_spelling_hint(problem: Problem, cls: type[Any]) -> Problem:
    if problem.message != "unknown field (check the spelling)":
        return problem
    last = problem.path.rsplit(".", 1)[-1]
    camel = to_camel(last)
    names = {to_camel(a.name) for a in attrs.fields(cls)}
    if camel != last and camel in names:
        return attrs.evolve(problem, message=f"unknown field: it is spelled {camel!r}")
    return problem


def problems_from(error: BaseException, document: str, index: int, base: str = "") -> list[Problem]:
    """Flatten a cattrs error tree into one :class:`Problem` per leaf, with field paths."""
    found: list[Problem] = []
    _walk(error, base, document, index, found)
    return found


def _join(path: str, step: str) -> str:
    if step.startswith("["):
        return path + step
    return f"{path}.{step}" if path else step


def _walk(error: BaseException, path: str, document: str, index: int, out: list[Problem]) -> None:
    if isinstance(error, ClassValidationError):
        with_notes, without = error.group_exceptions()
        rename = to_camel if _is_model_class(error.cl) else str
        for exc, note in with_notes:
            _walk(exc, _join(path, rename(note.name)), document, index, out)
        for exc in without:
            _walk(exc, path, document, index, out)
    elif isinstance(error, IterableValidationError):
        item_notes, without = error.group_exceptions()
        for exc, item_note in item_notes:
            position = item_note.index
            step = f"[{position}]" if isinstance(position, int) else f".{position}"
            _walk(exc, path + step if step.startswith("[") else _join(path, str(position)), document, index, out)
        for exc in without:
            _walk(exc, path, document, index, out)
    elif isinstance(error, ExceptionGroup):
        for exc in error.exceptions:
            _walk(exc, path, document, index, out)
    elif isinstance(error, ForbiddenExtraKeysError):
        for key in sorted(error.extra_fields):
            out.append(Problem(document, index, _join(path, key), "unknown field (check the spelling)"))
    elif isinstance(error, KeyError):
        key = str(error.args[0]) if error.args else "?"
        # cattrs notes the missing attribute itself, so ``path`` usually ends with the key already.
        where = path if path == key or path.endswith("." + key) else _join(path, key)
        out.append(Problem(document, index, where, "required field is missing"))
    elif isinstance(error, ValueProblem):
        out.append(Problem(document, index, path, str(error)))
    elif isinstance(error, (TypeError, AttributeError)):
        out.append(Problem(document, index, path, f"wrong type: {error}"))
    else:
        out.append(Problem(document, index, path, str(error) or type(error).__name__))


def structure(converter: cattrs.Converter, data: Any, cls: type[T], document: str, index: int, base: str = "") -> T:
    """Structure ``data`` into ``cls`` or raise :class:`ConfigError` with every problem found."""
    try:
        return converter.structure(data, cls)
    except (ClassValidationError, IterableValidationError, ForbiddenExtraKeysError) as error:
        raise ConfigError(problems_from(error, document, index, base)) from error
    except ValueProblem as error:
        raise ConfigError([Problem(document, index, base, str(error))]) from error


def require_mapping(data: Any, document: str, index: int, path: str) -> Mapping[str, Any]:
    """``data`` as a mapping, or a :class:`ConfigError` saying a mapping was expected there."""
    if not isinstance(data, Mapping):
        raise ConfigError([Problem(document, index, path, f"expected a mapping, got {_describe(data)}")])
    return data
