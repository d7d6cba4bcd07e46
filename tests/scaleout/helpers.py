"""Helpers of the scale-out tests: broadcast nodes as real processes, waiting on fans."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from slipstream.app.cluster import wait_listening
from slipstream.testing.broker import free_port

ROOT = Path(__file__).resolve().parents[2]


def env_int(name: str, default: int) -> int:
    """A scale knob: ``SLIPSTREAM_TEST_<NAME>`` or ``default`` (CI may run a reduced scale)."""
    return int(os.environ.get(f"SLIPSTREAM_TEST_{name}", str(default)))


def start_node(
    bootstrap: str, frames: str, events: str, server_id: str, *extra: str, port: int = 0
) -> tuple[subprocess.Popen[bytes], int]:
    """A ``slipstream broadcast`` process on a free loopback port; returns it and its port."""
    port = port or free_port()
    # Behind nginx every fan comes from the proxy's address: lift the per-address cap
    # (docs/deploy.md: set it on the proxy, or have the node trust X-Forwarded-For).
    env = {**os.environ, "SLIPSTREAM_MAX_CONNECTIONS_PER_ADDRESS": "100000"}
    process = subprocess.Popen(
        [
            sys.executable, "-m", "slipstream", "--log-level", "warning", "broadcast",
            "--kafka", bootstrap, "--host", "127.0.0.1", "--port", str(port),
            "--frames-topic", frames, "--events-topic", events, "--server-id", server_id,
            "--tick-wait", "0.3", *extra,
        ],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    return process, port


async def listening(port: int, process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """Wait (in a thread) until ``process`` accepts connections on 127.0.0.1:``port``."""
    await asyncio.to_thread(wait_listening, "127.0.0.1", port, timeout_s, process)


def stop(processes: Sequence[subprocess.Popen[bytes]], timeout_s: float = 10.0) -> None:
    """SIGTERM every process still running, then reap (SIGKILL after ``timeout_s``)."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Progress:
    """Wakes a waiter once every one of ``total`` fans has reached a tick."""

    def __init__(self, total: int, describe: Callable[[], str] | None = None) -> None:
        self.total = total
        self.describe = describe
        self.target = -1
        self.reached: set[int] = set()
        self.event = asyncio.Event()

    def aim(self, target: int, ticks: Sequence[int]) -> None:
        """Wait for ``target`` now; ``ticks`` are the fans' current last ticks."""
        self.target = target
        self.reached = {i for i, tick in enumerate(ticks) if tick >= target}
        self.event = asyncio.Event()
        if len(self.reached) >= self.total:
            self.event.set()

    def seen(self, index: int, tick: int) -> None:
        """Fan ``index`` has received ``tick``."""
        if tick >= self.target and index not in self.reached:
            self.reached.add(index)
            if len(self.reached) >= self.total:
                self.event.set()

    async def wait(self, timeout_s: float) -> None:
        """Wait until every fan has reached the target."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(timeout_s):
                await self.event.wait()
        except TimeoutError:
            missing = self.total - len(self.reached)
            raise AssertionError(
                f"{missing} of {self.total} fans did not reach tick {self.target} "
                f"within {timeout_s:g} s (waited {loop.time() - started:.1f} s)\n"
                + (self.describe() if self.describe is not None else "")
            ) from None
