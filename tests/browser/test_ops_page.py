"""The ops page (/ops) in Debian chromium while a race runs."""

from __future__ import annotations

import pytest

from tests.browser.conftest import Live, Pages, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

FIGURES_JS = """() => Object.fromEntries([...document.querySelectorAll('.card[id^=card-]')].map(
    c => [c.id, c.querySelector('.figure')?.textContent ?? '']))"""
COUNTER_JS = """name => document.querySelector(
    `#card-counters tr[data-metric="${name}"] td:nth-child(2)`)?.textContent ?? null"""


async def test_ops_figures_change_while_a_race_runs(live: Live, pages: Pages) -> None:
    fan = await pages.open(live.url + "/")  # a fan, so there is something to deliver
    page = await pages.open(live.url + "/ops?interval_ms=500")
    await page.wait_for_function("window.__ops?.state.polls >= 3")
    first = await page.evaluate(FIGURES_JS)
    frames = await page.evaluate(COUNTER_JS, "slipstream_broadcast_frames_total")
    assert frames is not None
    # Counters grow and the figures move as the race runs.
    await page.wait_for_function(
        f"old => ({COUNTER_JS})('slipstream_broadcast_frames_total') !== old", arg=frames
    )
    await page.wait_for_function(
        f"old => {{ const now = ({FIGURES_JS})(); "
        "return ['card-broadcast-in', 'card-bytes-out', 'card-memory']"
        ".some(k => now[k] !== old[k]); }",
        arg=first,
    )
    figures = await page.evaluate(FIGURES_JS)

    def number(card: str) -> float:
        return float(figures[card].replace(",", ""))

    # Every stage moves: 40 cars at 4x real time, 8 ticks a second.
    assert number("card-sim-out") > 50
    assert number("card-raw-in") > 50
    assert number("card-frames-out") > 50
    assert number("card-broadcast-in") > 50
    assert number("card-lag") >= 0
    assert number("card-dlq") >= 0
    assert figures["card-bytes-out"].endswith("/s") and figures["card-bytes-out"] != "—"
    assert figures["card-memory"].endswith("MB")
    subscribers = await page.locator("#card-subscribers .rows").inner_text()
    assert "ws" in subscribers and "poll" in subscribers
    # This page measures delivery latency on its own subscription.
    await page.wait_for_function("window.__ops?.probe.latencyMs.length >= 5")
    p50, p99 = (await page.locator("#card-latency .figure").inner_text()).split(" / ")
    assert 0 <= float(p50.replace(",", "")) <= float(p99.replace(",", ""))
    points = await page.locator("#card-broadcast-in polyline").get_attribute("points")
    assert points and len(points.split()) >= 2, "the sparkline draws the history"
    await fan.close()
    await screenshot(page, "ops-page", full_page=True)
