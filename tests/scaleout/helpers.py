"""Helpers of the scale-out tests: broadcast nodes as real processes, waiting on fans."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Sequence
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
