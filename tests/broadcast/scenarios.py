"""The fan-session scenarios: what any transport's fan must see, written once.

Each scenario drives a real node on the in-process bus (ticks written by the
:class:`~tests.broadcast.helpers.Feeder`, each waited for) and one fan of the
transport under test (:mod:`tests.broadcast.fans`), and returns the stream the
fan must have received: the oracle, built from the feeder's deterministic
values, the same for WebSocket, SSE and long-poll.  The test compares the
fan's normalised stream with it (so no gap, no duplicate, the same notices on
every transport) and its outcome's name with the scenario's; the table that
names each scenario's outcome and marks is in tests/broadcast/test_scenarios.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from broadcast.config import BroadcastConfig
from broadcast.server import BroadcastServer
from slipstream.auth import AuthConfig, mint_token
from slipstream.bus import MemoryBus
from slipstream.catalogue import CATALOGUE
from slipstream.gate import Gate
from slipstream.metrics import Counter
from slipstream.testing import unique_name
from tests.broadcast.fans import FANS, Fan, WsFan
from tests.broadcast.helpers import Feeder, frame_values
from tests.broadcast.normalised import Entry, Sub, missing_as_none

DROPS = "slipstream_slow_fan_drops_total"
CUTS = "slipstream_slow_fan_disconnects_total"
SECRET = "scenario-secret-" + "s" * 32
CARS = (1, 7, 24, 48)
SEED = Sub(cars=(1, 24), groups=("tyres", "engine"))
#: Every car and group in the full codec: a tick big enough to fill small buffers fast.
HEAVY = Sub(codec="full")
WITNESS = Sub(cars=(1,), groups=("tyres",))
#: A small ring and a short bus history: ring, history and past-history are a few ticks apart.
BASE_CONFIG: dict[str, Any] = {
    "replay_ticks": 4,
    "history_ticks": 4,
    "tick_wait_s": 0.5,
    "poll_hold_s": 1.0,
}
SLOW_CONFIG: dict[str, Any] = {
    "max_send_buffer_bytes": 1024,
    "socket_send_buffer_bytes": 4096,
    "slow_fan_ticks": 4,
    "close_timeout_s": 2.0,
    # The handler of an event stream cut for being slow only notices at its next
    # heartbeat, and the node's stop waits for it: keep that wait short.
    "ping_interval_s": 0.5,
}
#: A bad control message as the WebSocket and a control post send it, and as a poll's query.
BAD_CODEC = ('{"op": "subscribe", "codec": "zip"}', {"codec": "zip"})
MALFORMED = ("{oops", None)


def tick(race: str, number: int, sub: Sub, keyframe: bool) -> Entry:
    """The oracle of a tick message: every subscribed car has a frame at every tick."""
    wanted = {g.name for g in CATALOGUE.resolve_groups(list(sub.groups) if sub.groups else None)}
    channels = [i for i, c in enumerate(CATALOGUE) if c.group in wanted]
    cars = sorted(sub.cars) if sub.cars is not None else sorted(CARS)
    values = tuple(
        (car, missing_as_none(frame_values(race, number, car)[channels])) for car in cars
    )
    return ("tick", race, number, keyframe, (), values)


def deltas(race: str, ticks: range, sub: Sub = SEED) -> list[Entry]:
    return [tick(race, t, sub, False) for t in ticks]


def seeded(race: str = "R1", sub: Sub = SEED) -> list[Entry]:
    """What :meth:`Rig.seed` gives the fan: a keyframe of tick 2, tick 3 live."""
    return [tick(race, 2, sub, True), tick(race, 3, sub, False)]


@dataclass
class Rig:
    """A node, its feeder and the fan under test (plus what a scenario adds)."""

    bus: MemoryBus
    server: BroadcastServer
    feeder: Feeder
    fan: Fan
    extra: list[Fan] = field(default_factory=list)

    def new_fan(self, small_buffers: bool = False, url: str | None = None) -> Fan:
        fan = FANS[self.fan.transport](url or self.server.url, small_buffers=small_buffers)
        self.extra.append(fan)
        return fan

    async def feed(
        self, ticks: range, events: dict[int, str] | None = None, feeder: Feeder | None = None
    ) -> None:
        """Feed ticks one at a time, each emitted before the next is written.

        An event of tick T goes out before tick T-1's frames: the node has read
        it when it emits T, so it travels with T on every transport.
        """
        feeder = feeder or self.feeder
        server = self.server if feeder is self.feeder else None
        for t in ticks:
            if events and t + 1 in events:
                await feeder.event(t + 1, events[t + 1])
            await feeder.tick(t)
            if server is not None:
                await emitted(server, feeder.race, t)

    async def seed(self, sub: Sub = SEED) -> None:
        """Race start and ticks 0..2; the fan joins (a keyframe of 2) and gets 3 live."""
        await self.feeder.start_race()
        await self.feed(range(3))
        await self.fan.connect(sub)
        await self.fan.until_tick(2)
        await self.feed(range(3, 4))
        await self.fan.until_tick(3)

    def metric(self, name: str) -> float:
        """A counter of the node's registry (docs/protocol.md, Metrics), summed over labels."""
        metric = self.server.registry.get(name)
        return metric.total() if isinstance(metric, Counter) else 0.0


