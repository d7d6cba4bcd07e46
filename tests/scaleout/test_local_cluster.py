"""`slipstream run --kafka ... --nodes 2`: a local deployment a fan can use; SIGTERM stops it."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import urllib.request

import pytest

from slipstream.app.cluster import find_nginx
from slipstream.testing.broker import TansuBroker
from tests.scaleout.helpers import ROOT
from tests.support.fans import group_indices
from tests.support.fleet import FanFleet

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(find_nginx() is None, reason="needs nginx (Debian package nginx)"),
]


def healthz(url: str) -> dict[str, object]:
    with urllib.request.urlopen(f"{url}/healthz", timeout=5) as answer:
        body: dict[str, object] = json.load(answer)
        return body


async def test_run_with_nodes_starts_a_deployment_behind_nginx(
    fresh_kafka_broker: TansuBroker,
) -> None:
    kafka_broker = fresh_kafka_broker
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "slipstream", "--log-level", "warning", "run",
        "--kafka", kafka_broker.bootstrap, "--nodes", "2", "--port", "0",
        "--cars", "4", "--speed", "4", "--ping-interval", "5",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    fleet: FanFleet | None = None
    try:
        async with asyncio.timeout(60):
            line = (await process.stdout.readline()).decode()
        assert "2 nodes" in line and "behind nginx on http://" in line, line
        url = line.rsplit(" on ", 1)[1].strip()
        host, port = url.removeprefix("http://").split(":")
        fleet = FanFleet([(host, int(port))], 1, (1,), group_indices(["timing"]), record_ticks=True)
        await fleet.connect_all(60)
        await fleet.wait_all(3, 1, 60)
        servers = {str((await asyncio.to_thread(healthz, url))["server"]) for _ in range(6)}
        assert servers == {"node-1", "node-2"}
    finally:
        if fleet is not None:
            await fleet.close()
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            err = (await process.stderr.read()).decode()
            code = await process.wait()
    assert code == 0, err
    (fan,) = fleet.fans
    assert fan.tick_problems(fan.ticks[0], fan.ticks[-1]) == [], fan.ticks
    assert "slipstream run: stopped" in err
