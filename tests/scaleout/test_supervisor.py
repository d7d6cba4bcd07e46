"""`slipstream run --nodes 2`: a killed node is reported and restarted; its fans move on, no gap."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import urllib.request
from collections import Counter

import pytest

from slipstream.app.cluster import find_nginx
from slipstream.app.cluster.local import Backoff
from slipstream.catalogue import CATALOGUE
from slipstream.testing.broker import TansuBroker
from tests.scaleout.helpers import ROOT
from tests.support.fleet import FanFleet

FANS = 20


def test_backoff_doubles_after_quick_deaths_and_resets_after_a_stable_run() -> None:
    backoff = Backoff(initial_s=0.5, max_s=4.0, stable_s=60.0)
    delays = [backoff.delay_s(None, 1.0)]
    for _ in range(5):
        delays.append(backoff.delay_s(delays[-1], 1.0))
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.delay_s(4.0, 60.0) == 0.5


def test_backoff_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="initial_s"):
        Backoff(initial_s=0)
    with pytest.raises(ValueError, match="initial_s"):
        Backoff(initial_s=5, max_s=1)


def healthz(base: str) -> str:
    with urllib.request.urlopen(f"{base}/healthz", timeout=5) as answer:
        return str(json.load(answer)["server"])


async def served_by(base: str, server: str, timeout_s: float) -> None:
    """Wait until ``base/healthz`` answers from ``server``."""
    for _ in range(int(timeout_s / 0.2)):
        with contextlib.suppress(OSError):
            if await asyncio.to_thread(healthz, base) == server:
                return
        # Polling processes we do not own: there is no event to wait on.
        await asyncio.sleep(0.2)
    raise AssertionError(f"{base} was not served by {server} within {timeout_s:g} s")


class Lines:
    """The lines a process writes to a stream, with a wait for one matching a pattern."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read(stream))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.lines.append(line.decode().rstrip())
            self._changed.set()
        self._changed.set()

    async def wait_for(self, pattern: str, timeout_s: float) -> re.Match[str]:
        async with asyncio.timeout(timeout_s):
            while True:
                for line in self.lines:
                    if match := re.search(pattern, line):
                        return match
                if self._task.done():
                    raise AssertionError(f"stream ended without {pattern!r}: {self.lines}")
                self._changed.clear()
                await self._changed.wait()

    async def close(self) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._task, 10)


@pytest.mark.kafka
@pytest.mark.skipif(find_nginx() is None, reason="needs nginx (Debian package nginx)")
async def test_killed_node_is_restarted_while_fans_resume_on_the_other(
    fresh_kafka_broker: TansuBroker,
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "slipstream", "--log-level", "warning", "run",
        "--kafka", fresh_kafka_broker.bootstrap, "--nodes", "2", "--port", "0",
        "--cars", "4", "--speed", "4", "--ping-interval", "5",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    out, err = Lines(process.stdout), Lines(process.stderr)
    timing = tuple(g.index for g in CATALOGUE.resolve_groups(["timing"]))
    fleet: FanFleet | None = None
    try:
        banner = await out.wait_for(r"2 nodes \((\S+), (\S+)\) behind nginx on (http://\S+)", 60)
        node_1, url = banner.group(1), banner.group(3)
        pid_1 = int((await out.wait_for(r"node-1 pid (\d+)", 5)).group(1))
        host, port = url.removeprefix("http://").split(":")
        # Every car, the timing group; every tick each fan receives is kept.
        fleet = FanFleet([(host, int(port))], FANS, None, timing, record_ticks=True, spread=False)
        fans = fleet.fans
        await fleet.connect_all(60)
        await fleet.wait_all(3, 1, 60)
        on_1 = [fan for fan in fans if fan.servers[0] == "node-1"]
        assert on_1 and len(on_1) < FANS, Counter(fan.servers[0] for fan in fans)

        killed_at = fleet.latest_tick()
        os.kill(pid_1, signal.SIGKILL)
        await err.wait_for(rf"broadcast-1 \(pid {pid_1}\) exited with code -9", 10)
        # The others keep serving: every fan gets past the kill, node-1's on node-2.
        await fleet.wait_all(killed_at + 8, 1, 60)
        restarted = await err.wait_for(r"broadcast-1 restarted \(pid (\d+), restart 1\)", 30)
        assert int(restarted.group(1)) != pid_1

        # The node comes back on its port, and nginx sends new requests to it again:
        # it balances by least connections (every fan is on node-2), once the node's
        # fail_timeout (5 s) has passed since it was found down.
        await served_by(f"http://{node_1}", "node-1", 60)
        await served_by(url, "node-1", 30)
        last = fleet.latest_tick()
        await fleet.wait_all(last, 1, 30)
        assert process.returncode is None, "slipstream run stopped after losing a node"
    finally:
        if fleet is not None:
            await fleet.close()
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await process.wait()
        await out.close()
        await err.close()
    assert code == 0, err.lines
    assert "slipstream run: stopped" in err.lines
    problems: Counter[str] = Counter()
    for fan in fans:
        problems.update(fan.tick_problems(fan.ticks[0], last))
        problems.update(f"error {e}" for e in fan.errors)
    assert not problems, problems.most_common(5)
    for fan in on_1:
        assert fan.servers[-1] == "node-2" and fan.connects >= 2, fan.servers