async def emitted(server: BroadcastServer, race: str, number: int, timeout_s: float = 10) -> None:
    """Wait until the node has emitted tick ``number`` of ``race``.

    The one place the table reads the node's insides (its ring and tick wake-up,
    as ``helpers.wait_for_tick`` does): no fan-facing interface says when a tick
    has been emitted.
    """
    async with asyncio.timeout(timeout_s):
        while True:
            latest = server.hub.ring.latest
            if latest is not None and latest.race == race and latest.tick >= number:
                return
            await server.hub.wait_tick(timeout_s)


@contextlib.asynccontextmanager
async def serve(
    bus: MemoryBus, gate: Gate | None = None, **overrides: Any
) -> AsyncIterator[tuple[BroadcastServer, Feeder]]:
    """A node on port 0 on fresh topics of ``bus``, and a feeder of CARS for them."""
    frames, events = unique_name("frames"), unique_name("events")
    await bus.ensure_topic(frames, 4)
    await bus.ensure_topic(events, 1)
    config = BroadcastConfig(
        port=0, frames_topic=frames, events_topic=events, **(BASE_CONFIG | overrides)
    )
    async with BroadcastServer(config, bus, gate=gate) as server:
        yield server, Feeder(bus, cars=CARS, frames_topic=frames, events_topic=events)


def auth_gate() -> Gate:
    return Gate(AuthConfig(secret=SECRET, enabled=True))


# -- the scenarios -------------------------------------------------------------------------


async def resume_in_ring(rig: Rig) -> list[Entry]:
    await rig.seed()
    await rig.fan.disconnect()
    await rig.feed(range(4, 6), events={5: "flag"})  # the ring holds 2..5
    await rig.fan.connect(SEED, rig.fan.cursor)
    await rig.fan.until_tick(5)
    await rig.feed(range(6, 8))
    await rig.fan.until_tick(7)
    flag = ("event", "R1", 5, "flag")
    return seeded() + deltas("R1", range(4, 5)) + [flag] + deltas("R1", range(5, 8))


async def resume_from_history(rig: Rig) -> list[Entry]:
    await rig.seed()
    await rig.fan.disconnect()
    await rig.feed(range(4, 10), events={5: "flag"})  # ring 6..9; 4, 5 only on the bus
    await rig.fan.connect(SEED, rig.fan.cursor)
    await rig.fan.until_tick(9)
    assert rig.metric("slipstream_history_ticks_total") >= 2  # 4 and 5 came from the bus
    await rig.feed(range(10, 12))
    await rig.fan.until_tick(11)
    flag = ("event", "R1", 5, "flag")
    return seeded() + deltas("R1", range(4, 5)) + [flag] + deltas("R1", range(5, 12))


async def resume_past_history(rig: Rig) -> list[Entry]:
    await rig.seed()
    await rig.fan.disconnect()
    await rig.feed(range(4, 13))  # ring 9..12, the bus's reach (4 ticks) 5..8: 4 is lost
    await rig.fan.connect(SEED, rig.fan.cursor)
    await rig.fan.until_tick(12)
    await rig.feed(range(13, 14))
    await rig.fan.until_tick(13)
    gap = ("notice", "resume_gap", "R1", 4, 12)
    return [*seeded(), gap, tick("R1", 12, SEED, True), *deltas("R1", range(13, 14))]


async def cursor_from_another_race(rig: Rig) -> list[Entry]:
    rig.feeder.race = "R0"
    await rig.seed()
    await rig.fan.disconnect()
    await rig.feeder.event(4, "race_end")
    rig.feeder.race = "R1"
    await rig.feeder.start_race()
    await rig.feed(range(4))
    await rig.fan.connect(SEED, rig.fan.cursor)  # R0:3
    await rig.fan.until_tick(3, "R1")
    await rig.feed(range(4, 5))
    await rig.fan.until_tick(4, "R1")
    changed = ("notice", "race_changed", "R1", None, 3)
    return [*seeded("R0"), changed, tick("R1", 3, SEED, True), *deltas("R1", range(4, 5))]


