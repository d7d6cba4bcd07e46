"""Benchmark harnesses: the fan-out benchmark (WebSocket vs long-polling).

Modules:

* :mod:`slipstream.app.bench.wire`: sans-I/O cores of the lean load-generator
  clients (RFC 6455 client framing, HTTP/1.1 response parsing).
* :mod:`slipstream.app.bench.adapter` and :mod:`slipstream.app.bench.slipstream_adapter`:
  what the clients need to know of a server's protocol.
* :mod:`slipstream.app.bench.subscribers` and :mod:`slipstream.app.bench.loadgen`: raw
  asyncio subscribers and the generator that opens many of them;
  :mod:`slipstream.app.bench.generator` runs one in its own process.
* :mod:`slipstream.app.bench.race` and :mod:`slipstream.app.bench.server`: a simulated
  race's 2 Hz frames, fed to a broadcast-node process.
* :mod:`slipstream.app.bench.stats`: /proc readings and the figures of a run.
* :mod:`slipstream.app.bench.fanout`: one run; :mod:`slipstream.app.bench.sweep`: the
  sweep; :mod:`slipstream.app.bench.plots` and :mod:`slipstream.app.bench.report`: PNG
  plots and ``REPORT.md``; :mod:`slipstream.app.bench.cli`: ``slipstream bench fanout``.

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
