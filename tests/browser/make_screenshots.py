"""Screenshots of the dashboards for the docs (docs/screenshots/).

    python -m tests.browser.make_screenshots [URL] [--wait S] [--out DIR]

With URL (e.g. a running ``slipstream run``'s http://127.0.0.1:8000) it shoots
that node; without, it runs the pipeline in process (as the browser tests do).  It waits
``--wait`` seconds of race first so the map has learnt the track.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from playwright.async_api import async_playwright

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, ROOT, pipeline


async def shoot(url: str, wait_s: float, out: Path) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1400, "height": 900})
        await page.goto(url + "/")
        await page.wait_for_function(
            "document.querySelectorAll('#leaderboard tbody tr').length > 0"
        )
        await page.wait_for_timeout(wait_s * 1000)
        rows = page.locator("#leaderboard tbody tr")
        await rows.nth(3).locator("td.driver").click()
        for i in (3, 8):
            await rows.nth(i).locator(".star").click()
        await page.wait_for_timeout(8000)  # a few seconds of chart for the chosen car
        await page.screenshot(path=str(out / "fan-page.png"))
        phone = await browser.new_page(viewport={"width": 390, "height": 844})
        await phone.goto(url + "/")
        await phone.wait_for_timeout(3000)
        await phone.screenshot(path=str(out / "fan-phone.png"))
        ops = await browser.new_page(viewport={"width": 1400, "height": 900})
        await ops.goto(url + "/ops")
        await ops.wait_for_timeout(12000)
        await ops.screenshot(path=str(out / "ops-page.png"))
        await browser.close()


async def run(url: str | None, wait_s: float, out: Path) -> None:
    if url:
        await shoot(url.rstrip("/"), wait_s, out)
    else:
        async with pipeline() as node:
            await shoot(node.url, wait_s, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", help="node to shoot (default: a synthetic race)")
    parser.add_argument("--wait", type=float, default=12.0, help="seconds of race first")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    asyncio.run(run(args.url, args.wait, args.out))


if __name__ == "__main__":
    main()
