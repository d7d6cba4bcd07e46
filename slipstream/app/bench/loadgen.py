"""A lean load generator: many subscribers of one transport against one server.

:class:`LoadGenerator` opens subscribers (:mod:`slipstream.app.bench.subscribers`)
a bounded number at a time and reads their shared
:class:`~slipstream.app.bench.subscribers.Tally`.

The window is a range of tick numbers, so the share of expected updates
delivered is exact: each subscriber should see each tick of the window once.
"""

from __future__ import annotations

import asyncio
import logging
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

from slipstream.app.bench import BenchError
from slipstream.app.bench.adapter import Subscription, WireAdapter
from slipstream.app.bench.sse_subscriber import SseSubscriber
from slipstream.app.bench.subscribers import PollSubscriber, Subscriber, Tally, WsSubscriber

__all__ = ["GeneratorResult", "LoadGenerator"]

logger = logging.getLogger(__name__)

_CONNECT_ATTEMPTS = 3


@dataclass(slots=True)
class GeneratorResult:
    """What one generator measured in the window (see :class:`Tally`)."""

    subscribers: int
    connected: int
    failed: int
    closed: int
    delivered: int
    bytes_down: int
    bytes_up: int
    ticks_seen: int
    latencies_us: bytes
    emitted_ns: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class LoadGenerator:
    """Opens and holds ``count`` subscribers of one transport against one server.

    Use ``await open(count)``, then :meth:`set_window`, read :attr:`tally`
    while it runs, then :meth:`result` and ``await close()``.
    """

    def __init__(
        self,
        transport: str,
        host: str,
        port: int,
        adapter: WireAdapter,
        sub: Subscription,
        *,
        local_host: str | None = None,
        connect_concurrency: int = 100,
        connect_timeout_s: float = 10.0,
    ) -> None:
        if transport not in ("ws", "sse", "poll"):
            raise ValueError(f"transport must be 'ws', 'sse' or 'poll', got {transport!r}")
        if connect_concurrency < 1 or connect_timeout_s <= 0:
            raise ValueError("connect_concurrency and connect_timeout_s must be positive")
        self.transport = transport
        self.host = host
        self.port = port
        self.adapter = adapter
        self.sub = sub
        self.local_host = local_host
        self.connect_concurrency = connect_concurrency
        self.connect_timeout_s = connect_timeout_s
        self.tally = Tally()
        self.subscribers: list[Subscriber] = []
        self.failed = 0

    def _factory(self) -> Callable[[], Subscriber]:
        kind = {"ws": WsSubscriber, "sse": SseSubscriber, "poll": PollSubscriber}[self.transport]
        return lambda: kind(self.tally, self.adapter, self.sub, self.host, self.port)

    async def _open_one(self, factory: Callable[[], Subscriber]) -> None:
        loop = asyncio.get_running_loop()
        local = (self.local_host, 0) if self.local_host else None
        for attempt in range(1, _CONNECT_ATTEMPTS + 1):
            proto: Subscriber | None = None
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    _, proto = await loop.create_connection(
                        factory, self.host, self.port, local_addr=local
                    )
                    await proto.ready
                self.subscribers.append(proto)
                return
            except (OSError, TimeoutError, BenchError) as exc:
                if proto is not None:
                    # A timed-out attempt must not subscribe later beside its retry.
                    proto.closing = True
                    if proto.transport is not None:
                        proto.transport.abort()
                    if not proto.ready.done():
                        proto.ready.cancel()
                if attempt == _CONNECT_ATTEMPTS:
                    self.failed += 1
                    self.tally.error(f"connect failed {attempt} times: {exc!r}")
                    return
                # A refused or dropped connect (full accept queue) is retried after a pause.
                await asyncio.sleep(0.5 * attempt)

    async def open(self, count: int, progress: Callable[[int], None] | None = None) -> None:
        """Open ``count`` more subscribers, ``connect_concurrency`` at a time.

        A connection that fails is tried again, up to 3 times; subscribers that
        never got in are counted in :attr:`failed`, not raised.
        """
        if count < 0:
            raise ValueError("count must be >= 0")
        factory = self._factory()
        sem = asyncio.Semaphore(self.connect_concurrency)

        async def one() -> None:
            async with sem:
                await self._open_one(factory)

        tasks = [asyncio.ensure_future(one()) for _ in range(count)]
        pending = set(tasks)
        while pending:
            _, pending = await asyncio.wait(pending, timeout=0.5)
            if progress is not None:
                progress(count - len(pending))

    @property
    def connected(self) -> int:
        """Subscribers that subscribed and are still open."""
        return sum(1 for s in self.subscribers if s.alive)

    def set_window(self, lo: int, hi: int) -> None:
        """Count ticks ``lo <= tick < hi`` from now on (resets the window figures)."""
        if hi <= lo:
            raise ValueError("window must hold at least one tick")
        t = self.tally
        t.window_lo, t.window_hi = lo, hi
        t.delivered = t.bytes_down = t.bytes_up = 0
        t.latencies_us = array("q")
        t.emitted_ns = {}

    def result(self) -> GeneratorResult:
        """The window's figures so far."""
        t = self.tally
        return GeneratorResult(
            subscribers=len(self.subscribers) + self.failed,
            connected=self.connected,
            failed=self.failed,
            closed=t.closed,
            delivered=t.delivered,
            bytes_down=t.bytes_down,
            bytes_up=t.bytes_up,
            ticks_seen=t.ticks_seen,
            latencies_us=t.latencies_us.tobytes(),
            emitted_ns=dict(t.emitted_ns),
            errors=list(t.errors),
        )

    async def close(self, timeout_s: float = 5.0) -> None:
        """Close every subscriber and wait (bounded) for the transports to go."""
        for sub in self.subscribers:
            sub.close()
        lost = [s.lost for s in self.subscribers]
        if lost:
            # Close frames get a chance to leave; whatever is left is aborted.
            _, pending = await asyncio.wait(lost, timeout=timeout_s)
            if pending:
                for sub in self.subscribers:
                    if sub.transport is not None and not sub.lost.done():
                        sub.transport.abort()
                await asyncio.wait(pending, timeout=1.0)
        for sub in self.subscribers:
            if not sub.ready.done():
                sub.ready.cancel()
