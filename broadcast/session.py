"""One fan's WebSocket session: hello, control messages, resume, then live.

Live ticks are written by the hub (shared messages via ``broadcast()``).  The
session itself only writes what is its own: the hello, acks, errors, and the
replay of missed ticks, which it sends with flow control and re-checks until
it has caught up; it turns live in the same step as the last check, so no
tick slips between replay and live stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from broadcast.fanout import EncodedTick
from broadcast.guard import SessionGuard
from broadcast.history import HistoryUnavailable
from broadcast.hub import Hub
from broadcast.protocol import (
    CLOSE_BAD_INPUT,
    ProtocolError,
    Subscribe,
    encode_message,
    parse_control,
)
from broadcast.ring import ResumePlan, notice_message, plan_resume
from slipstream.catalogue import CATALOGUE
from slipstream.codecs import CODECS

__all__ = ["Session"]

logger = logging.getLogger(__name__)


class Session:
    """State of one WebSocket fan (read and written by the hub on live ticks)."""

    def __init__(
        self, conn: ServerConnection, hub: Hub, server_id: str, guard: SessionGuard | None = None
    ) -> None:
        self.guard = guard  # tokens and limits (docs/security.md)
        self.conn = conn
        self.hub = hub
        self.server_id = server_id
        self.sub: Subscribe | None = None
        self.live = False
        self.needs_keyframe = True
        self.wait_until: tuple[str, int] | None = None
        self.race: str | None = None
        self.last_tick = -1
        self.behind_from: int | None = None
        self.behind_ticks = 0
        self.errors = 0
        self._closing: asyncio.Task[None] | None = None

    def close_soon(self, code: int, reason: str) -> None:
        """Start closing the connection (the hub calls this from sync code)."""
        self.live = False
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self.conn.close(code, reason))

    def hello(self) -> bytes:
        """The hello message."""
        return self.hub.hello(self.server_id)

    async def _send(self, message: bytes) -> None:
        await self.conn.send(message)
        self.hub.sent("ws", 1, len(message))

    async def run(self) -> None:
        """Serve the connection until it closes."""
        self.hub.sessions.add(self)
        if self.guard is not None:
            self.guard.start(self.close_soon)  # close when the token expires
        try:
            await self._send(self.hello())
            async for data in self.conn:
                await self._handle(data)
        except ConnectionClosed:
            pass
        finally:
            self.live = False
            self.hub.sessions.discard(self)
            if self.guard is not None:
                self.guard.stop()

    async def _handle(self, data: str | bytes) -> None:
        if self.guard is not None and not self.guard.message(data, self.close_soon):
            return
        try:
            op, sub = parse_control(
                data,
                codecs=list(CODECS),
                default_codec=self.hub.config.default_codec,
                known_cars=self.hub.known_cars or None,
            )
        except ProtocolError as exc:
            await self._error(exc)
            return
        if op == "ping":
            await self._send(encode_message({"t": "pong"}))
        elif op == "unsubscribe":
            self.live = False
            self.sub = None
            await self._send(encode_message({"t": "unsubscribed"}))
        elif op == "keyframe":
            self.needs_keyframe = True
            self.hub.m_keyframes.inc(reason="requested")
        elif sub is not None:
            if self.guard is not None:
                sub = self.guard.subscribe(sub, self.close_soon)  # None: out of scope, closing
            if sub is not None:
                await self._subscribe(sub)

    async def _error(self, exc: ProtocolError) -> None:
        self.errors += 1
        self.hub.m_errors.inc(code=exc.code)
        await self._send(encode_message({"t": "error", "code": exc.code, "message": exc.message}))
        if self.errors >= self.hub.config.max_errors:
            await self.conn.close(CLOSE_BAD_INPUT, "too many bad messages")

    async def _subscribe(self, sub: Subscribe) -> None:
        groups = [CATALOGUE.groups[g].name for g in sub.groups]
        latest = self.hub.ring.latest
        ack = {
            "t": "subscribed",
            "cars": list(sub.cars) if sub.cars is not None else None,
            "groups": groups,
            "codec": sub.codec,
            "race": latest.race if latest else None,
            "tick": latest.tick if latest else None,
        }
        if sub.cursor is None and self.live:
            # Mid-stream change: the next tick is a keyframe of the new subscription.
            self.sub = sub
            self.needs_keyframe = True
            await self._send(encode_message(ack))
            return
        self.live = False
        self.sub = sub
        await self._send(encode_message(ack))
        plan = plan_resume(self.hub.ring, sub.cursor, sub.keyframe)
        history = False
        if plan.jump and sub.cursor is not None and latest is not None:
            history = self.hub.history_reaches(sub.cursor.race, sub.cursor.tick)
            if history:  # past the ring, but the bus still has it
                plan = ResumePlan([], None, False, sub.keyframe)
        if plan.notice is not None:
            await self._send(plan.notice)
            self.hub.m_keyframes.inc(reason="resume_gap")
        self.wait_until = None
        self.needs_keyframe = plan.keyframe_first
        self.race, self.last_tick = None, -1
        if plan.jump and latest is not None:
            await self._send(latest.message(sub.key, True))
            self.race, self.last_tick = latest.race, latest.tick
            self.needs_keyframe = False
        elif sub.cursor is not None:
            self.race, self.last_tick = sub.cursor.race, sub.cursor.tick
            if plan.wait_until >= 0:
                self.wait_until = (sub.cursor.race, plan.wait_until)
            if plan.replay or history:
                self.hub.m_replays.inc()
            if history:
                await self._send_history(sub)
        await self._catch_up(sub)

    async def _catch_up(self, sub: Subscribe) -> None:
        """Send ticks the ring holds past ``last_tick`` until none are left, then go live."""
        while True:
            if self.sub is not sub:
                return  # re-subscribed meanwhile
            latest = self.hub.ring.latest
            pending = None
            if self.race is not None and latest is not None and latest.race == self.race:
                pending = self.hub.ring.after(self.race, self.last_tick)
                if pending is None and self.hub.history_reaches(self.race, self.last_tick):
                    # Live ticks pushed the ring past us during a replay from the bus:
                    # the bus still has the ticks in between, so re-read those too.
                    before = self.last_tick
                    await self._send_history(sub)
                    if self.last_tick > before:
                        continue
                if pending is None:
                    # The ring moved past us during the replay: keyframe next tick.
                    self.needs_keyframe = True
                    text = f"ticks after {self.last_tick} are past what this node can replay"
                    await self._send(
                        notice_message("resume_gap", text, self.race, self.last_tick + 1, None)
                    )
            if not pending:
                self.live = True
                return
            for tick in pending:
                await self._send_tick(tick, sub)

    async def _send_history(self, sub: Subscribe) -> None:
        """Send the ticks between the cursor and the ring, re-read from the bus."""
        assert self.race is not None
        try:
            # aclosing: a fan that leaves mid-way must not keep the bus consumer open.
            async with contextlib.aclosing(
                self.hub.history_chunks(self.race, self.last_tick)
            ) as chunks:
                async for chunk in chunks:
                    for tick in chunk:
                        await self._send_tick(tick, sub)
        except HistoryUnavailable as exc:
            # What was sent stands; _catch_up notices the gap that is left.
            logger.info("resume from the bus stopped: %s", exc)

    async def _send_tick(self, tick: EncodedTick, sub: Subscribe) -> None:
        """Send one tick (and its events) of a replay."""
        for event in tick.event_messages():
            await self._send(event)
        await self._send(tick.message(sub.key, self.needs_keyframe))
        self.needs_keyframe = False
        self.hub.m_replayed.inc()
        self.race, self.last_tick = tick.race, tick.tick
