"""The metrics of a process on ``prometheus_client``: counters, gauges, histograms.

Metric names carry the ``slipstream_`` prefix; counters end in ``_total``.
Each process has one :class:`Registry` (passed to the components it runs);
``/metrics`` renders it with the standard process metrics (``process_*``:
open fds and their limit, CPU, memory), ``python_info`` and
``slipstream_build_info``.

Labels are given as keyword arguments at each update.  A metric's label
names are fixed by its declaration (``labels=``) or else by its first update;
a metric declared with ``labels`` is exported (at 0) before its first event,
so alert rules and dashboards see it on a quiet node.

**Several processes, one scrape** (``slipstream broadcast --workers N``): a
registry made with ``multiprocess_dir`` keeps its values in that directory
(``prometheus_client``'s multiprocess mode) and :meth:`Registry.render`
returns the sum over every process that writes there: counters and
histograms add up (a dead worker's counts stay, so totals never go back),
gauges add up over the live processes by default (``mode=`` picks max, min
or one series per process instead), and the ``process_*`` metrics get one
series per process (``pid`` label).  Gauges read from a callback are written
to the directory once a second by each process and at each scrape by the one
that answers.  The directory belongs to one node and must be empty at start
(:func:`prepare_multiprocess_dir`).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import prometheus_client as prom
from prometheus_client import values as prom_values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from slipstream.process_metrics import BuildInfo, ProcessMirror

__all__ = [
    "GAUGE_MODES",
    "Counter",
    "Gauge",
    "Histogram",
    "Registry",
    "forget_process",
    "prepare_multiprocess_dir",
]

logger = logging.getLogger(__name__)

#: How a gauge of several processes becomes one value (prometheus_client's live modes).
GAUGE_MODES = ("livesum", "livemax", "livemin", "liveall")
#: Default buckets of a histogram, s: 1 ms .. 10 s.
DEFAULT_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

prom.disable_created_metrics()  # type: ignore[no-untyped-call]  # `_created` series only double the ops page's table


def prepare_multiprocess_dir(path: str | Path) -> Path:
    """Create ``path`` for a node's workers, emptied of an earlier run's files."""
    directory = Path(path)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, mode=0o700)
    return directory


def forget_process(pid: int, directory: str | Path) -> None:
    """Drop the live gauges of a process that exited (its counts stay in the totals)."""
    mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


def _use_multiprocess(directory: Path) -> None:
    # prometheus_client picks where values live once per process.
    current = os.environ.get(_MULTIPROCESS_ENV)
    if current is not None and Path(current) != directory:
        raise ValueError(f"this process already keeps its metrics in {current}, not {directory}")
    os.environ[_MULTIPROCESS_ENV] = str(directory)
    if not getattr(prom_values.ValueClass, "_multiprocess", False):
        prom_values.ValueClass = prom_values.MultiProcessValue()  # type: ignore[no-untyped-call]


class _Metric:
    kind = ""

    def __init__(self, registry: Registry, name: str, help_text: str) -> None:
        if not name.startswith("slipstream_"):
            raise ValueError(f"metric {name!r} must start with slipstream_")
        self.name = name
        self.help = help_text or name
        self.labels: tuple[str, ...] | None = None
        self._registry = registry
        self._prom: Any = None

    def _declare(self, labels: Sequence[str]) -> None:
        names = tuple(labels)
        if self.labels is not None:
            if names != self.labels:
                raise ValueError(
                    f"{self.name} has labels {self.labels}, not {names}: use the same label "
                    "names at every update"
                )
            return
        self.labels = names
        self._prom = self._create(names, self._registry._target)

    def _create(self, labels: tuple[str, ...], target: prom.CollectorRegistry | None) -> Any:
        raise NotImplementedError

    def _child(self, labels: dict[str, str]) -> Any:
        if self.labels is None:
            self._declare(sorted(labels))
        if not self.labels:
            if labels:
                raise ValueError(f"{self.name} has no labels, got {sorted(labels)}")
            return self._prom
        try:
            return self._prom.labels(**labels)
        except ValueError:
            wanted = sorted(labels)
            raise ValueError(f"{self.name} has labels {self.labels}, got {wanted}") from None

    def _existing(self, labels: dict[str, str]) -> Any:
        """The child of ``labels`` if it was ever updated (None otherwise, none created)."""
        if self._prom is None or self.labels is None:
            return None
        if not self.labels:
            return self._prom
        key = tuple(str(labels.get(n, "")) for n in self.labels)
        return self._prom._metrics.get(key)

    def init(self, **labels: str) -> None:
        """Export ``labels`` at 0 before their first event (so rules see a series)."""
        self._child(labels)


class Counter(_Metric):
    """A monotonically increasing count."""

    kind = "counter"

    def _create(self, labels: tuple[str, ...], target: prom.CollectorRegistry | None) -> Any:
        return prom.Counter(self.name, self.help, labels, registry=target)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        """Add ``amount`` (>= 0)."""
        if amount < 0:
            raise ValueError("a counter only goes up")
        self._child(labels).inc(amount)

    def value(self, **labels: str) -> float:
        """This process's value for ``labels`` (0 when never counted)."""
        child = self._existing(labels)
        return 0.0 if child is None else float(child._value.get())

    def total(self) -> float:
        """This process's value summed over every label set."""
        if self._prom is None or self.labels is None:
            return 0.0
        if not self.labels:
            return float(self._prom._value.get())
        return float(sum(child._value.get() for child in self._prom._metrics.values()))


