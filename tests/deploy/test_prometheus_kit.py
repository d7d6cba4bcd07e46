"""deploy/prometheus and deploy/grafana against Debian's real Prometheus.

``promtool`` checks the configuration and the rules and runs the rules' unit
tests; then a Prometheus started here, with the shipped configuration (its
targets pointed at this test's processes, scraped each second), scrapes a
live broadcast node and a downsampler, and every alert expression (its
signal: the comparison made ``bool``) and every dashboard expression must
return data through the HTTP API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from broadcast.config import BroadcastConfig
from broadcast.server import BroadcastServer
from downsample.config import DownsampleConfig
from downsample.service import DownsampleService
from simulator.config import SimulatorConfig
from simulator.service import SimulatorService
from slipstream.bus.memory import MemoryBus
from slipstream.metrics import Registry
from slipstream.metrics_server import MetricsServer
from slipstream.testing.broker import free_port
from tests.broadcast.helpers import Collector, make_client

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "slipstream-dashboard.json"
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
#: Longest wait for Prometheus to start, and for every expression to have data.
READY_TIMEOUT_S = 30.0
DATA_TIMEOUT_S = 90.0
#: Histograms whose observation points are in the fan-out and resume paths: on a
#: node that has not observed them their quantiles are NaN (data, but no number).
MAY_BE_NAN = (
    "slipstream_broadcast_fanout_seconds",
    "slipstream_broadcast_encode_seconds",
    "slipstream_broadcast_resume_seconds",
)
_COMPARISON = re.compile(
    r"^(?P<signal>.*\S)\s*(?P<op>==|!=|>=|<=|>|<)\s*(?P<threshold>[-+.\deE]+)$"
)


def _need(tool: str | None, name: str) -> str:
    if tool is None:
        pytest.fail(f"{name} not found: apt-get install prometheus (scripts/install-test-deps)")
    return tool


def promtool(*args: str, cwd: Path = KIT) -> str:
    done = subprocess.run(
        [_need(PROMTOOL, "promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_promtool_checks_the_config_the_rules_and_their_unit_tests() -> None:
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml")
    assert "7 rules found" in promtool("check", "rules", "rules.yml")
    assert "SUCCESS" in promtool("test", "rules", "rules_test.yml")


def signal_of(expr: str) -> str:
    """An alert expression with its final comparison made ``bool``: data whether or not it fires."""
    match = _COMPARISON.match(" ".join(expr.split()))
    assert match, f"alert expression {expr!r} is not '<signal> <comparison> <threshold>'"
    return f"({match['signal']}) {match['op']} bool {match['threshold']}"


def dashboard_expressions() -> Iterator[tuple[str, str]]:
    """(panel title, expression) of every dashboard target, variables set to "all"."""
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"].replace("$instance", ".*")


class Prometheus:
    """A Prometheus process with a copy of the kit, pointed at ``targets``."""

    def __init__(self, directory: Path, targets: dict[str, list[str]]) -> None:
        self.directory = directory
        shutil.copytree(KIT, directory / "kit")
        kit = directory / "kit"
        for job, addresses in targets.items():
            (kit / "targets" / f"{job}.json").write_text(json.dumps([{"targets": addresses}]))
        config = (kit / "prometheus.yml").read_text()
        # Scrape each second so the test needs seconds, not minutes; all else as shipped.
        for name in ("scrape_interval", "evaluation_interval", "scrape_timeout"):
            config, n = re.subn(rf"(?m)^(\s+{name}:) \S+$", r"\1 1s", config)
            assert n == 1, name
        (kit / "prometheus.yml").write_text(config)
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                _need(PROMETHEUS, "prometheus"),
                f"--config.file={kit / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(directory / "prometheus.log").open("wb"),
        )

    def get(self, path: str, **query: str) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        with urllib.request.urlopen(url, timeout=5) as answer:
            return json.load(answer) if path.startswith("/api/") else answer.read()

    def query(self, expr: str) -> list[dict[str, Any]]:
        body = self.get("/api/v1/query", query=expr)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def log(self) -> str:
        return (self.directory / "prometheus.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def poll_until(what: str, check: Any, timeout_s: float) -> Any:
    """Call ``check`` (in a thread) until it returns a truthy value; bounded by ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last: Any = None
    while loop.time() < deadline:
        with contextlib.suppress(OSError):
            last = await asyncio.to_thread(check)
            if last:
                return last
        await asyncio.sleep(0.5)  # Prometheus scrapes each second: poll its answer
    raise AssertionError(f"{what}: nothing after {timeout_s:g} s (last: {last})")


