"""One scenario table, run against WebSocket, SSE and long-poll over real sockets.

Every transport's fan must receive the same normalised stream (ticks with
their decoded values, events, notices, errors; tests/broadcast/normalised.py)
and end the same way, named through :data:`OUTCOME_NAMES`.  The scenarios
themselves are in tests/broadcast/scenarios.py, the fans in fans.py.  A
transport that fails a row today because of a known drift between the
transports is marked ``xfail(strict=True)`` with the drift named; a row that
does not exist on a transport is skipped with why.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from slipstream.bus import MemoryBus
from tests.broadcast.fans import FANS, TRANSPORTS, PollFan
from tests.broadcast.normalised import Entry, Outcome
from tests.broadcast.scenarios import (
    BAD_CODEC,
    MALFORMED,
    SEED,
    SLOW_CONFIG,
    Rig,
    auth_gate,
    bad_input,
    cursor_ahead_of_the_node,
    cursor_from_another_race,
    keyframe_request,
    next_race_while_live,
    resume_from_history,
    resume_in_ring,
    resume_past_history,
    serve,
    stalled_fan_conflated,
    stalled_fan_cut,
    subscription_change,
    token_expired_at_connect,
    token_expires_mid_stream,
    too_many_bad_messages,
    unsubscribe_and_back,
)

#: (transport, raw outcome) -> the one name a scenario expects (None: still served).
OUTCOME_NAMES: dict[tuple[str, Outcome], str] = {
    ("ws", ("closed", 4004)): "token_expired",
    ("sse", ("refused", 401, "token_expired")): "token_expired",
    # An event stream ended by the node at expiry: its last message is a close with 4004.
    ("sse", ("ended", 4004)): "token_expired",
    ("poll", ("refused", 401, "token_expired")): "token_expired",
    ("ws", ("closed", 4008)): "too_slow",
    ("sse", ("cut",)): "too_slow",  # no close code on HTTP: the connection is cut
    ("ws", ("closed", 1008)): "bad_input",
    ("sse", ("refused", 400, "unknown_codec")): "bad_input",
    ("poll", ("refused", 400, "unknown_codec")): "bad_input",
}


def outcome_name(transport: str, outcome: Outcome | None) -> str:
    """The name of a fan's outcome (``open`` while served)."""
    if outcome is None:
        return "open"
    return OUTCOME_NAMES.get((transport, outcome), f"unmapped {outcome}")


@dataclass(frozen=True, slots=True)
class Scenario:
    """One row of the table.

    Attributes:
        name: Test id.
        run: Drives the rig; returns the stream the fan must have received.
        outcome: Name of the fan's outcome (:data:`OUTCOME_NAMES`; ``open``: still served).
        config: Node configuration beyond :data:`BASE_CONFIG`.
        auth: The node requires tokens.
        small_buffers: The fan under test has small socket buffers.
        not_applicable: Transport -> why the scenario does not exist there.
        xfail: Transport -> the known drift it fails on today (strict).
    """

    name: str
    run: Callable[[Rig], Awaitable[list[Entry]]]
    outcome: str = "open"
    config: dict[str, Any] = field(default_factory=dict)
    auth: bool = False
    small_buffers: bool = False
    not_applicable: dict[str, str] = field(default_factory=dict)
    xfail: dict[str, str] = field(default_factory=dict)


NO_STALL = (
    "long-poll has no stalled state: the node holds nothing for a poller between requests, "
    "and a slow poller asks again from its cursor"
)

SCENARIOS = [
    Scenario("resume_in_ring", resume_in_ring),
    Scenario("resume_from_history", resume_from_history),
    Scenario("resume_past_history", resume_past_history),
    Scenario("cursor_from_another_race", cursor_from_another_race),
    Scenario(
        "next_race_while_live",
        next_race_while_live,
        xfail={
            "poll": "a poller's cursor in the race that just ended takes the resume path of "
            "any fan that was away at the race change (the ring holds one race): a "
            "race_changed notice and a keyframe of the new race's latest tick (R1's race_end "
            "only if a poll was held when R1 ended), where a live WebSocket or SSE fan gets "
            "race_end, the empty last tick of R1, race_start and R2's first tick as a "
            "keyframe, and no notice",
        },
    ),
    Scenario("cursor_ahead_of_the_node", cursor_ahead_of_the_node),
    Scenario("subscription_change", subscription_change),
    Scenario("keyframe_request", keyframe_request),
    Scenario(
        "unsubscribe_and_back",
        unsubscribe_and_back,
        not_applicable={"poll": "a poller unsubscribes by not polling: the node holds nothing"},
    ),
    Scenario(
        "stalled_fan_conflated",
        stalled_fan_conflated,
        config=SLOW_CONFIG,
        small_buffers=True,
        not_applicable={"poll": NO_STALL},
    ),
    Scenario(
        "stalled_fan_cut",
        stalled_fan_cut,
        "too_slow",
        config=SLOW_CONFIG,
        small_buffers=True,
        not_applicable={"poll": NO_STALL},
    ),
    Scenario("token_expired_at_connect", token_expired_at_connect, "token_expired", auth=True),
    Scenario(
        "token_expires_mid_stream",
        token_expires_mid_stream,
        "token_expired",
        auth=True,
    ),
    Scenario("bad_input_unknown_codec", bad_input(BAD_CODEC)),
    Scenario(
        "bad_input_malformed",
        bad_input(MALFORMED),
        not_applicable={
            "poll": "a poll has no control message to malform: its query is "
            "parsed field by field (see bad_input_unknown_codec)"
        },
    ),
    Scenario("too_many_bad_messages", too_many_bad_messages, "bad_input", config={"max_errors": 3}),
]


