"""The constant-cost frame repr installed into hyperframe: in place, and the same strings as hyperframe's own.

The workaround replaces one private function of another library, so these tests
are its guard: they fail on a hyperframe release it does not know (to be checked
and added to ``KNOWN_VERSIONS``) and on any input where its output would differ.
"""

from __future__ import annotations

import binascii
import os

import hyperframe
import hyperframe.frame
import pytest
from fogwire_engine_containerd import _frame_repr, _grpc  # noqa: F401  (importing the client installs it)

SIZES = [*range(0, 40), 127, 128, 16383, 16384, 65536]


def test_the_installed_hyperframe_is_a_release_the_workaround_knows() -> None:
    assert hyperframe.__version__ in _frame_repr.KNOWN_VERSIONS, (
        f"hyperframe {hyperframe.__version__} is new: check that hyperframe.frame._raw_data_repr is still "
        "the function fogwire_engine_containerd._frame_repr replaces, then add the version to KNOWN_VERSIONS"
    )


def test_importing_the_client_installs_it() -> None:
    assert _frame_repr.installed()
    assert _frame_repr.original() is not None
    assert _frame_repr.install() is True  # idempotent


@pytest.mark.parametrize("size", SIZES)
def test_the_same_string_as_hyperframes_own_for_bytes_and_views(size: int) -> None:
    original = _frame_repr.original()
    assert original is not None
    data = os.urandom(size)
    assert _frame_repr._raw_data_repr(data) == original(data)
    assert _frame_repr._raw_data_repr(memoryview(data)) == original(memoryview(data))  # type: ignore[arg-type]
    assert _frame_repr._raw_data_repr(None) == original(None)


@pytest.mark.parametrize(
    "frame",
    [
        hyperframe.frame.DataFrame(1, data=b"\x00\x00\x00\x00\x05hello" * 4000, flags=["END_STREAM"]),
        hyperframe.frame.DataFrame(3, data=b"x" * 30, flags=["PADDED"], pad_length=7),
        hyperframe.frame.DataFrame(5, data=b""),
        hyperframe.frame.HeadersFrame(7, data=b"\x88\xc0\xbf" * 100, flags=["END_HEADERS"]),
        hyperframe.frame.GoAwayFrame(0, last_stream_id=9, error_code=0, additional_data=b"bye" * 50),
        hyperframe.frame.ContinuationFrame(9, data=b"\x82" * 64),
    ],
    ids=["data-large", "data-padded", "data-empty", "headers", "goaway", "continuation"],
)
def test_whole_frame_reprs_are_unchanged(frame: hyperframe.frame.Frame) -> None:
    original = _frame_repr.original()
    assert original is not None
    ours = repr(frame)
    hyperframe.frame._raw_data_repr = original
    try:
        theirs = repr(frame)
    finally:
        _frame_repr.install()
    assert ours == theirs


def test_it_encodes_at_most_eleven_bytes_whatever_the_frame_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cost no longer grows with the frame: hyperframe's own hex-encodes a 4 MiB body in full."""
    encoded: list[int] = []

    class CountingBinascii:
        @staticmethod
        def hexlify(data: bytes) -> bytes:
            encoded.append(len(data))
            return binascii.hexlify(data)

    monkeypatch.setattr(_frame_repr, "binascii", CountingBinascii)
    for size in (1, 11, 12, 16384, 4 * 1024 * 1024):
        _frame_repr._raw_data_repr(b"\x01" * size)
    assert encoded == [1, 11, 11, 11, 11]
