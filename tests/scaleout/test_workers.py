"""``slipstream broadcast --workers 2``: two full nodes on one port (SO_REUSEPORT).

The kernel spreads connections over both; a killed worker's fans reconnect to
the same port and resume on the other with no gap; the supervisor restarts the
dead worker; SIGTERM stops them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import urllib.request
from pathlib import Path

import pytest

from slipstream.bus import Bus
from slipstream.testing import unique_name
from slipstream.testing.broker import TansuBroker, free_port
from tests.broadcast.helpers import Feeder
from tests.scaleout.helpers import ROOT
from tests.support.fans import group_indices
from tests.support.fleet import FanFleet

pytestmark = pytest.mark.kafka

CARS = (2, 4, 6)


def server_of(port: int) -> str:
    """The worker that answers a new connection's ``/healthz``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
        return str(json.load(answer)["server"])


def workers_of(pid: int) -> list[int]:
    """Pids of the worker processes (spawned children, not the resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    found = []
    for child in map(int, children):
        with contextlib.suppress(OSError):
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
    return found


class LogWatcher:
    """Collects a process's stderr lines; wakes waiters on each."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.lines: list[str] = []
        self.changed = asyncio.Condition()
        self.task = asyncio.create_task(self._read(process))

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        async for raw in process.stderr:
            async with self.changed:
                self.lines.append(raw.decode(errors="replace"))
                self.changed.notify_all()

    async def wait_for(self, text: str, count: int, timeout_s: float) -> None:
        """Wait until ``count`` lines contain ``text``."""
        async with asyncio.timeout(timeout_s), self.changed:
            await self.changed.wait_for(lambda: sum(text in x for x in self.lines) >= count)


async def test_two_workers_share_a_port_and_a_killed_one_is_replaced(
    kafka_broker: TansuBroker, kafka_bus: Bus
) -> None:
    frames, events = unique_name("workers.frames"), unique_name("workers.events")
    await kafka_bus.ensure_topic(frames, 4)
    await kafka_bus.ensure_topic(events, 1)
    feeder = Feeder(kafka_bus, "R-w", CARS, frames, events)
    await feeder.start_race()
    for tick in range(3):
        await feeder.tick(tick)
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
    fleet = FanFleet([("127.0.0.1", port)], 20, None, group_indices(["timing"]), record_ticks=True)
    fans = fleet.fans
    for i, fan in enumerate(fans):
        fan.cars = (CARS[i % 3],)
    next_tick = 3
    try:
        await log.wait_for("serving", 2, timeout_s=60)
        assert {await asyncio.to_thread(server_of, port) for _ in range(16)} == {
            "pool-w1",
            "pool-w2",
        }
        await fleet.connect_all(30)

        async def advance(ticks: int) -> None:
            nonlocal next_tick
            for _ in range(ticks):
                await feeder.tick(next_tick)
                next_tick += 1
                await asyncio.sleep(0.1)  # the race's pace, not a wait for an event
            await fleet.wait_all(next_tick - 1, 1, 30)

        await advance(3)
        on = {f.servers[0] for f in fans}
        assert on == {"pool-w1", "pool-w2"}, on
        victim = workers_of(parent.pid)[0]
        os.kill(victim, signal.SIGKILL)
        await advance(10)
        # The supervisor brings the worker back on the same port.
        await log.wait_for("restarting it", 1, timeout_s=30)
        await log.wait_for("serving", 3, timeout_s=30)
        assert victim not in workers_of(parent.pid) and len(workers_of(parent.pid)) == 2
    finally:
        await fleet.close()
        if parent.returncode is None:
            parent.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await parent.wait()
            await log.task
    assert code == 0, "\n".join(log.lines[-20:])
    moved = [f for f in fans if f.connects > 1]
    assert moved, "no fan was on the killed worker"
    for fan in fans:
        assert fan.tick_problems(fan.ticks[0], next_tick - 1) == [], fan.ticks
        assert fan.duplicates == 0 and fan.bad_bases == 0
        assert fan.notices == [] and fan.errors == []
    print(f"{len(moved)} of {len(fans)} fans moved to the other worker without a gap")
