"""Fixtures of the browser tests: a live node with a race, and Debian chromium.

``live``: the whole pipeline in this process, as ``slipstream run --port 0
--speed 4 --cars 40`` wires it: the simulator, the downsampler and a
:class:`~broadcast.server.BroadcastServer` on port 0, on one MemoryBus and one
metrics registry (8 ticks a second).  ``pages``: Debian chromium driven by
playwright; every page it opens records console errors, page errors and requests to anything but
127.0.0.1, and the test fails if there were any.  Screenshots go to
``artifacts/screenshots/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio

from broadcast.config import BroadcastConfig
from broadcast.server import BroadcastServer
from downsample.config import DownsampleConfig
from downsample.service import DownsampleService
from simulator.config import SimulatorConfig
from simulator.service import SimulatorService
from slipstream.bus.memory import MemoryBus
from slipstream.metrics import Registry

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
STOP_TIMEOUT_S = 20.0


@dataclass
class Live:
    """A node serving a running race."""

    server: BroadcastServer

    @property
    def url(self) -> str:
        return self.server.url

    def latest_tick(self) -> int:
        latest = self.server.hub.ring.latest
        return -1 if latest is None else latest.tick

    async def wait_tick(self, tick: int, timeout_s: float = 20.0) -> None:
        """Wait until the node has emitted ``tick``."""
        async with asyncio.timeout(timeout_s):
            while self.latest_tick() < tick:
                await self.server.hub.wait_tick(timeout_s)


@contextlib.asynccontextmanager
async def pipeline(cars: int = 40, speed: float = 4.0) -> AsyncIterator[Live]:
    """Simulator -> downsample -> broadcast node (port 0) on a MemoryBus, racing."""
    bus = MemoryBus()
    await bus.start()
    registry = Registry()
    server = BroadcastServer(BroadcastConfig(port=0), bus, registry)
    tasks: list[asyncio.Task[Any]] = []
    try:
        await server.start()
        simulator = SimulatorService(SimulatorConfig(cars=cars, speed=speed), bus, registry)
        downsample = DownsampleService(DownsampleConfig(), bus, registry)
        tasks += [
            asyncio.create_task(simulator.run(), name="simulate"),
            asyncio.create_task(downsample.run(), name="downsample"),
        ]
        node = Live(server)
        await node.wait_tick(2)
        yield node
        for task in tasks:
            assert not task.done(), f"{task.get_name()} stopped: {task}"
    finally:
        # Each step bounded: a hang in teardown fails here, saying where.
        for task in tasks:
            task.cancel()
        async with asyncio.timeout(STOP_TIMEOUT_S):
            await asyncio.gather(*tasks, return_exceptions=True)
        async with asyncio.timeout(STOP_TIMEOUT_S):
            await server.stop()
        async with asyncio.timeout(STOP_TIMEOUT_S):
            await bus.stop()


@pytest_asyncio.fixture
async def live() -> AsyncIterator[Live]:
    async with pipeline() as node:
        yield node


@dataclass
class Pages:
    """Opens pages and keeps what went wrong in them."""

    browser: Any
    errors: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    contexts: list[Any] = field(default_factory=list)

    async def open(self, url: str, width: int = 1400, height: int = 900) -> Any:
        """A new page (own context: own sessionStorage) at ``url``, loaded."""
        context = await self.browser.new_context(viewport={"width": width, "height": height})
        self.contexts.append(context)

        async def route(route: Any) -> None:
            host = urlsplit(route.request.url).hostname
            if host in LOCAL_HOSTS or route.request.url.startswith("data:"):
                await route.continue_()
            else:
                self.outside.append(route.request.url)
                await route.abort()

        await context.route("**/*", route)
        page = await context.new_page()

        def console(message: Any) -> None:
            if message.type == "error":
                self.errors.append(f"console error: {message.text}")

        page.on("console", console)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        await page.goto(url)
        return page


@pytest_asyncio.fixture
async def pages() -> AsyncIterator[Pages]:
    if CHROMIUM is None:
        pytest.skip("needs Debian chromium (scripts/install-test-deps installs it)")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        opened = Pages(browser)
        try:
            yield opened
        finally:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                for context in opened.contexts:
                    await context.close()
                await browser.close()
    assert not opened.errors, f"errors in the browser: {opened.errors}"
    assert not opened.outside, f"pages reached beyond the server: {opened.outside}"


async def screenshot(page: Any, name: str, full_page: bool = False) -> Path:
    """Save a screenshot artifact; returns its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    return path
