"""``slipstream broadcast --workers 2``: one scrape, and the ops page, show the whole node.

Both workers keep their metrics in the node's directory; whichever answers a
scrape sums them.  Scrapes in a row give the same totals (no flip-flop from
one worker to the other), the totals are both workers' (each emits every
tick), the ops page in chromium shows the node's fans, and a killed worker's
fans are not counted twice once they have moved to the other.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import urllib.request
from collections import defaultdict
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from slipstream.bus import Bus
from slipstream.catalogue import CATALOGUE
from slipstream.testing import unique_name
from slipstream.testing.broker import TansuBroker, free_port
from tests.broadcast.helpers import Feeder
from tests.scaleout.helpers import ROOT
from tests.scaleout.test_workers import LogWatcher, workers_of
from tests.support.fleet import FanFleet

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

CARS = (2, 4, 6)
FANS = 12
#: Callback gauges of the workers that did not answer are written once a second.
SETTLE_S = 10.0


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``/metrics`` as {sample name: {labels: value}}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return out


def totals(metrics: dict[str, dict[tuple[tuple[str, str], ...], float]]) -> dict[str, float]:
    """The node totals the test compares."""
    names = (
        "slipstream_broadcast_ticks_total",
        "slipstream_broadcast_frames_total",
        "slipstream_bytes_sent_total",
        "slipstream_messages_sent_total",
        "slipstream_subscribers",
        "slipstream_broadcast_tick_lag_seconds_count",
    )
    return {name: sum(metrics.get(name, {}).values()) for name in names}


async def settled(port: int, check: str, want: float) -> dict[str, float]:
    """Scrape until ``check``'s node total is ``want`` (bounded), and return the totals."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_S
    while True:
        got = totals(await asyncio.to_thread(scrape, port))
        if got[check] == want:
            return got
        if loop.time() > deadline:
            raise AssertionError(f"{check} stayed {got[check]}, not {want}: {got}")
        await asyncio.sleep(0.2)  # a poll of the scrape, bounded by SETTLE_S


async def test_one_scrape_shows_the_whole_node(kafka_broker: TansuBroker, kafka_bus: Bus) -> None:
    frames, events = unique_name("wmetrics.frames"), unique_name("wmetrics.events")
    await kafka_bus.ensure_topic(frames, 4)
    await kafka_bus.ensure_topic(events, 1)
    feeder = Feeder(kafka_bus, "R-m", CARS, frames, events)
    await feeder.start_race()
    port = free_port()
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "slipstream", "--log-level", "info", "broadcast",
        "--kafka", kafka_broker.bootstrap, "--port", str(port), "--workers", "2",
        "--frames-topic", frames, "--events-topic", events, "--server-id", "pool",
        "--tick-wait", "0.3",
        cwd=ROOT, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    log = LogWatcher(parent)
    timing = tuple(g.index for g in CATALOGUE.resolve_groups(["timing"]))
    fleet = FanFleet([("127.0.0.1", port)], FANS, None, timing, spread=False)
    fans = fleet.fans
    for i, fan in enumerate(fans):
        fan.cars = (CARS[i % 3],)
    next_tick = 0

    async def advance(ticks: int) -> None:
        nonlocal next_tick
        for _ in range(ticks):
            await feeder.tick(next_tick)
            next_tick += 1
            await asyncio.sleep(0.1)  # the race's pace, not a wait for an event
        await fleet.wait_all(next_tick - 1, 1, 30)

    try:
        await log.wait_for("serving", 2, timeout_s=60)
        await fleet.connect_all(60)
        await advance(5)
        assert {f.servers[0] for f in fans} == {"pool-w1", "pool-w2"}
        first = await settled(port, "slipstream_subscribers", FANS)
        # Each worker emits every tick: the node's count is both workers'.
        assert first["slipstream_broadcast_ticks_total"] == 2 * next_tick, first
        assert first["slipstream_broadcast_tick_lag_seconds_count"] == 2 * next_tick, first
        for _ in range(8):  # nothing happens meanwhile: every scrape gives the same totals
            assert totals(await asyncio.to_thread(scrape, port)) == first
        metrics = await asyncio.to_thread(scrape, port)
        pids = {dict(k)["pid"] for k in metrics["process_open_fds"]}
        assert len(pids) == 2 and pids == {dict(k)["pid"] for k in metrics["process_max_fds"]}
        assert set(metrics["slipstream_build_info"]) and metrics["process_cpu_seconds_total"]
        assert metrics["slipstream_broadcast_tick_lag_seconds_bucket"]

        await ops_page_shows_the_node(port, FANS + 1, first["slipstream_broadcast_ticks_total"])

        # A killed worker's fans move to the other: counted once, totals never go back.
        victim = workers_of(parent.pid)[0]
        os.kill(victim, signal.SIGKILL)
        await advance(5)
        await log.wait_for("serving", 3, timeout_s=30)
        after = await settled(port, "slipstream_subscribers", FANS)
        assert after["slipstream_broadcast_ticks_total"] > first["slipstream_broadcast_ticks_total"]
        assert after["slipstream_bytes_sent_total"] > first["slipstream_bytes_sent_total"]
        pids = {dict(k)["pid"] for k in (await asyncio.to_thread(scrape, port))["process_open_fds"]}
        assert str(victim) not in pids and len(pids) == 2
    finally:
        await fleet.close()
        if parent.returncode is None:
            parent.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await parent.wait()
            await log.task
    assert code == 0, "\n".join(log.lines[-20:])
    leftover = Path(tempfile.gettempdir()) / f"slipstream-metrics-127.0.0.1-{port}"
    assert not leftover.exists(), "the node's metrics directory is removed at stop"


async def ops_page_shows_the_node(port: int, subscribers: int, ticks: float) -> None:
    """The ops page in chromium: the node's fans (and its own probe) and tick count."""
    from playwright.async_api import async_playwright

    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

    if CHROMIUM is None:
        pytest.fail("Debian chromium is needed (scripts/install-test-deps)")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{port}/ops?interval_ms=300")
            # Every refresh, whichever worker answers it, shows the node's figure.
            await page.wait_for_function(
                "n => document.querySelector('#card-subscribers .figure')?.textContent === n",
                arg=str(subscribers),
                timeout=15_000,
            )
            seen = await page.evaluate(
                """async () => { const out = [];
                   for (let i = 0; i < 6; i++) { const r = await fetch('/metrics');
                     const t = await r.text(); out.push(t.split('\\n').filter(l =>
                       l.startsWith('slipstream_broadcast_ticks_total ')).join()); }
                   return out; }"""
            )
            assert len(set(seen)) == 1 and float(seen[0].split()[1]) == ticks, seen
            cell = page.locator(
                '#card-counters tr[data-metric="slipstream_broadcast_ticks_total"] td:nth-child(2)'
            )
            assert float((await cell.inner_text()).replace(",", "")) == ticks
        finally:
            await browser.close()
