"""``slipstream downsample --metrics-port``: the downsampler's own /metrics, on a real broker."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from slipstream.testing import unique_name
from slipstream.testing.broker import TansuBroker, free_port

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Wait until 127.0.0.1:``port`` accepts a connection (``process`` must stay up)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else b""
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)  # a poll of the port, bounded by timeout_s
    raise AssertionError(f"nothing listens on {port} after {timeout_s:g} s")


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def test_the_downsampler_serves_its_metrics(kafka_broker: TansuBroker) -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable, "-m", "slipstream", "--log-level", "warning", "downsample",
            "--kafka", kafka_broker.bootstrap, "--group-id", unique_name("metrics.group"),
            "--raw-topic", unique_name("metrics.raw"), "--frames-topic", unique_name("m.frames"),
            "--dlq-topic", unique_name("metrics.dlq"), "--metrics-port", str(port),
        ],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_listening(port, process, 60.0)
        metrics = scrape(port)
        # Before any record: every dead-letter reason and the lag exist at 0 for the alerts.
        reasons = {labels["reason"] for labels, value in metrics["slipstream_dlq_records_total"]}
        assert {"truncated", "unknown_car", "late"} <= reasons
        assert metrics["slipstream_consumer_lag_records"] == [({}, 0.0)]
        assert metrics["slipstream_downsample_window_close_lag_seconds_count"] == [({}, 0.0)]
        assert metrics["process_open_fds"] and metrics["slipstream_build_info"]
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err.decode(errors="replace")