@contextlib.asynccontextmanager
async def pipeline() -> AsyncIterator[tuple[BroadcastServer, MetricsServer]]:
    """Simulator -> downsampler (own /metrics) -> node (own /metrics), racing, with one fan."""
    bus = MemoryBus()
    await bus.start()
    node = BroadcastServer(BroadcastConfig(port=0), bus, Registry())
    downsample_registry = Registry()
    downsample_metrics = MetricsServer(downsample_registry)
    tasks: list[asyncio.Task[None]] = []
    fan: Collector | None = None
    try:
        await node.start()
        await downsample_metrics.start()
        simulator = SimulatorService(SimulatorConfig(cars=10, speed=4.0), bus, Registry())
        downsample = DownsampleService(DownsampleConfig(), bus, downsample_registry)
        tasks += [asyncio.create_task(simulator.run()), asyncio.create_task(downsample.run())]
        fan = Collector(make_client(node.url, groups=["timing"], transport="ws"))
        await fan.wait(lambda item: type(item).__name__ == "FrameItem", timeout_s=60)
        yield node, downsample_metrics
    finally:
        if fan is not None:
            await fan.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await downsample_metrics.stop()
        await node.stop()
        await bus.stop()


async def test_every_alert_and_dashboard_expression_returns_data(tmp_path: Path) -> None:
    async with pipeline() as (node, downsampler):
        prometheus = Prometheus(
            tmp_path,
            {
                "broadcast": [f"127.0.0.1:{node.port}"],
                "downsample": [f"127.0.0.1:{downsampler.port}"],
            },
        )
        try:
            await poll_until("ready", lambda: prometheus.get("/-/ready"), READY_TIMEOUT_S)
            up = await poll_until(
                "both targets up",
                lambda: len([r for r in prometheus.query("up == 1")]) == 2,
                DATA_TIMEOUT_S,
            )
            assert up
            groups = prometheus.get("/api/v1/rules")["data"]["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            assert len(rules) == 7 and all(r["health"] in ("ok", "unknown") for r in rules), rules
            expressions = [(f"alert {r['name']}", signal_of(r["query"])) for r in rules]
            expressions += [(f"panel {t}", e) for t, e in dashboard_expressions()]
            missing = {name: expr for name, expr in expressions}

            def check() -> bool:
                for name, expr in list(missing.items()):
                    if prometheus.query(expr):
                        del missing[name]
                return not missing

            await poll_until(f"data for {sorted(missing)}", check, DATA_TIMEOUT_S)
            nan = []
            for name, expr in expressions:
                values = [float(r["value"][1]) for r in prometheus.query(expr)]
                assert values, name
                if any(math.isnan(v) for v in values):
                    nan.append(name)
                    assert any(m in expr for m in MAY_BE_NAN), f"{name} is NaN: {expr}"
            rules = [
                r for g in prometheus.get("/api/v1/rules")["data"]["groups"] for r in g["rules"]
            ]
            assert all(r["health"] == "ok" for r in rules), rules
            print(f"{len(expressions)} expressions return data; NaN until observed: {nan}")
        except AssertionError:
            print(prometheus.log())
            raise
        finally:
            prometheus.stop()