class Gauge(_Metric):
    """A value that goes up and down, set directly or read from a callback.

    Args:
        mode: How the values of several processes combine (:data:`GAUGE_MODES`).
    """

    kind = "gauge"

    def __init__(self, registry: Registry, name: str, help_text: str, mode: str) -> None:
        if mode not in GAUGE_MODES:
            raise ValueError(f"gauge mode must be one of {', '.join(GAUGE_MODES)}, got {mode!r}")
        super().__init__(registry, name, help_text)
        self.mode = mode
        self._callbacks: dict[tuple[tuple[str, str], ...], Callable[[], float]] = {}

    def _create(self, labels: tuple[str, ...], target: prom.CollectorRegistry | None) -> Any:
        mode: Any = self.mode  # checked against GAUGE_MODES
        return prom.Gauge(self.name, self.help, labels, registry=target, multiprocess_mode=mode)

    def set(self, value: float, **labels: str) -> None:
        """Set the value."""
        self._child(labels).set(value)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        """Add ``amount`` (may be negative)."""
        self._child(labels).inc(amount)

    def set_function(self, callback: Callable[[], float], **labels: str) -> None:
        """Read the value from ``callback`` at each scrape (and each second with workers).

        With workers the callback also runs on the registry's refresh thread:
        keep it a cheap read (a length, an attribute) that needs no lock.
        """
        child = self._child(labels)
        self._callbacks[tuple(sorted(labels.items()))] = callback
        if self._registry.multiprocess_dir is None:
            child.set_function(lambda: float(callback()))
        else:
            self._registry._refresh_soon()

    def refresh(self) -> None:
        """Write every callback's value now (multiprocess mode)."""
        for key, callback in list(self._callbacks.items()):
            self._child(dict(key)).set(float(callback()))

    def value(self, **labels: str) -> float:
        """This process's value for ``labels`` (0 when never set)."""
        callback = self._callbacks.get(tuple(sorted(labels.items())))
        if callback is not None:
            return float(callback())
        child = self._existing(labels)
        return 0.0 if child is None else float(child._value.get())


class Histogram(_Metric):
    """A distribution of observed values (e.g. durations in seconds) in fixed buckets."""

    kind = "histogram"

    def __init__(
        self, registry: Registry, name: str, help_text: str, buckets: Sequence[float]
    ) -> None:
        super().__init__(registry, name, help_text)
        self.buckets = tuple(float(b) for b in buckets)
        if not self.buckets or list(self.buckets) != sorted(set(self.buckets)):
            raise ValueError(f"{name}: buckets must be increasing, got {list(buckets)}")

    def _create(self, labels: tuple[str, ...], target: prom.CollectorRegistry | None) -> Any:
        return prom.Histogram(self.name, self.help, labels, registry=target, buckets=self.buckets)

    def observe(self, value: float, **labels: str) -> None:
        """Add one observation."""
        self._child(labels).observe(value)

    def count(self, **labels: str) -> float:
        """This process's number of observations for ``labels``."""
        child = self._existing(labels)
        return 0.0 if child is None else float(sum(b.get() for b in child._buckets))

    def total(self, **labels: str) -> float:
        """This process's sum of observations for ``labels``."""
        child = self._existing(labels)
        return 0.0 if child is None else float(child._sum.get())


