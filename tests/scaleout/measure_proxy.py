"""Measure what nginx and a node cost per fan-message, fans through nginx (capacity plan input).

Run (from the repository root; starts its own broker, node and nginx)::

    python -m tests.scaleout.measure_proxy --fans 2000 --seconds 20 \\
        --out benchmarks/results/proxy.json

Two subscriptions are measured: every car and group of a 40-car race (large
messages) and one car's ``timing`` group (small ones).  CPU times come from
``/proc/PID/stat`` (user + system) of the node and of nginx's single worker;
message sizes from the node's own counters.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from slipstream.app.cluster import Nginx, NginxConfig
from slipstream.bus import make_bus
from slipstream.config import BusConfig
from slipstream.testing import unique_name
from slipstream.testing.broker import TansuBroker, free_port
from tests.broadcast.helpers import Feeder
from tests.scaleout.helpers import listening, start_node, stop
from tests.support.fans import group_indices
from tests.support.fleet import FanFleet

CARS = tuple(range(1, 41))
RATE_HZ = 2


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """Pids of a process's children (nginx's workers)."""
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def ws_counter(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    found = re.search(name + r'\{transport="ws"\} ([0-9.e+]+)', text)
    return float(found.group(1)) if found else 0.0


async def measure(
    broker: TansuBroker, fans_total: int, seconds: int, cars: Any, groups: Any
) -> dict[str, float]:
    bus = make_bus(BusConfig(kafka=broker.bootstrap))
    await bus.start()
    frames, events = unique_name("proxy.frames"), unique_name("proxy.events")
    await bus.ensure_topic(frames, 8)
    await bus.ensure_topic(events, 1)
    feeder = Feeder(bus, "R-proxy", CARS, frames, events)
    await feeder.start_race()
    await feeder.tick(0)
    node, port = start_node(broker.bootstrap, frames, events, "measured")
    fleet: FanFleet | None = None
    with tempfile.TemporaryDirectory() as prefix:
        config = NginxConfig(
            f"127.0.0.1:{free_port()}", (f"127.0.0.1:{port}",), prefix, worker_processes="1"
        )
        nginx = Nginx(config)
        try:
            await listening(port, node)
            nginx.start()
            assert nginx.process is not None
            # No codec decode in the fans: the figures are the proxy's and the node's.
            fleet = FanFleet(
                [("127.0.0.1", int(config.listen.split(":")[1]))], fans_total,
                tuple(cars) if cars else None, group_indices(groups) if groups else None,
                decode=False, record_ticks=True,
            )  # fmt: skip
            await fleet.connect_all(120)
            workers = children(nginx.process.pid)
            bytes0 = ws_counter(port, "slipstream_bytes_sent_total")
            messages0 = ws_counter(port, "slipstream_messages_sent_total")
            node0, nginx0, wall0 = cpu_s(node.pid), sum(map(cpu_s, workers)), time.monotonic()
            for tick in range(1, seconds * RATE_HZ + 1):
                await feeder.tick(tick)
                await asyncio.sleep(1 / RATE_HZ)  # the race's pace
            await asyncio.sleep(1.0)  # let the last tick reach every fan before reading CPU
            node1, nginx1, wall1 = cpu_s(node.pid), sum(map(cpu_s, workers)), time.monotonic()
            size = (ws_counter(port, "slipstream_bytes_sent_total") - bytes0) / max(
                1.0, ws_counter(port, "slipstream_messages_sent_total") - messages0
            )
            delivered = sum(1 for fan in fleet.fans for tick in fan.ticks if tick >= 1)
        finally:
            if fleet is not None:
                await fleet.close()
            nginx.stop(fast=True)
            stop([node])
            await bus.stop()
    return {
        "fans": fans_total,
        "seconds": round(wall1 - wall0, 2),
        "messages_delivered": delivered,
        "mean_message_bytes": round(size, 1),
        "nginx_cpu_us_per_message": round((nginx1 - nginx0) / delivered * 1e6, 2),
        "node_cpu_us_per_message": round((node1 - node0) / delivered * 1e6, 2),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"machine_cores": os.cpu_count(), "rate_hz": RATE_HZ}
    with TansuBroker() as broker:
        results["every_car_every_group"] = await measure(
            broker, args.fans, args.seconds, None, None
        )
        results["one_car_timing"] = await measure(broker, args.fans, args.seconds, [1], ["timing"])
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fans", type=int, default=2000, help="fans through nginx (default 2000)")
    parser.add_argument("--seconds", type=int, default=20, help="measured seconds (default 20)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    text = json.dumps(results, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
