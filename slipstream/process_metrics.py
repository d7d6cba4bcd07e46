"""Process metrics of a registry: build info, and ``process_*`` for multiprocess mode.

In one process ``prometheus_client``'s own ``ProcessCollector`` gives the
``process_*`` metrics.  In multiprocess mode it would report only the process
answering the scrape, so each process writes its own into the node's
directory instead (:class:`ProcessMirror`), one series per process (``pid``).
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from importlib import metadata

import prometheus_client as prom
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["BuildInfo", "ProcessMirror"]


class BuildInfo(Collector):
    """``slipstream_build_info{version, python, prometheus_client} 1``."""

    def __init__(self) -> None:
        try:
            version = metadata.version("slipstream")
        except metadata.PackageNotFoundError:
            version = "unknown"
        self._labels = [version, platform.python_version(), metadata.version("prometheus_client")]

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "slipstream_build_info",
            "The running Slipstream's version (always 1)",
            labels=["version", "python", "prometheus_client"],
        )
        family.add_metric(self._labels, 1.0)
        yield family


class ProcessMirror:
    """The ``process_*`` metrics of this process, written to the shared directory."""

    GAUGES = (
        "process_open_fds",
        "process_max_fds",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_start_time_seconds",
    )

    def __init__(self) -> None:
        self._source = prom.ProcessCollector(registry=None)
        self._gauges = {
            name: prom.Gauge(name, name, registry=None, multiprocess_mode="liveall")
            for name in self.GAUGES
        }
        self._cpu = prom.Counter("process_cpu_seconds_total", "Total CPU s", registry=None)
        self._cpu_seen = 0.0

    def refresh(self) -> None:
        for family in self._source.collect():
            for sample in family.samples:
                if sample.name in self._gauges:
                    self._gauges[sample.name].set(sample.value)
                elif sample.name == "process_cpu_seconds_total" and sample.value > self._cpu_seen:
                    self._cpu.inc(sample.value - self._cpu_seen)
                    self._cpu_seen = sample.value
