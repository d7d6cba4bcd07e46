"""The write-path micro-benchmark (benchmarks/fanout_write.py): delivery and output, not speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.fanout_write_servers import VARIANTS
from benchmarks.fanout_write_wire import (
    FrameCounter,
    HandshakeError,
    accept_value,
    binary_frame,
    check_response,
    client_request,
    new_key,
    server_response,
)

ROOT = Path(__file__).resolve().parents[2]
FANS, TICKS, WARMUP = 50, 5, 2
RUN_KEYS = {
    "variant", "fans", "ticks", "warmup", "payload_bytes", "messages_expected",
    "messages_delivered", "cpu_user_s", "cpu_sys_s", "cpu_us_per_message",
    "write_loop_p50_ms", "write_loop_p99_ms", "write_loop_max_ms",
    "rss_per_connection_bytes", "loadavg_before", "loadavg_after", "client_stats",
}  # fmt: skip


def test_accept_value_is_the_rfc_example() -> None:
    # RFC 6455 §1.3: the sample nonce and its accept value.
    assert accept_value(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_handshake_round_trip_and_rejections() -> None:
    key = new_key()
    response = server_response(client_request("127.0.0.1", 80, key))
    check_response(response[:-4], key)
    with pytest.raises(HandshakeError):
        check_response(response[:-4], new_key())
    with pytest.raises(HandshakeError):
        server_response(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


@pytest.mark.parametrize("size", [0, 125, 480, 70_000])
def test_frame_counter_counts_frames_split_anywhere(size: int) -> None:
    frame = binary_frame(bytes(size))
    stream = frame * 3
    for step in (1, 3, 7, len(stream)):
        counter = FrameCounter(size)
        completed = sum(counter.feed(stream[i : i + step]) for i in range(0, len(stream), step))
        assert (completed, counter.frames, counter.bad, counter.bytes) == (3, 3, 0, len(stream))


def test_frame_counter_flags_frames_of_the_wrong_size_or_kind() -> None:
    counter = FrameCounter(480)
    counter.feed(binary_frame(bytes(10)) + b"\x81\x01a")
    assert (counter.frames, counter.bad) == (2, 2)


@pytest.mark.timeout(120)
def test_every_variant_delivers_every_message(tmp_path: Path) -> None:
    out = tmp_path / "fanout_write.json"
    command = [
        sys.executable, "-m", "benchmarks.fanout_write", "--fans", str(FANS),
        "--ticks", str(TICKS), "--warmup", str(WARMUP), "--json", str(out),
    ]  # fmt: skip
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stderr
    assert "loadavg" in proc.stdout
    document = json.loads(out.read_text())
    assert document["errors"] == {}
    assert {"machine", "loadavg_start", "loadavg_end", "settings", "command"} <= set(document)
    assert {row["variant"] for row in document["summary"]} == set(VARIANTS)
    assert document["machine"]["packages"]["picows"]
    runs = {run["variant"]: run for run in document["runs"]}
    assert set(runs) == set(VARIANTS)
    for variant, run in runs.items():
        assert set(run) >= RUN_KEYS, variant
        assert run["messages_expected"] == FANS * (TICKS + WARMUP)
        assert run["messages_delivered"] == run["messages_expected"], variant
        (stats,) = run["client_stats"]
        assert stats["connections"] == FANS
        assert stats["frames_min"] == stats["frames_max"] == TICKS + WARMUP, variant
        assert stats["bad_frames"] == stats["lost_connections"] == 0, variant
        assert stats["bytes_total"] == FANS * (TICKS + WARMUP) * len(binary_frame(bytes(480)))
        assert run["cpu_us_per_message"] > 0
        assert 0 < run["write_loop_p50_ms"] <= run["write_loop_p99_ms"]
        assert len(run["loadavg_before"]) == len(run["loadavg_after"]) == 3
