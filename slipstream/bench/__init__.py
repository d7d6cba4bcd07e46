"""Benchmark harnesses: the fan-out benchmark (WebSocket vs long-polling).

Modules:

* :mod:`slipstream.bench.wire`: sans-I/O cores of the lean load-generator
  clients (RFC 6455 client framing, HTTP/1.1 response parsing).
* :mod:`slipstream.bench.stats`: pure figures (percentiles, /proc readings).
* :mod:`slipstream.bench.loadgen`: a generator process opening many
  subscribers over raw asyncio protocols.
* :mod:`slipstream.bench.server`: a broadcast-node process fed with
  pre-computed frames of a simulated race at 2 Hz.
* :mod:`slipstream.bench.fanout`: the orchestrator (one run, and the sweep).
* :mod:`slipstream.bench.plots` and :mod:`slipstream.bench.report`: PNG plots
  and ``REPORT.md``.

Exceptions::

    SlipstreamError
    └── BenchError              a benchmark could not be carried out
        └── WireError (also ValueError)   a peer sent bytes the clients cannot parse
"""

from __future__ import annotations

from slipstream.errors import SlipstreamError

__all__ = ["BenchError", "WireError"]


class BenchError(SlipstreamError):
    """A benchmark could not be carried out; the message says why."""


class WireError(BenchError, ValueError):
    """A peer sent bytes that the load-generator clients cannot parse."""
