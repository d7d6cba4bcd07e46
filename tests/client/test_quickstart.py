"""The fan-app quickstarts of docs/clients.md, run as written against a real node."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from slipstream.bus import MemoryBus
from tests.broadcast.helpers import Feeder, node

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "clients.md"
PACKAGE = ROOT / "clients" / "js"
DOC_URL = "http://127.0.0.1:8000"


def quickstart(language: str) -> str:
    """The code block under ``<!-- quickstart:LANGUAGE -->`` in docs/clients.md."""
    text = DOC.read_text(encoding="utf-8")
    found = re.search(rf"<!-- quickstart:{language} -->\n```\w+\n(.*?)```", text, re.DOTALL)
    assert found, f"no {language} quickstart in {DOC}"
    return found.group(1)


@pytest.mark.parametrize("language", ["js", "python"])
def test_each_quickstart_is_under_25_lines(language: str) -> None:
    assert len(quickstart(language).strip().splitlines()) < 25


@contextlib.asynccontextmanager
async def racing() -> AsyncIterator[str]:
    """A node whose race ticks every 20 ms until the block ends; yields its URL."""
    async with node(MemoryBus()) as (server, feeder):
        await feeder.start_race()

        async def run(feeder: Feeder) -> None:
            tick = 0
            while True:
                await feeder.tick(tick)
                tick += 1
                await asyncio.sleep(0.02)  # the race's pace, not a wait for an event

        task = asyncio.create_task(run(feeder))
        try:
            yield server.url
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _run(argv: list[str], cwd: Path) -> tuple[str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode(), err.decode()


async def test_the_javascript_quickstart(tmp_path: Path) -> None:
    if not (PACKAGE / "node_modules").is_dir():
        pytest.fail("clients/js/node_modules is missing: run ./scripts/install-test-deps")
    # A project that has installed the package (a link to it, as `npm install ./clients/js`).
    scope = tmp_path / "node_modules" / "@slipstream"
    scope.mkdir(parents=True)
    (scope / "client").symlink_to(PACKAGE, target_is_directory=True)
    (tmp_path / "package.json").write_text('{"type": "module"}')
    async with racing() as url:
        (tmp_path / "app.mjs").write_text(quickstart("js").replace(DOC_URL, url))
        out, err = await _run([shutil.which("node") or "node", "app.mjs"], tmp_path)
    lines = [line for line in out.splitlines() if line.startswith("tick ")]
    assert len(lines) == 10
    shape = r"tick \d+ car (24|48): [\d.]+ rpm, LF tyre [\d.]+ °C"
    assert all(re.fullmatch(shape, x) for x in lines), lines
    assert "resume later from { race: 'R1', tick:" in out
    assert err.startswith("connecting"), err


async def test_the_python_quickstart(tmp_path: Path) -> None:
    async with racing() as url:
        (tmp_path / "app.py").write_text(quickstart("python").replace(DOC_URL, url))
        out, _err = await _run([sys.executable, "app.py"], tmp_path)
    lines = out.splitlines()
    assert lines[0] == "connected ws "
    frames = [x for x in lines if x.startswith("tick ")]
    assert len(frames) == 10
    assert all(re.fullmatch(r"tick \d+ car (24|48): [\d.]+ rpm", x) for x in frames)
    assert any(re.fullmatch(r"resume later from R1:\d+", x) for x in lines), out
    # The pandas summary of 20 frames of car 24's tyres.
    assert any(x.startswith("count") and "20.0" in x for x in lines), out
