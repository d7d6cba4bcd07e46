"""The fan page falls back WebSocket -> SSE -> long-poll behind proxies, and climbs back."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.browser.conftest import Live, Pages
from tests.support.proxy import FaultProxy

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

STATE_JS = """() => {
    const f = window.__slipstream.field;
    return [f.status, f.transport, f.ticks.length ? f.ticks[f.ticks.length - 1][1] : -1];
}"""


async def wait_transport(page: Any, transport: str) -> None:
    await page.wait_for_function(
        """t => {
            const f = window.__slipstream && window.__slipstream.field;
            return f && f.status === "connected" && f.transport === t && f.ticks.length > 0;
        }""",
        arg=transport,
        timeout=30_000,
    )


async def wait_ticks_after(page: Any, tick: int) -> None:
    await page.wait_for_function(
        """t => { const f = window.__slipstream.field;
                  return f.ticks.length && f.ticks[f.ticks.length - 1][1] > t + 2; }""",
        arg=tick,
        timeout=30_000,
    )


def no_gap(ticks: list[list[Any]]) -> bool:
    numbers = [t for _, t in ticks]
    return all(b == a + 1 for a, b in itertools.pairwise(numbers))


def drop_refused_websockets(opened: Pages) -> None:
    # Chromium logs the refused handshake (HTTP 426) as a console error: expected here.
    opened.errors[:] = [e for e in opened.errors if "WebSocket" not in e]


async def test_page_streams_over_sse_when_the_upgrade_is_refused(
    live: Live,
    pages: Pages,
) -> None:
    async with FaultProxy(live.server.port) as proxy:
        proxy.strip_upgrade = True
        page = await pages.open(proxy.url + "/")
        await wait_transport(page, "sse")
        _, _, tick = await page.evaluate(STATE_JS)
        await wait_ticks_after(page, tick)
        # Subscription changes travel by POST: the detail stream follows the selected car.
        await page.evaluate("window.__slipstream.select(24)")
        await page.wait_for_function(
            """() => { const d = window.__slipstream.detail;
                       return d.transport === "sse" && d.subscribed && d.subscribed.cars
                           && d.subscribed.cars.join() === "24" && d.lastCars
                           && d.lastCars.join() === "24"; }""",
            timeout=30_000,
        )
        ticks = await page.evaluate("window.__slipstream.field.ticks")
        assert no_gap(ticks), "no gap or duplicate on SSE"
        conn = page.locator("#conn")
        assert await conn.get_attribute("data-transport") == "sse"
        assert await conn.get_attribute("title") == "connected via HTTP streaming (SSE)"
        await page.close()
        drop_refused_websockets(pages)


async def test_page_long_polls_behind_a_buffering_proxy(
    live: Live,
    pages: Pages,
) -> None:
    async with FaultProxy(live.server.port, buffer_responses=True, cut_after_s=1.0) as proxy:
        proxy.strip_upgrade = True
        page = await pages.open(proxy.url + "/")
        await wait_transport(page, "poll")
        _, _, tick = await page.evaluate(STATE_JS)
        await wait_ticks_after(page, tick)
        ticks = await page.evaluate("window.__slipstream.field.ticks")
        assert no_gap(ticks), "no gap or duplicate on long-poll"
        assert await page.locator("#conn").get_attribute("data-transport") == "poll"
        await page.close()
        drop_refused_websockets(pages)
