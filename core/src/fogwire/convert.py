"""The one cattrs converter core owns, and its errors turned into field paths.

Strict on purpose: a YAML ``ture`` is not a boolean, ``"8080"`` is not an integer,
and an unknown key is an error, so a typo is never dropped silently. Models hold no
serialisation code; everything about turning plain data into them lives here.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any, NewType, TypeVar

import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError
from cattrs.gen import make_dict_structure_fn

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
    converter.register_structure_hook_factory(
        lambda t: isinstance(t, type) and issubclass(t, enum.Enum), _enum_hook
    )
    return converter


def make_renaming_hook(converter: cattrs.Converter, cls: type[Any], **renames: str) -> None:
    """Structure/unstructure ``cls`` with some attributes under other keys (``x86_image="x86"``)."""
    from cattrs.gen import make_dict_unstructure_fn, override

    overrides = {attr: override(rename=key) for attr, key in renames.items()}
    converter.register_structure_hook(cls, make_dict_structure_fn(cls, converter, **overrides))  # type: ignore[arg-type]
    converter.register_unstructure_hook(cls, make_dict_unstructure_fn(cls, converter, **overrides))  # type: ignore[arg-type]


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
        for exc, note in with_notes:
            _walk(exc, _join(path, note.name), document, index, out)
        for exc in without:
            _walk(exc, path, document, index, out)
    elif isinstance(error, IterableValidationError):
        with_notes, without = error.group_exceptions()
        for exc, note in with_notes:
            step = f"[{note.index!r}]" if not isinstance(note.index, str) else f".{note.index}"
            _walk(exc, path + step if step.startswith("[") else _join(path, note.index), document, index, out)
        for exc in without:
            _walk(exc, path, document, index, out)
    elif isinstance(error, ExceptionGroup):
        for exc in error.exceptions:
            _walk(exc, path, document, index, out)
    elif isinstance(error, ForbiddenExtraKeysError):
        for key in sorted(error.extra_fields):
            out.append(Problem(document, index, _join(path, key), "unknown field (check the spelling)"))
    elif isinstance(error, KeyError):
        key = error.args[0] if error.args else "?"
        out.append(Problem(document, index, _join(path, str(key)), "required field is missing"))
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