class Registry:
    """The metrics of one process (of one node, with ``multiprocess_dir``).

    Args:
        multiprocess_dir: The node's shared directory (multiprocess mode), or
            None for a process whose ``/metrics`` is its own.
        refresh_s: How often callback gauges and ``process_*`` are written to
            the directory, s (multiprocess mode).
    """

    def __init__(self, multiprocess_dir: str | Path | None = None, refresh_s: float = 1.0) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._families: dict[str, str] = {}
        self._render = prom.CollectorRegistry(auto_describe=False)
        self._render.register(BuildInfo())
        prom.PlatformCollector(registry=self._render)
        self.multiprocess_dir = Path(multiprocess_dir) if multiprocess_dir is not None else None
        self._mirror: ProcessMirror | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        if self.multiprocess_dir is None:
            self._target: prom.CollectorRegistry | None = self._render
            prom.ProcessCollector(registry=self._render)
        else:
            _use_multiprocess(self.multiprocess_dir)
            self._target = None  # values go to the directory; the scrape reads it
            MultiProcessCollector(self._render, path=str(self.multiprocess_dir))  # type: ignore[no-untyped-call]
            self._mirror = ProcessMirror()
            self._refresh_soon()

    def _get(self, name: str, kind: type[_Metric], make: Callable[[], _Metric]) -> Any:
        with self._lock:
            metric = self._metrics.get(name)
            if metric is None:
                family = name[: -len("_total")] if kind is Counter else name
                if kind is Counter and not name.endswith("_total"):
                    raise ValueError(f"counter {name!r} must end with _total")
                other = self._families.get(family)
                if other is not None:
                    raise ValueError(
                        f"{name} would share the name {family} with {other}; rename one"
                    )
                metric = self._metrics[name] = make()
                self._families[family] = name
        if not isinstance(metric, kind):
            raise ValueError(f"{name} is already registered as a {metric.kind}")
        return metric

    def counter(self, name: str, help_text: str, labels: Sequence[str] | None = None) -> Counter:
        """The counter called ``name``, created on first use (``labels``: its label names)."""
        metric: Counter = self._get(name, Counter, lambda: Counter(self, name, help_text))
        if labels is not None:
            metric._declare(labels)
        return metric

    def gauge(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] | None = None,
        mode: str = "livesum",
    ) -> Gauge:
        """The gauge called ``name``, created on first use.

        Args:
            labels: Its label names (exported at once when given).
            mode: How several processes' values combine (:data:`GAUGE_MODES`).
        """
        metric: Gauge = self._get(name, Gauge, lambda: Gauge(self, name, help_text, mode))
        if labels is not None:
            metric._declare(labels)
        return metric

    def histogram(
        self,
        name: str,
        help_text: str,
        buckets: Sequence[float] = DEFAULT_BUCKETS_S,
        labels: Sequence[str] | None = None,
    ) -> Histogram:
        """The histogram called ``name`` with upper bucket bounds ``buckets``."""
        metric: Histogram = self._get(
            name, Histogram, lambda: Histogram(self, name, help_text, buckets)
        )
        if labels is not None:
            metric._declare(labels)
        return metric

    def get(self, name: str) -> Counter | Gauge | None:
        """A registered counter or gauge, or None."""
        metric = self._metrics.get(name)
        return metric if isinstance(metric, Counter | Gauge) else None

    def refresh(self) -> None:
        """Write this process's callback gauges and ``process_*`` (multiprocess mode)."""
        if self.multiprocess_dir is None:
            return
        for metric in list(self._metrics.values()):
            if isinstance(metric, Gauge):
                metric.refresh()
        if self._mirror is not None:
            self._mirror.refresh()

    def _refresh_soon(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._refresh_loop, name="slipstream-metrics", daemon=True
            )
            self._thread.start()

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self._refresh_s):
            try:
                self.refresh()
            except Exception:  # a failing callback must not stop the others' updates
                logger.exception("refreshing the metrics failed")

    def close(self) -> None:
        """Stop the refresh thread (multiprocess mode)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def render(self) -> str:
        """Prometheus text exposition format, version 0.0.4 (the whole node's)."""
        self.refresh()
        return prom.generate_latest(self._render).decode()