#: Whole scenario, node start and stop included (the slowest waits out a token's expiry).
SCENARIO_TIMEOUT_S = 20.0


def _cases() -> list[Any]:
    cases = []
    for scenario in SCENARIOS:
        for transport in TRANSPORTS:
            marks: list[Any] = []
            if transport in scenario.not_applicable:
                marks.append(pytest.mark.skip(reason=scenario.not_applicable[transport]))
            if transport in scenario.xfail:
                marks.append(pytest.mark.xfail(strict=True, reason=scenario.xfail[transport]))
            cases.append(
                pytest.param(scenario, transport, marks=marks, id=f"{scenario.name}-{transport}")
            )
    return cases


@contextlib.asynccontextmanager
async def rig_for(transport: str, scenario: Scenario | None = None) -> AsyncIterator[Rig]:
    """A node on a fresh in-process bus, configured for ``scenario``, and a fan."""
    bus = MemoryBus()
    await bus.start()
    try:
        gate = auth_gate() if scenario is not None and scenario.auth else None
        config = scenario.config if scenario is not None else {}
        small_buffers = scenario is not None and scenario.small_buffers
        async with serve(bus, gate, **config) as (server, feeder):
            fan = FANS[transport](server.url, small_buffers=small_buffers)
            rig = Rig(bus, server, feeder, fan)
            try:
                yield rig
            finally:
                for other in [fan, *rig.extra]:
                    await other.disconnect()
    finally:
        await bus.stop()


@pytest.mark.parametrize(("scenario", "transport"), _cases())
async def test_scenario(scenario: Scenario, transport: str) -> None:
    async with asyncio.timeout(SCENARIO_TIMEOUT_S), rig_for(transport, scenario) as rig:
        want = await scenario.run(rig)
        got = list(rig.fan.entries)
        outcome = outcome_name(transport, rig.fan.outcome)
    assert _brief(got) == _brief(want)  # a readable diff first
    assert got == want  # then the decoded values too
    assert outcome == scenario.outcome, rig.fan.outcome


def _brief(entries: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Entries without the decoded values (ticks keep race, tick, keyframe and cars)."""
    return [(*e[:5], tuple(car for car, _ in e[5])) if e[0] == "tick" else e for e in entries]


# -- every transport's fans are visible to operators ---------------------------------------


def _visibility_cases() -> list[Any]:
    return [pytest.param(t, id=t) for t in TRANSPORTS]


async def _get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as resp:
        assert resp.status == 200
        return await resp.json() if resp.content_type == "application/json" else await resp.text()


@contextlib.asynccontextmanager
async def connected_fan(transport: str) -> AsyncIterator[tuple[Rig, aiohttp.ClientSession]]:
    """A node with one fan of ``transport`` connected (a poller: with a poll held)."""
    async with rig_for(transport) as rig:
        await rig.feeder.start_race()
        await rig.feed(range(3))
        await rig.fan.connect(SEED)
        await rig.fan.until_tick(2)
        held: asyncio.Task[None] | None = None
        if isinstance(rig.fan, PollFan):
            held = asyncio.create_task(rig.fan.hold())  # nothing new: the node holds it
        try:
            async with aiohttp.ClientSession() as http:
                yield rig, http
        finally:
            if held is not None:
                await rig.feed(range(3, 4))  # releases the held poll
                await held


async def _counted(http: aiohttp.ClientSession, url: str, transport: str, count: Any) -> Any:
    """The JSON (or text) at ``url``; for a poller, asked again on each answer until
    ``count(body)`` is non-zero (a held poll reaches the node a moment after it is sent),
    up to 5 s.  WebSocket and SSE fans are registered once their hello has come."""
    async with asyncio.timeout(5):
        while True:
            body = await _get(http, url)
            if transport != "poll" or count(body):
                return body


@pytest.mark.parametrize("transport", _visibility_cases())
async def test_every_transports_fans_appear_in_healthz(transport: str) -> None:
    async with connected_fan(transport) as (rig, http):
        url = f"{rig.server.url}/healthz"
        health = await _counted(http, url, transport, lambda b: b["subscribers"].get(transport))
        assert health["subscribers"].get(transport) == 1, health
        others = {t: n for t, n in health["subscribers"].items() if t != transport}
        assert set(others.values()) == {0}, health


@pytest.mark.parametrize("transport", _visibility_cases())
async def test_every_transports_fans_appear_in_the_session_list(transport: str) -> None:
    def mine(body: dict[str, Any]) -> list[Any]:
        rows = [r for r in body["sessions"] if r["transport"] == transport]
        if transport == "poll" and not rows and body.get("poll_waiting"):
            return [{"transport": "poll"}]  # held polls are listed as a count today
        return rows

    async with connected_fan(transport) as (rig, http):
        body = await _counted(http, f"{rig.server.url}/v1/sessions", transport, mine)
        assert len(mine(body)) == 1, body


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_every_transports_fans_appear_in_metrics(transport: str) -> None:
    pattern = re.compile(rf'^slipstream_subscribers\{{transport="{transport}"\}} (\S+)$', re.M)

    def count(text: str) -> float:
        found = pattern.search(text)
        return float(found.group(1)) if found else 0.0

    async with connected_fan(transport) as (rig, http):
        text = await _counted(http, f"{rig.server.url}/metrics", transport, count)
        assert count(text) == 1