async def next_race_while_live(rig: Rig) -> list[Entry]:
    await rig.seed()
    # Served meanwhile: a poller polls (and is held) while the races change.
    waiting = asyncio.create_task(rig.fan.until(lambda f: f.has_tick(2, "R2")))
    await rig.feeder.event(4, "race_end")  # ends R1 with one more, empty, tick
    await emitted(rig.server, "R1", 4)
    rig.feeder.race = "R2"
    await rig.feeder.start_race()
    await rig.feed(range(3))
    await waiting
    empty = ("tick", "R1", 4, False, SEED.cars, ())
    return [
        *seeded(),
        ("event", "R1", 4, "race_end"),
        empty,
        ("event", "R2", 0, "race_start"),
        tick("R2", 0, SEED, True),
        *deltas("R2", range(1, 3)),
    ]


async def cursor_ahead_of_the_node(rig: Rig) -> list[Entry]:
    # The fan comes from a node that is ahead; this one has only reached tick 3.
    async with serve(rig.bus) as (behind, behind_feeder):
        await behind_feeder.start_race()
        for t in range(4):
            await behind_feeder.tick(t)
        await emitted(behind, "R1", 3)
        await rig.seed()
        await rig.feed(range(4, 6))
        await rig.fan.until_tick(5)
        await rig.fan.disconnect()
        rig.fan.base_url = behind.url
        await rig.fan.connect(SEED, rig.fan.cursor)  # R1:5, ahead of the node's 3
        for t in range(4, 8):
            await behind_feeder.tick(t)
            await emitted(behind, "R1", t)
        await rig.fan.until_tick(7)
        await rig.fan.disconnect()
    return seeded() + deltas("R1", range(4, 8))


async def subscription_change(rig: Rig) -> list[Entry]:
    before, after = Sub(cars=(1,), groups=("tyres",)), Sub(cars=(24, 48), groups=("engine",))
    await rig.seed(before)
    await rig.fan.change(after)
    await rig.feed(range(4, 6))
    await rig.fan.until_tick(5)
    return [*seeded(sub=before), tick("R1", 4, after, True), tick("R1", 5, after, False)]


async def keyframe_request(rig: Rig) -> list[Entry]:
    await rig.seed()
    await rig.fan.control("keyframe")
    await rig.feed(range(4, 6))
    await rig.fan.until_tick(5)
    return [*seeded(), tick("R1", 4, SEED, True), *deltas("R1", range(5, 6))]


async def unsubscribe_and_back(rig: Rig) -> list[Entry]:
    await rig.seed()
    await rig.fan.control("unsubscribe")
    await rig.fan.change(SEED)  # back, before any tick went by
    await rig.feed(range(4, 6))
    await rig.fan.until_tick(5)
    return [*seeded(), tick("R1", 4, SEED, True), *deltas("R1", range(5, 6))]


async def _stall(rig: Rig, enough: Callable[[], bool]) -> tuple[Fan, Fan, int]:
    """Seed a heavy fan and a witness, stop the heavy one reading, feed ticks until ``enough``.

    The witness (same transport, reading) has each tick before the next is
    fed: the node's fan-out of that tick, the stalled fan's part included, is
    done.  Returns the stalled fan, the witness and the last tick fed.
    """
    await rig.feeder.start_race()
    await rig.feed(range(3))
    fan = rig.fan
    await fan.connect(HEAVY)
    await fan.until_tick(2)
    witness = rig.new_fan()
    await witness.connect(WITNESS)
    await witness.until_tick(2)
    fan.stall()
    last = 2
    while not enough():
        last = await _next_tick(rig, witness, last)
    return fan, witness, last


async def _next_tick(rig: Rig, witness: Fan, last: int) -> int:
    """Feed tick ``last + 1`` and wait until the node has fanned it out (the witness has it)."""
    if last >= 300:
        raise AssertionError("the stalled fan never fell behind")
    await rig.feed(range(last + 1, last + 2))
    await witness.until_tick(last + 1)
    return last + 1


def conflated(got: list[Entry], sub: Sub, race: str = "R1") -> list[Entry]:
    """What a fan that fell behind must have got, given the ticks it did get.

    Every tick with the oracle's values; a tick after a gap is a keyframe right
    behind a ``conflated`` notice naming exactly the ticks dropped; no other
    gap.  (When the node finds the fan behind depends on how fast the kernel
    takes the bytes, so which ticks are dropped is read from the stream.)
    """
    ticks = [e[2] for e in got if e[0] == "tick"]
    assert ticks == sorted(set(ticks)), f"duplicate or out of order: {ticks}"
    want = [tick(race, ticks[0], sub, True)]
    for before, after in itertools.pairwise(ticks):
        gap = after > before + 1
        if gap:
            want.append(("notice", "conflated", race, before + 1, after - 1))
        want.append(tick(race, after, sub, gap))
    return want


