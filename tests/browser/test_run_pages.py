"""``slipstream run`` serves working dashboards on its one port, from the installed assets."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from collections.abc import AsyncIterator

import pytest

from tests.browser.conftest import Pages, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]
SERVING = re.compile(rb"serving on (http://\S+)")


@contextlib.asynccontextmanager
async def slipstream_run(*args: str) -> AsyncIterator[str]:
    """A ``slipstream run`` process on a free port; yields its URL."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "slipstream", "run", "--port", "0", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    drain: asyncio.Task[bytes] | None = None
    try:
        async with asyncio.timeout(30):
            while not (match := SERVING.search(line := await process.stdout.readline())):
                assert line, "slipstream run exited before serving"
        drain = asyncio.create_task(process.stdout.read())  # keep the pipe from filling
        yield match.group(1).decode().rstrip("/")
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(15):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
                pytest.fail("slipstream run did not stop on SIGTERM within 15 s")
        if drain is not None:
            drain.cancel()


async def test_slipstream_run_serves_both_pages(pages: Pages) -> None:
    async with slipstream_run("--speed", "4", "--cars", "40") as url:
        fan = await pages.open(url + "/")
        await fan.wait_for_function(
            "document.querySelectorAll('#leaderboard tbody tr').length === 40"
        )
        await fan.wait_for_function("document.getElementById('v-speed').textContent !== '—'")
        await screenshot(fan, "run-fan-page")
        ops = await pages.open(url + "/ops?interval_ms=500")
        await ops.wait_for_function("window.__ops?.state.polls >= 3")
        await ops.wait_for_function(
            "['card-sim-out', 'card-raw-in', 'card-broadcast-in'].every(id => "
            "parseFloat(document.querySelector(`#${id} .figure`).textContent"
            ".replace(/,/g, '')) > 0)"
        )
        await screenshot(ops, "run-ops-page", full_page=True)
        await fan.close()
        await ops.close()
