"""@slipstream/client, the JavaScript package: its node tests, and its packed tarball
installed in a fresh project and used against a real node, from node and from chromium.

The node tests (clients/js/test, node's test runner) start their own real node through
tests/client/js_harness.py; they run here so that ``pytest`` and CI run them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from slipstream.bus import MemoryBus
from tests.broadcast.helpers import expected_values, node

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "clients" / "js"
ESBUILD = ROOT / "web" / "node_modules" / ".bin" / "esbuild"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _npm() -> str:
    npm = shutil.which("npm")
    if npm is None or not (PACKAGE / "node_modules").is_dir():
        pytest.fail("needs npm and clients/js/node_modules: run ./scripts/install-test-deps")
    return npm


def _run(argv: list[str], cwd: Path, timeout_s: float = 300) -> str:
    env = {**os.environ, "SLIPSTREAM_PYTHON": sys.executable}
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout_s, check=False)  # fmt: skip
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout[-6000:]}\n{done.stderr}"
    return done.stdout


def test_the_package_node_tests_pass() -> None:
    out = _run([_npm(), "test", "--silent"], PACKAGE, timeout_s=600)
    assert "# fail 0" in out and "# pass 0" not in out, out[-2000:]


def test_the_pages_node_tests_pass() -> None:
    _npm()
    out = _run([_npm(), "test", "--silent"], ROOT / "web")
    assert "# fail 0" in out, out[-2000:]


USE = """\
import { connect } from "@slipstream/client";
const client = connect(process.argv[2], {
  cars: [24], groups: ["tyres"], cursor: { race: "R1", tick: 0 },
});
client.on("frame", (f) => {
  console.log(JSON.stringify(f));
  if (f.tick === 3) client.close();
});
"""

PAGE = """\
<!doctype html><meta charset="utf-8"><title>fan app</title>
<script type="module" src="app.js"></script>
"""

APP = """\
import { connect } from "@slipstream/client";
window.frames_ = [];
window.states_ = [];
const client = connect(location.origin, {
  cars: [24], groups: ["tyres"], cursor: { race: "R1", tick: 0 },
});
client.on("state", (s) => window.states_.push(`${s.state} ${s.transport}`));
client.on("frame", (f) => window.frames_.push(f));
"""


@pytest.fixture(scope="module")
def fan_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh npm project with the packed tarball installed, and a bundled page."""
    npm = _npm()
    work = tmp_path_factory.mktemp("fan-app")
    packed = json.loads(_run([npm, "pack", "--json", "--pack-destination", str(work)], PACKAGE))
    tarball = work / packed[0]["filename"]
    files = {f["path"] for f in packed[0]["files"]}
    assert {"src/index.js", "src/client.js", "types/index.d.ts", "package.json"} <= files
    assert not any(f.startswith("test/") for f in files)
    app = work / "app"
    app.mkdir()
    (app / "package.json").write_text('{"name": "fan-app", "private": true, "type": "module"}')
    _run([npm, "install", "--no-audit", "--no-fund", "--prefer-offline", str(tarball)], app)
    (app / "use.mjs").write_text(USE)
    (app / "page.js").write_text(APP)
    (app / "index.html").write_text(PAGE)
    if not ESBUILD.exists():
        pytest.fail("web/node_modules/.bin/esbuild is missing: run ./scripts/install-test-deps")
    # A fan app's bundler (here esbuild) resolves the package and its dependencies.
    _run([str(ESBUILD), "page.js", "--bundle", "--format=esm", "--outfile=app.js",
          "--log-level=error"], app)  # fmt: skip
    return app


async def _node_script(app: Path, url: str) -> list[dict[str, Any]]:
    proc = await asyncio.create_subprocess_exec(
        shutil.which("node") or "node", "use.mjs", url, cwd=app,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return [json.loads(line) for line in out.decode().splitlines()]


def _check(frames: list[dict[str, Any]]) -> None:
    assert [(f["race"], f["tick"], f["car"]) for f in frames] == [("R1", t, 24) for t in (1, 2, 3)]
    for f in frames:
        want = expected_values("R1", f["tick"], 24, ["tyres"])
        assert f["values"] == pytest.approx(want)


async def test_the_tarball_in_a_fresh_node_project(fan_project: Path) -> None:
    async with node(MemoryBus()) as (server, feeder):
        await feeder.start_race()
        for tick in range(4):
            await feeder.tick(tick)
        frames = await _node_script(fan_project, server.url)
    _check(frames)


@pytest.mark.browser
async def test_the_tarball_in_a_minimal_page_in_chromium(fan_project: Path) -> None:
    from playwright.async_api import Route, async_playwright

    async with node(MemoryBus()) as (server, feeder):
        await feeder.start_race()
        for tick in range(4):
            await feeder.tick(tick)

        async def serve(route: Route) -> None:
            # The page is the fan app's: served on the node's origin (the node sends no
            # CORS headers), its files from the fresh project.
            name = route.request.url.rsplit("/", 1)[-1] or "index.html"
            path = fan_project / name
            kind = "text/html" if name.endswith(".html") else "text/javascript"
            await route.fulfill(body=path.read_bytes(), content_type=kind)

        async with async_playwright() as playwright:
            # A page fulfilled by playwright has no address space of its own, so chromium
            # would treat it as public and block its requests to 127.0.0.1; served by the
            # node itself it would be local, as this flag makes it.
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-features=LocalNetworkAccessChecks"],
            )
            try:
                page = await browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                await page.route(f"{server.url}/fan-app/*", serve)
                await page.goto(f"{server.url}/fan-app/index.html")
                await page.wait_for_function("window.frames_ && window.frames_.length >= 3",
                                             timeout=15000)  # fmt: skip
                frames = await page.evaluate("window.frames_.slice(0, 3)")
                states = await page.evaluate("window.states_")
            finally:
                await browser.close()
    assert not errors, errors
    assert "connected ws" in states, states
    _check(frames)
