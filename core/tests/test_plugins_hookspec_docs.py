"""Every hookspec is documented in ``docs/writing-a-plugin.md`` with its exact signature.

Hooks evolve only by adding (STYLE.md pattern 5); this catches a spec changed
without its documentation, and a hook added without any.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest

from fogwire import hookspecs

DOC = Path(__file__).resolve().parents[2] / "docs" / "writing-a-plugin.md"


def _specs() -> list[Any]:
    marker = f"{hookspecs.PROJECT}_spec"
    return [obj for name, obj in vars(hookspecs).items() if name.startswith("fogwire_") and hasattr(obj, marker)]


def _annotation(value: Any) -> str:
    return value if isinstance(value, str) else inspect.formatannotation(value)


def signature_line(function: Any) -> str:
    """``name(param: Type, ...) -> Return`` as written in the source (annotations unevaluated)."""
    signature = inspect.signature(function)
    params = []
    for param in signature.parameters.values():
        text = param.name
        if param.annotation is not inspect.Parameter.empty:
            text += f": {_annotation(param.annotation)}"
        if param.default is not inspect.Parameter.empty:
            text += f" = {param.default!r}"
        params.append(text)
    result = f"{function.__name__}({', '.join(params)})"
    if signature.return_annotation is not inspect.Signature.empty:
        result += f" -> {_annotation(signature.return_annotation)}"
    return result


def test_there_are_hookspecs() -> None:
    names = {spec.__name__ for spec in _specs()}
    assert {
        "fogwire_register_engines",
        "fogwire_register_config_sources",
        "fogwire_register_reload_sinks",
        "fogwire_configure_converter",
    } <= names


@pytest.mark.parametrize("spec", _specs(), ids=lambda spec: spec.__name__)
def test_hookspec_is_documented_with_its_exact_signature(spec: Any) -> None:
    assert DOC.is_file(), f"{DOC} is missing"
    line = signature_line(spec)
    assert line in DOC.read_text(encoding="utf-8"), f"{DOC.name} must show `{line}`"


def test_signature_line_format() -> None:
    assert signature_line(hookspecs.fogwire_register_engines) == (
        "fogwire_register_engines(registry: EngineRegistry) -> None"
    )
