"""Benchmark harnesses: the fan-out benchmark (WebSocket vs long-polling).

Modules:

* :mod:`slipstream.bench.wire`: sans-I/O cores of the lean load-generator
  clients (RFC 6455 client framing, HTTP/1.1 response parsing).
* :mod:`slipstream.bench.adapter` and :mod:`slipstream.bench.slipstream_adapter`:
  what the clients need to know of a server's protocol.
* :mod:`slipstream.bench.subscribers` and :mod:`slipstream.bench.loadgen`: raw
  asyncio subscribers and the generator that opens many of them;
  :mod:`slipstream.bench.generator` runs one in its own process.
* :mod:`slipstream.bench.race` and :mod:`slipstream.bench.server`: a simulated
  race's 2 Hz frames, fed to a broadcast-node process.
* :mod:`slipstream.bench.stats`: /proc readings and the figures of a run.
* :mod:`slipstream.bench.fanout`: one run; :mod:`slipstream.bench.sweep`: the
  sweep; :mod:`slipstream.bench.plots` and :mod:`slipstream.bench.report`: PNG
  plots and ``REPORT.md``; :mod:`slipstream.bench.cli`: ``slipstream bench fanout``.

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
