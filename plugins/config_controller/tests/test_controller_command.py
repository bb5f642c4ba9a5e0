"""``fogwire provision``'s fog type: this device's unless told."""

from __future__ import annotations

import pytest
from fogwire_config_controller.command import fog_type

from fogwire.resolve import ResolveError


@pytest.mark.parametrize(
    ("choice", "arch", "expected"),
    [
        ("auto", "amd64", 1),
        ("auto", "arm64", 2),
        ("auto", "arm/v7", 2),
        ("x86", "arm64", 1),
        ("arm", "amd64", 2),
    ],
)
def test_the_fog_type_sent(choice: str, arch: str, expected: int) -> None:
    assert fog_type(choice, arch) == expected


def test_an_architecture_with_no_fog_type_is_a_clear_error() -> None:
    with pytest.raises(ResolveError, match="riscv64"):
        fog_type("auto", "riscv64")
