"""A broadcast node: reads every partition of the frames and events topics and
serves fans on one port (WebSocket ``/ws``, ``/v1/poll``, ``/v1/channels``,
``/healthz``, ``/metrics``, ``/``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid

from aiohttp import web

from broadcast.admin import RaceInfo, add_admin_routes
from broadcast.config import BroadcastConfig
from broadcast.dispatch import DispatchProtocol
from broadcast.guard import Guard
from broadcast.history import BusHistory, TickIndex
from broadcast.hub import Hub
from broadcast.longpoll import make_app
from broadcast.sse import add_sse_routes
from broadcast.ticks import TickAssembler
from broadcast.ws import WsServer
from slipstream.bus import Bus, Consumer, Record, TopicPartition, partition_for
from slipstream.config import DEFAULT_PARTITIONS
from slipstream.errors import ConfigError
from slipstream.gate import Gate
from slipstream.metrics import Registry
from slipstream.proxies import TrustedProxies
from slipstream.records import (
    Frame,
    RaceEvent,
    RecordError,
    car_key,
    decode_event,
    decode_frame,
)

__all__ = ["BroadcastServer"]

logger = logging.getLogger(__name__)

#: Longest a starting node reads the bus before it accepts fans anyway.
CATCH_UP_TIMEOUT_S = 60.0


class BroadcastServer:
    """A broadcast node on ``bus``.

    Args:
        config: Node configuration.
        bus: A started bus; the node reads ``slipstream.frames`` and
            ``slipstream.events`` from the beginning, every partition, no group.
        registry: Metrics registry rendered at ``/metrics`` (a new one if None).
        gate: Tokens and limits (docs/security.md); None for an open node.
    """

    def __init__(
        self,
        config: BroadcastConfig,
        bus: Bus,
        registry: Registry | None = None,
        gate: Gate | None = None,
    ) -> None:
        self.config = config
        self.bus = bus
        self.registry = registry if registry is not None else Registry()
        self.server_id = config.server_id or f"node-{uuid.uuid4().hex[:8]}"
        if config.server_id is None:
            config = self.config = dataclasses.replace(config, server_id=self.server_id)
        self.hub = Hub(config, self.registry)
        self.guard = Guard(
            gate or Gate(), self.registry, TrustedProxies.parse(config.trusted_proxies)
        )
        self.ws = WsServer(self.hub, self.guard)
        self.race_info = RaceInfo()
        self._server: asyncio.Server | None = None
        self._runner: web.AppRunner | None = None
        self._consumer: Consumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._catch_up_to: dict[TopicPartition, int] = {}
        self._caught_up = asyncio.Event()
        self._port = config.port
        r = self.registry
        self._m_frames = r.counter("slipstream_broadcast_frames_total", "Frames read by this node")
        self._m_bad = r.counter(
            "slipstream_broadcast_bad_records_total", "Records this node could not decode"
        )
        self._m_late = r.counter(
            "slipstream_broadcast_late_frames_total",
            "Frames dropped because their tick had gone out without them",
            labels=(),
        )
        self._late_counted = 0
        self.metrics = self.hub.metrics

    @property
    def port(self) -> int:
        """The bound port (the real one when port 0 was asked)."""
        return self._port

    @property
    def url(self) -> str:
        """Base HTTP URL of the node, e.g. ``http://127.0.0.1:8000``."""
        host = self.config.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self._port}"

    @property
    def ws_url(self) -> str:
        """WebSocket URL of the node."""
        return "ws" + self.url[4:] + "/ws"

    async def __aenter__(self) -> BroadcastServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        """Read what the bus already holds, then bind the port and serve fans.

        A node that starts mid-race fills its replay ring and tick index from
        the bus before it accepts a fan (up to ``CATCH_UP_TIMEOUT_S``), so a
        fan resuming here gets what a node that ran all along would give it.

        Raises:
            ConfigError: The address cannot be bound (e.g. the port is in use).
        """
        cfg = self.config
        app = make_app(self.hub, self.registry, self.server_id)
        self.guard.install(app)
        add_admin_routes(app, self.hub, self.race_info, self.registry)
        add_sse_routes(app, self.hub)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        http_factory = self._runner.server
        assert http_factory is not None
        loop = asyncio.get_running_loop()
        ws = self.ws

        async def create_server() -> asyncio.Server:
            return await loop.create_server(
                lambda: DispatchProtocol(ws.protocol, http_factory, cfg.socket_send_buffer_bytes),
                cfg.host,
                cfg.port,
                # asyncio's default of 100 drops SYNs when thousands of fans reconnect at
                # once; they then wait for TCP's retransmit backoff (1, 3, 7... s).
                backlog=4096,
                reuse_port=cfg.reuse_port or None,
            )

        await self.bus.ensure_topic(cfg.frames_topic, DEFAULT_PARTITIONS)
        await self.bus.ensure_topic(cfg.events_topic, 1)
        partitions = await self.bus.partitions(cfg.frames_topic)
        self._assembler = assembler = TickAssembler(
            cfg.tick_wait_s,
            lambda car: partition_for(car_key(car), partitions),
            max_wait_s=cfg.tick_wait_max_s,
        )
        self.registry.gauge(
            "slipstream_tick_wait_seconds",
            "How long a tick now waits for a late car (grows while frames come late)",
            mode="livemax",
        ).set_function(lambda: assembler.current_wait_s)
        self._index = TickIndex()
        if cfg.history_ticks > 0:
            self.hub.history = BusHistory(self.bus, cfg.frames_topic, self._index, self.hub.stats)
            self.hub.fans.history_index = self._index
        self._consumer = await self.bus.consumer(
            [cfg.frames_topic, cfg.events_topic], group_id=None, auto_offset_reset="earliest"
        )
        self._catch_up_to = await self._consumer.end_offsets(self._consumer.assignment())
        self._task = asyncio.create_task(self._consume(), name="broadcast-consume")
        waiter = asyncio.ensure_future(self._caught_up.wait())
        await asyncio.wait([waiter, self._task], timeout=CATCH_UP_TIMEOUT_S,
                           return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        waiter.cancel()
        if self._task.done():
            failed, self._task = self._task, None
            await self.stop()
            failed.result()  # the reader failed: raise why
        if not self._caught_up.is_set():
            logger.warning("still reading the bus after %g s; accepting fans", CATCH_UP_TIMEOUT_S)
        try:
            server = await create_server()
        except OSError as exc:
            await self.stop()
            raise ConfigError(
                f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}; "
                "is another node running there? pick another --port"
            ) from None
        self._server = server
        self._port = server.sockets[0].getsockname()[1]
        self.hub.start()
        self.ws.start()
        logger.info("broadcast node %s listening on %s", self.server_id, self.url)

    async def stop(self) -> None:
        """Stop gracefully: tell every fan to reconnect elsewhere, then close."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        self.hub.close()
        server = self._server
        if server is not None:
            self._server = None
            server.close()  # no new connections
            await self.ws.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        # aiohttp keeps a cache of handlers (so of this node's app) per process:
        # let go of the ticks at least, for processes that start many nodes.
        self.hub.fans.clear()
        self.hub.history = None
        self.hub.fans.history_index = None
        logger.info("broadcast node %s stopped", self.server_id)

    # -- the bus -------------------------------------------------------------------

    async def _consume(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        loop = asyncio.get_running_loop()
        assembler = self._assembler
        frames_topic = self.config.frames_topic
        index = self._index
        while True:
            deadline = assembler.next_deadline()
            timeout_ms = 200
            if deadline is not None:
                timeout_ms = max(1, min(timeout_ms, int((deadline - loop.time()) * 1000) + 1))
            records = await consumer.getmany(timeout_ms=timeout_ms)
            now = loop.time()
            ticks = []
            frames = 0
            decoded: list[tuple[Frame | RaceEvent, Record]] = []
            for record in records:
                try:
                    if record.topic == frames_topic:
                        decoded.append((decode_frame(record.value), record))
                        frames += 1
                    else:
                        decoded.append((decode_event(record.value), record))
                except RecordError as exc:
                    self._m_bad.inc(reason=exc.reason)
            # Topics are not ordered with each other: the current race's records
            # (its last frames, then its race_end) go before a next race's.
            current = assembler.race
            decoded.sort(key=lambda item: item[0].race != current)
            for item, record in decoded:
                if isinstance(item, Frame):
                    ticks += assembler.add_frame(item, record.partition, now)
                    self.metrics.frame_read(item.race, item.tick, record.timestamp_ms)
                    if item.race == assembler.race:
                        index.add_frame(item.race, item.tick, record.partition, record.offset)
                else:
                    ticks += assembler.add_event(item, now)
            ticks += assembler.poll(loop.time())
            if frames:
                self._m_frames.inc(float(frames))
            if ticks:
                for data in ticks:
                    index.add_tick(data)
                self.race_info.observe(ticks)
                self.hub.publish(ticks, assembler.known_cars)
                if self._caught_up.is_set():  # the bus's backlog is not lag
                    self.metrics.ticks_emitted(ticks)
            if assembler.late_frames > self._late_counted:
                self._m_late.inc(float(assembler.late_frames - self._late_counted))
                self._late_counted = assembler.late_frames
            if not self._caught_up.is_set():
                await self._check_caught_up(consumer)

    async def _check_caught_up(self, consumer: Consumer) -> None:
        """Note when every partition is read up to where it ended at start."""
        for tp, end in self._catch_up_to.items():
            if await consumer.position(tp) < end:
                return
        self._caught_up.set()
