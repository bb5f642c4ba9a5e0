"""Counters, gauges and durations in the Prometheus text format (``GET /metrics``).

A few dozen series at most, so a dict per metric and a text writer are all it
takes (prometheus_client would cost the daemon memory for nothing it needs here).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

LabelValues = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(names: tuple[str, ...], values: LabelValues, extra: str = "") -> str:
    pairs = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    """A value that only goes up, per label set."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, label_names: tuple[str, ...] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = label_names
        self.values: dict[LabelValues, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        """Add ``amount`` to the series of ``labels``."""
        key = tuple(labels[n] for n in self.label_names)
        self.values[key] = self.values.get(key, 0.0) + amount

    def samples(self) -> Iterable[str]:
        """The exposition lines of every series."""
        for key, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.label_names, key)} {_number(value)}"


class Gauge:
    """A value read when scraped (``read`` returns each label set's value)."""

    kind = "gauge"

    def __init__(
        self, name: str, help_text: str, read: Callable[[], dict[LabelValues, float]], label_names: tuple[str, ...] = ()
    ) -> None:
        self.name = name
        self.help = help_text
        self.label_names = label_names
        self.read = read

    def samples(self) -> Iterable[str]:
        """The exposition lines of every series, read now."""
        for key, value in sorted(self.read().items()):
            yield f"{self.name}{_labels(self.label_names, key)} {_number(value)}"


class Histogram:
    """Observed durations in cumulative buckets, with their sum and count."""

    kind = "histogram"
    BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help = help_text
        self.counts = [0] * len(self.BUCKETS)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Record one observation (seconds)."""
        for index, bound in enumerate(self.BUCKETS):
            if value <= bound:
                self.counts[index] += 1
        self.total += value
        self.count += 1

    def samples(self) -> Iterable[str]:
        """The bucket, sum and count lines."""
        for bound, count in zip(self.BUCKETS, self.counts, strict=True):
            yield f'{self.name}_bucket{{le="{_number(bound)}"}} {count}'
        yield f'{self.name}_bucket{{le="+Inf"}} {self.count}'
        yield f"{self.name}_sum {_number(self.total)}"
        yield f"{self.name}_count {self.count}"


Metric = Counter | Gauge | Histogram


class Metrics:
    """Every metric of the agent, in the order they are shown."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}

    def _add(self, metric: Metric) -> Metric:
        return self._metrics.setdefault(metric.name, metric)

    def counter(self, name: str, help_text: str, label_names: tuple[str, ...] = ()) -> Counter:
        """The counter ``name`` (made on first use)."""
        metric = self._add(Counter(name, help_text, label_names))
        assert isinstance(metric, Counter)
        return metric

    def gauge(
        self, name: str, help_text: str, read: Callable[[], dict[LabelValues, float]], label_names: tuple[str, ...] = ()
    ) -> Gauge:
        """The gauge ``name``, read by ``read`` at each scrape."""
        metric = self._add(Gauge(name, help_text, read, label_names))
        assert isinstance(metric, Gauge)
        return metric

    def histogram(self, name: str, help_text: str) -> Histogram:
        """The histogram ``name`` (made on first use)."""
        metric = self._add(Histogram(name, help_text))
        assert isinstance(metric, Histogram)
        return metric

    def exposition(self) -> str:
        """All metrics in the Prometheus text format (version 0.0.4)."""
        lines = []
        for metric in self._metrics.values():
            lines.append(f"# HELP {metric.name} {_escape_help(metric.help)}")
            lines.append(f"# TYPE {metric.name} {metric.kind}")
            lines.extend(metric.samples())
        return "\n".join(lines) + "\n"
