"""Progress of a bundle operation: a live line on a terminal, plain lines otherwise.

On a terminal one line is redrawn (at most ten times a second) with the current
image, bytes done of bytes expected, rate and ETA. Elsewhere (a log, a pipe, the
daemon) each image gets a start and an end line, so the output stays readable.
The counters double as the summary of ``--json``.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def human(size: float) -> str:
    """``12.3 MiB`` style size."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


class Progress:
    """Counts bytes moved and skipped, per image and overall, and shows them."""

    def __init__(self, stream: TextIO | None = None, *, live: bool | None = None, quiet: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.quiet = quiet
        self.started = time.monotonic()
        self.total = 0
        self.done = 0
        self.skipped = 0
        self.label = ""
        self._label_done = 0
        self._label_total = 0
        self._label_started = self.started
        self._drawn = 0.0
        self._width = 0

    @classmethod
    def silent(cls) -> Progress:
        """A progress that only counts."""
        return cls(sys.stderr, live=False, quiet=True)

    def _print(self, text: str) -> None:
        if self.quiet:
            return
        if self.live and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(text + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        """A line of its own."""
        self._print(text)

    def start(self, label: str) -> None:
        """Work on ``label`` (an image) begins."""
        self.label = label
        self._label_done = 0
        self._label_total = 0
        self._label_started = time.monotonic()
        if not self.live:
            self._print(f"{label}: started")

    def expect(self, size: int) -> None:
        """``size`` more bytes are to be moved for the current image."""
        self.total += size
        self._label_total += size

    def advance(self, size: int) -> None:
        """``size`` bytes were moved."""
        self.done += size
        self._label_done += size
        now = time.monotonic()
        if self.live and not self.quiet and now - self._drawn >= 0.1:
            self._drawn = now
            self._draw(now)

    def skip(self, size: int) -> None:
        """``size`` bytes were already at the target and not moved."""
        self.skipped += size

    @property
    def rate(self) -> float:
        """Bytes a second since the start."""
        return self.done / max(time.monotonic() - self.started, 1e-6)

    def _draw(self, now: float) -> None:
        rate = self.done / max(now - self.started, 1e-6)
        left = max(self.total - self.done, 0)
        eta = f"{left / rate:.0f}s" if rate > 0 else "?"
        text = (
            f"{self.label}: {human(self._label_done)}/{human(self._label_total)}"
            f"  total {human(self.done)}/{human(self.total)}  {human(rate)}/s  ETA {eta}"
        )
        pad = max(self._width - len(text), 0)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._width = len(text)

    def finish(self, label: str, detail: str = "") -> None:
        """Work on ``label`` is done."""
        took = time.monotonic() - self._label_started
        extra = f", {detail}" if detail else ""
        self._print(f"{label}: done, {human(self._label_done)} in {took:.1f}s{extra}")
