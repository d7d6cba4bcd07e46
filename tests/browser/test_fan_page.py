"""The fan page (/) in Debian chromium against a live node and a running race."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from slipstream.codecs import CODECS
from tests.browser.conftest import Live, Pages, screenshot
from tests.support.proxy import FaultProxy

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

ROWS_JS = """() => [...document.querySelectorAll('#leaderboard tbody tr')].map(
    (tr) => [tr.dataset.car, tr.querySelector('.gap').textContent])"""


async def wait_rows(page: Any, count: int = 40) -> None:
    await page.wait_for_function(
        "n => document.querySelectorAll('#leaderboard tbody tr').length === n", arg=count
    )


async def test_leaderboard_order_gaps_and_map_change(live: Live, pages: Pages) -> None:
    page = await pages.open(live.url + "/")
    await wait_rows(page)
    await page.wait_for_function("Object.keys(window.__slipstream?.markers ?? {}).length === 40")
    rows = await page.evaluate(ROWS_JS)
    markers = await page.evaluate("window.__slipstream.markers")
    assert len(rows) == 40 and len({car for car, _ in rows}) == 40
    drivers = await page.locator("#leaderboard tbody td.driver").all_inner_texts()
    assert all(drivers), "every row names its driver"
    # The order changes (overtakes) and the gaps change as the race runs.
    await page.wait_for_function(
        f"""old => {{
            const now = ({ROWS_JS})();
            return now.map(r => r[0]).join() !== old.map(r => r[0]).join();
        }}""",
        arg=rows,
        timeout=30_000,
    )
    later = await page.evaluate(ROWS_JS)
    assert [g for _, g in later] != [g for _, g in rows]
    # Every car marker moves on the map.
    await page.wait_for_function(
        """old => Object.entries(window.__slipstream.markers).filter(
            ([car, xy]) => old[car] && (old[car][0] !== xy[0] || old[car][1] !== xy[1])
        ).length === 40""",
        arg=markers,
    )
    await page.wait_for_function(
        r"/^Lap [1-9]\d* \/ [1-9]\d*$/.test(document.getElementById('lap').textContent)"
    )
    assert (await page.locator("#to-go").inner_text()).endswith(" to go")
    assert await page.locator("#banner").get_attribute("data-flag") == "green"
    await screenshot(page, "fan-page")


async def test_chosen_car_gauges_and_tyres_update(live: Live, pages: Pages) -> None:
    page = await pages.open(live.url + "/")
    await wait_rows(page)
    row = page.locator("#leaderboard tbody tr").nth(5)
    car = int(await row.get_attribute("data-car") or "0")
    await row.locator("td.driver").click()
    await page.wait_for_function(
        "car => document.getElementById('car-number').textContent === '#' + car", arg=car
    )
    values_js = """() => [
        ...['v-speed', 'v-rpm', 'v-gear', 'v-throttle', 'v-brake'].map(
            id => document.getElementById(id).textContent),
        ...[...document.querySelectorAll('#tyres .temp, #tyres .pressure b')].map(
            e => e.textContent)]"""
    await page.wait_for_function(f"({values_js})().every(v => v !== '—')", timeout=20_000)
    first = await page.evaluate(values_js)
    # Gauges and tyres follow the car: speed and the tyre temperatures change.
    await page.wait_for_function(
        f"old => {{ const now = ({values_js})(); "
        "return now[0] !== old[0] && now.slice(5).join() !== old.slice(5).join(); }",
        arg=first,
        timeout=30_000,
    )
    ranges = await page.locator("#tyres .temp").evaluate_all("els => els.map(e => e.dataset.range)")
    assert len(ranges) == 12 and all(r in ("cold", "warm", "ideal", "hot") for r in ranges)
    pressures = await page.locator("#tyres .pressure").evaluate_all(
        "els => els.map(e => e.dataset.range)"
    )
    assert len(pressures) == 4 and all(r in ("low", "ok", "high") for r in pressures)
    # The charts hold the last minute of this car.
    points = await page.evaluate(
        "car => window.__slipstream.page.history.cars.get(car).t.length", car
    )
    assert points >= 2
    detail = await page.evaluate("window.__slipstream.detail.cars")
    assert car in detail
    await screenshot(page, "fan-car-panel")


async def sessions(live: Live) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(live.url + "/v1/sessions") as response:
        body = await response.json()
    return list(body["sessions"])


def detail_session(rows: list[dict[str, Any]]) -> dict[str, Any]:
    found = [r for r in rows if r["groups"] and "tyres" in r["groups"]]
    assert len(found) == 1, rows
    return found[0]


async def test_favourites_change_the_subscription_on_the_server(live: Live, pages: Pages) -> None:
    page = await pages.open(live.url + "/")
    await wait_rows(page)
    await page.wait_for_function("window.__slipstream?.detail.cars.length === 1")
    await live.wait_tick(live.latest_tick() + 9)
    before = detail_session(await sessions(live))
    assert before["cars"] == await page.evaluate("window.__slipstream.detail.cars")
    assert before["bytes_per_s"] > 0
    # Star three more cars: the open detail socket re-subscribes.
    stars = page.locator("#leaderboard tbody tr .star")
    chosen = []
    for i in (10, 20, 30):
        row = page.locator("#leaderboard tbody tr").nth(i)
        chosen.append(int(await row.get_attribute("data-car") or "0"))
        await stars.nth(i).click()
    want = sorted(set(before["cars"]) | set(chosen))
    await page.wait_for_function(
        "want => { const s = window.__slipstream?.detail; "
        "return JSON.stringify(s.subscribed?.cars) === JSON.stringify(want) && "
        "s.lastCars.length === want.length; }",
        arg=want,
    )
    await live.wait_tick(live.latest_tick() + 9)
    after = detail_session(await sessions(live))
    assert after["id"] == before["id"], "the same connection, re-subscribed"
    assert after["cars"] == want
    assert after["bytes_per_s"] > 1.5 * before["bytes_per_s"]
    # The page gets only those cars' detail channels.
    got = await page.evaluate("window.__slipstream.detail.lastCars")
    assert sorted(got) == want
    chips = await page.locator("#favourites button").all_inner_texts()
    assert len(chips) == 3
    await screenshot(page, "fan-favourites")


def assert_no_gap(ticks: list[list[Any]]) -> None:
    numbers = [t for _, t in ticks]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), numbers


async def test_cut_connection_reconnects_and_resumes_without_a_gap(
    live: Live, pages: Pages
) -> None:
    async with FaultProxy(live.server.port) as proxy:
        page = await pages.open(proxy.url + "/")
        await wait_rows(page)
        await page.wait_for_function("window.__slipstream?.ticks.length >= 5")
        proxy.cut(hold=True)
        await page.wait_for_function(
            "document.getElementById('conn-text').textContent === 'reconnecting'"
        )
        await screenshot(page, "fan-reconnecting")
        held = await page.evaluate("window.__slipstream.ticks.length")
        # The race goes on while the fan is cut off.
        await live.wait_tick(live.latest_tick() + 12)
        missed_up_to = live.latest_tick()
        proxy.restore()
        await page.wait_for_function(
            "t => document.getElementById('conn-text').textContent === 'connected' && "
            "window.__slipstream.ticks.at(-1)[1] > t",
            arg=missed_up_to,
            timeout=20_000,
        )
        ticks = await page.evaluate("window.__slipstream.ticks")
        assert len(ticks) > held + 12
        assert_no_gap(ticks)
        detail = await page.evaluate("window.__slipstream.detail.ticks")
        assert_no_gap(detail)
        resumes = await page.evaluate("window.__slipstream.field.resumes")
        assert len(resumes) == 2 and resumes[1]["cursor"] is not None
        assert resumes[1]["first"] == resumes[1]["cursor"]["tick"] + 1
        assert resumes[1]["keyframe"] is False
        await page.close()  # before the proxy goes: no reconnect attempts into nothing


async def test_suspended_then_retry(live: Live, pages: Pages) -> None:
    async with FaultProxy(live.server.port) as proxy:
        page = await pages.open(proxy.url + "/?suspend_s=1")
        await wait_rows(page)
        proxy.cut(hold=True)
        await page.wait_for_function(
            "document.getElementById('conn-text').textContent === 'suspended'", timeout=20_000
        )
        assert await page.locator("#conn-retry").is_visible()
        await screenshot(page, "fan-suspended")
        before = await page.evaluate("window.__slipstream.ticks.length")
        proxy.restore()
        await page.locator("#conn-retry").click()
        await page.wait_for_function(
            "n => document.getElementById('conn-text').textContent === 'connected' && "
            "window.__slipstream.ticks.length > n + 3",
            arg=before,
        )
        assert_no_gap(await page.evaluate("window.__slipstream.ticks"))
        await page.close()


async def test_reload_resumes_from_the_last_tick(live: Live, pages: Pages) -> None:
    page = await pages.open(live.url + "/")
    await wait_rows(page)
    await page.wait_for_function("window.__slipstream?.ticks.length >= 5")
    await page.reload()
    await wait_rows(page)
    await page.wait_for_function("window.__slipstream?.field.resumes[0]?.first != null")
    resume = await page.evaluate("window.__slipstream.field.resumes[0]")
    assert resume["cursor"] is not None and resume["keyframe"] is True
    assert resume["first"] == resume["cursor"]["tick"] + 1
    assert_no_gap(await page.evaluate("window.__slipstream.ticks"))
    await screenshot(page, "fan-after-reload")


async def test_phone_sized_screen(live: Live, pages: Pages) -> None:
    page = await pages.open(live.url + "/", width=390, height=844)
    await wait_rows(page)
    await page.wait_for_function("document.getElementById('v-speed').textContent !== '—'")
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"
    await screenshot(page, "fan-phone", full_page=True)


@pytest.mark.parametrize("codec", list(CODECS))
async def test_every_codec_in_the_browser(live: Live, pages: Pages, codec: str) -> None:
    page = await pages.open(live.url + f"/?codec={codec}")
    await wait_rows(page)
    await page.wait_for_function("window.__slipstream?.field.ticks.length >= 4")
    await page.wait_for_function("window.__slipstream?.detail.ticks.length >= 4")
    assert await page.evaluate("window.__slipstream.field.subscribed.codec") == codec
    assert await page.evaluate("window.__slipstream.detail.state.needsKeyframe") is False
    await page.wait_for_function(
        "document.querySelectorAll('#tyres .temp[data-range]').length === 12"
    )
    await screenshot(page, f"fan-codec-{codec}")