async def stalled_fan_conflated(rig: Rig) -> list[Entry]:
    fan, witness, last = await _stall(rig, lambda: rig.metric(DROPS) >= 2)
    fan.resume()
    while True:  # until the fan has room again: the next tick is not dropped
        drops = rig.metric(DROPS)
        last = await _next_tick(rig, witness, last)
        if rig.metric(DROPS) == drops:
            break
    await fan.until_tick(last)
    last = await _next_tick(rig, witness, last)
    await fan.until_tick(last)
    want = conflated(fan.entries, HEAVY)
    # It did fall behind, and came back: a notice, a keyframe, then deltas again.
    assert any(e[:2] == ("notice", "conflated") for e in want)
    assert want[-1] == tick("R1", last, HEAVY, False)
    return want


async def stalled_fan_cut(rig: Rig) -> list[Entry]:
    fan, _, fed = await _stall(rig, lambda: rig.metric(CUTS) >= 1)
    slow_fan_ticks = rig.server.config.slow_fan_ticks
    # Behind that many ticks in a row, at least: the node may have found the fan
    # behind once before and seen it take bytes again (the kernel's buffers filling).
    assert rig.metric(DROPS) >= slow_fan_ticks
    fan.resume()
    await fan.until(lambda f: False)  # to the end of the session
    want = conflated(fan.entries, HEAVY)
    # What the node wrote before the last slow_fan_ticks ticks, as far as it got
    # through (an aborted connection loses what was still in the node's buffer).
    assert want[-1][2] <= fed - slow_fan_ticks, (want[-1][:4], fed)
    return want


async def token_expired_at_connect(rig: Rig) -> list[Entry]:
    await rig.feeder.start_race()
    await rig.feed(range(3))
    expired = mint_token(SECRET, None, None, 60, now=time.time() - 120)
    await rig.fan.connect(SEED, token=expired)
    await rig.fan.until(lambda f: False)
    return []


async def token_expires_mid_stream(rig: Rig) -> list[Entry]:
    issued = time.time() - 1
    short = mint_token(SECRET, None, None, 3, now=issued)  # 1..2 s left
    later = mint_token(SECRET, None, None, 4, now=issued)  # one second more
    rig.fan.token = short
    await rig.feeder.start_race()
    await rig.feed(range(3))
    await rig.fan.connect(SEED, token=short)
    await rig.fan.until_tick(2)
    await rig.feed(range(3, 4))
    await rig.fan.until_tick(3)
    # The node's own clock says when the fan's token has expired: a WebSocket probe
    # whose token expires one second later is closed with 4004 after it.
    probe = WsFan(rig.server.url)
    rig.extra.append(probe)
    await probe.connect(WITNESS, token=later)
    await probe.until(lambda f: False)
    assert probe.outcome == ("closed", 4004)
    await rig.feed(range(4, 5))  # nothing of this may reach the fan any more
    await rig.fan.until(lambda f: f.has_tick(4))
    await rig.fan.settle_outcome()
    return seeded()


def bad_input(message: tuple[str, dict[str, str] | None]) -> Callable[[Rig], Awaitable[Any]]:
    async def scenario(rig: Rig) -> list[Entry]:
        text, query = message
        await rig.feeder.start_race()
        await rig.feed(range(3))
        await rig.fan.connect(SEED)
        await rig.fan.until_tick(2)
        await rig.fan.send_bad(text, query)
        await rig.feed(range(3, 4))  # the previous subscription stays in force
        await rig.fan.until_tick(3)
        await rig.fan.change(SEED)  # and a good one is taken afterwards
        await rig.feed(range(4, 5))
        await rig.fan.until_tick(4)
        error = ("error", "malformed" if query is None else "unknown_codec")
        return [
            tick("R1", 2, SEED, True),
            error,
            *deltas("R1", range(3, 4)),
            tick("R1", 4, SEED, True),
        ]

    return scenario


async def too_many_bad_messages(rig: Rig) -> list[Entry]:
    await rig.feeder.start_race()
    await rig.feed(range(3))
    await rig.fan.connect(SEED)
    await rig.fan.until_tick(2)
    text, query = BAD_CODEC
    for _ in range(rig.server.config.max_errors):
        await rig.fan.send_bad(text, query)
    await rig.fan.until(lambda f: f.outcome is not None)
    errors = [("error", "unknown_codec")] * rig.server.config.max_errors
    return [tick("R1", 2, SEED, True), *errors]
