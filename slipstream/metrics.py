"""A small Prometheus registry: counters and gauges with labels, text exposition.

Metric names carry the ``slipstream_`` prefix.  Each process has one
:class:`Registry` (passed to the components it runs); ``/metrics`` renders it.
Updating a metric is a dict lookup and an add: cheap enough for hot paths
when done per batch, not per sample.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator

__all__ = ["Counter", "Gauge", "Registry"]

LabelKey = tuple[tuple[str, str], ...]


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str) -> None:
        if not name.startswith("slipstream_"):
            raise ValueError(f"metric {name!r} must start with slipstream_")
        self.name = name
        self.help = help_text
        self._values: dict[LabelKey, float] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(labels: dict[str, str]) -> LabelKey:
        return tuple(sorted(labels.items()))

    def value(self, **labels: str) -> float:
        """Current value for ``labels`` (0 when never set)."""
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> Iterator[tuple[LabelKey, float]]:
        """Every (labels, value) pair."""
        return iter(list(self._values.items()))


class Counter(_Metric):
    """A monotonically increasing count."""

    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        """Add ``amount`` (>= 0)."""
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount


class Gauge(_Metric):
    """A value that goes up and down, set directly or read from a callback."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str) -> None:
        super().__init__(name, help_text)
        self._callbacks: dict[LabelKey, Callable[[], float]] = {}

    def set(self, value: float, **labels: str) -> None:
        """Set the value."""
        self._values[self._key(labels)] = value

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        """Add ``amount`` (may be negative)."""
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def set_function(self, callback: Callable[[], float], **labels: str) -> None:
        """Read the value from ``callback`` at each scrape."""
        self._callbacks[self._key(labels)] = callback

    def samples(self) -> Iterator[tuple[LabelKey, float]]:
        """Every (labels, value) pair, callbacks evaluated now."""
        values = dict(self._values)
        for key, callback in self._callbacks.items():
            values[key] = float(callback())
        return iter(list(values.items()))


def _format_value(value: float) -> str:
    value = float(value)  # callers may pass ints (e.g. a lag count)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(int(value)) if value.is_integer() else repr(value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Registry:
    """The metrics of one process."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def counter(self, name: str, help_text: str) -> Counter:
        """The counter called ``name``, created on first use."""
        metric = self._metrics.get(name)
        if metric is None:
            metric = self._metrics[name] = Counter(name, help_text)
        if not isinstance(metric, Counter):
            raise ValueError(f"{name} is already registered as a {metric.kind}")
        return metric

    def gauge(self, name: str, help_text: str) -> Gauge:
        """The gauge called ``name``, created on first use."""
        metric = self._metrics.get(name)
        if metric is None:
            metric = self._metrics[name] = Gauge(name, help_text)
        if not isinstance(metric, Gauge):
            raise ValueError(f"{name} is already registered as a {metric.kind}")
        return metric

    def get(self, name: str) -> Counter | Gauge | None:
        """A registered metric, or None."""
        metric = self._metrics.get(name)
        return metric if isinstance(metric, Counter | Gauge) else None

    def render(self) -> str:
        """Prometheus text exposition format, version 0.0.4."""
        lines: list[str] = []
        for name in sorted(self._metrics):
            metric = self._metrics[name]
            lines.append(f"# HELP {name} {metric.help}")
            lines.append(f"# TYPE {name} {metric.kind}")
            for labels, value in sorted(metric.samples()):
                if labels:
                    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                    lines.append(f"{name}{{{inner}}} {_format_value(value)}")
                else:
                    lines.append(f"{name} {_format_value(value)}")
        return "\n".join(lines) + "\n"
