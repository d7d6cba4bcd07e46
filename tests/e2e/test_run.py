"""`slipstream run` end to end, over real sockets, on both buses.

These start the real command line in a subprocess, the way a user does, and read
its output with `slipstream subscribe`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from slipstream.catalogue import CATALOGUE
from slipstream.testing.broker import TansuBroker

ROOT = Path(__file__).resolve().parents[2]
URL_LINE = re.compile(r"serving on (http://[\d.]+:\d+)")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextmanager
def running(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start `slipstream run ARGS` on a free port; yield the process and its base URL."""
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "slipstream", "run", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=_env(),
        )
        try:
            assert proc.stdout is not None
            url = None
            deadline = time.monotonic() + 60
            while url is None and time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                match = URL_LINE.search(line)
                if match:
                    url = match.group(1)
            if url is None:
                proc.kill()
                proc.wait(timeout=10)
                log.seek(0)
                pytest.fail(f"slipstream run printed no URL; stderr:\n{log.read()}")
            yield proc, url
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def subscribe(url: str, *args: str, timeout_s: float = 120) -> list[dict[str, object]]:
    ws = url.replace("http://", "ws://") + "/ws"
    out = subprocess.run(
        [sys.executable, "-m", "slipstream", "subscribe", ws, "--json", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=_env(),
        check=True,
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def _check_frames(lines: list[dict[str, object]], count: int) -> None:
    frames = [line for line in lines if "car" in line]
    assert len(frames) == count
    names = set(CATALOGUE.index)
    ticks_by_car: dict[int, list[int]] = {}
    for frame in frames:
        assert set(frame) >= {"race", "tick", "car", "values"}
        assert isinstance(frame["race"], str)
        assert isinstance(frame["tick"], int)
        values = frame["values"]
        assert isinstance(values, dict)
        assert set(values) <= names and len(values) > 0
        for name, value in values.items():
            if value is None:
                continue
            channel = CATALOGUE.channels[CATALOGUE.index[name]]
            assert channel.min - channel.resolution <= value <= channel.max + channel.resolution
        car = frame["car"]
        assert isinstance(car, int)
        ticks_by_car.setdefault(car, []).append(frame["tick"])
    for ticks in ticks_by_car.values():
        # Each car's ticks strictly increase: no duplicate, in order.
        assert ticks == sorted(set(ticks))
    all_ticks = sorted({t for ticks in ticks_by_car.values() for t in ticks})
    # Ticks (500 ms windows) follow one another without a gap.
    assert len(all_ticks) >= 2
    assert all_ticks == list(range(all_ticks[0], all_ticks[-1] + 1))


def test_run_and_subscribe_in_process_bus() -> None:
    with running("--cars", "12", "--speed", "4", "--seed", "7") as (_, url):
        lines = subscribe(url, "--count", "200")
        _check_frames(lines, 200)


def test_stops_cleanly_on_sigterm() -> None:
    with running("--cars", "4") as (proc, _):
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
        assert time.monotonic() - started < 5
        assert code == 0


@pytest.mark.kafka
def test_run_and_subscribe_on_kafka(fresh_kafka_broker: TansuBroker) -> None:
    # A broker of its own: `run` uses the default topics, which other tests also fill.
    bootstrap = fresh_kafka_broker.bootstrap
    with running("--kafka", bootstrap, "--cars", "8", "--speed", "4") as (_, url):
        lines = subscribe(url, "--count", "100")
        _check_frames(lines, 100)


def test_unknown_flag_fails_with_message() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "slipstream", "run", "--no-such-flag"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert out.returncode != 0
    assert "--no-such-flag" in out.stderr


def test_unreachable_kafka_fails_fast_naming_the_address() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on `port` now.
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "slipstream", "run", "--port", "0", "--kafka", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert time.monotonic() - started < 15
    assert out.returncode != 0
    assert f"127.0.0.1:{port}" in out.stderr


def test_port_in_use_fails_with_message() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "slipstream", "run", "--port", str(port)],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=60,
        )
    assert out.returncode != 0
    assert str(port) in out.stderr
    assert "in use" in out.stderr.lower()
