"""Flags, bad input, the commands, the faults and the recording file's failure modes."""

from __future__ import annotations

import argparse
import itertools
import os
from pathlib import Path

import pytest

from simulator.config import SimulatorConfig, add_simulator_arguments
from simulator.errors import RecordingError
from simulator.faults import FaultInjector
from simulator.recording import MAGIC
from simulator.recording_file import RecordReader, RecordWriter
from slipstream.app.cli import main
from slipstream.config import EVENTS_TOPIC
from slipstream.errors import ConfigError
from slipstream.records import RecordError, decode_raw
from slipstream.testing.broker import TansuBroker


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cars": 0}, "--cars must be between 1 and 99"),
        ({"cars": 100}, "--cars must be between 1 and 99"),
        ({"rate_hz": -5}, "--rate must be between 10 and 1000"),
        ({"rate_hz": 5000}, "--rate must be between 10 and 1000"),
        ({"track": "monaco"}, "unknown --track 'monaco'; known tracks: daytona"),
        ({"speed": -1.0}, "--speed must be 0"),
        ({"speed": float("nan")}, "--speed must be 0"),
        ({"duration_s": 0.0}, "--duration must be a positive"),
        ({"laps": 0}, "--laps must be between 1 and 1000"),
        ({"dup_rate": 1.5}, "--dup-rate is a fraction"),
        ({"dropout_rate": -0.1}, "--dropout-rate is a fraction"),
        ({"silent_car": 0}, "--silent-car must be a car number"),
        ({"batch_ms": 5}, "--batch-ms must be between 10 and 1000"),
        ({"seed": -1}, "--seed must be 0 or more"),
    ],
)
def test_impossible_values_fail_with_a_clear_message(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        SimulatorConfig(**kwargs)  # type: ignore[arg-type]


def test_flags_build_the_config() -> None:
    parser = argparse.ArgumentParser()
    add_simulator_arguments(parser)
    args = parser.parse_args(
        [
            "--track",
            "martinsville",
            "--cars",
            "12",
            "--rate",
            "200",
            "--seed",
            "7",
            "--laps",
            "50",
            "--batch-ms",
            "50",
            "--dup-rate",
            "0.1",
            "--reorder-rate",
            "0.2",
            "--corrupt-rate",
            "0.3",
            "--dropout-rate",
            "0.4",
            "--silent-car",
            "9",
            "--silent-after",
            "5",
            "--duration",
            "60",
        ]
    )
    config = SimulatorConfig.from_args(args)
    assert config == SimulatorConfig(
        cars=12, rate_hz=200, speed=1.0, track="martinsville", seed=7, duration_s=60.0, laps=50,
        batch_ms=50, dup_rate=0.1, reorder_rate=0.2, corrupt_rate=0.3, dropout_rate=0.4,
        silent_car=9, silent_after_s=5.0,
    )  # fmt: skip
    assert config.race_id == "martinsville-7"
    assert config.samples_per_batch == 10
    defaults = SimulatorConfig.from_args(parser.parse_args([]))
    assert defaults == SimulatorConfig()
    assert (defaults.cars, defaults.rate_hz, defaults.track, defaults.speed) == (
        40,
        120,
        "daytona",
        1.0,
    )


def test_bad_flags_exit_2_with_the_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--cars", "0", "--record", "x.slip"]) == 2
    assert "slipstream simulate: error: --cars must be between 1 and 99" in capsys.readouterr().err
    assert main(["simulate", "--track", "nowhere"]) == 2
    assert "unknown --track 'nowhere'" in capsys.readouterr().err


def test_simulate_record_and_replay_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "r.slip"
    argv = ["simulate", "--record", str(path), "--cars", "5", "--duration", "2", "--seed", "3"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "recorded" in out and "x smaller" in out
    assert "race daytona-3" in out and "ended by duration" in out
    assert main(["replay", str(path), "--speed", "0"]) == 0
    assert "race daytona-3" in capsys.readouterr().out
    assert main(["replay", str(tmp_path / "missing.slip")]) == 2
    assert "cannot open recording" in capsys.readouterr().err
    assert main(["replay", str(path), "--speed", "-2"]) == 2


def test_recording_rejects_other_files(tmp_path: Path) -> None:
    other = tmp_path / "other.bin"
    other.write_bytes(b"not a recording at all")
    with pytest.raises(RecordingError, match="bad magic"):
        RecordReader(other)
    path = tmp_path / "r.slip"
    with RecordWriter(path) as writer:
        for i in range(5):
            writer.write(i, EVENTS_TOPIC, b"race", b"event %d" % i)
    data = path.read_bytes()
    assert data.startswith(MAGIC)
    truncated = tmp_path / "t.slip"
    truncated.write_bytes(data[:-3])
    with pytest.raises(RecordingError, match="truncated"), RecordReader(truncated) as reader:
        list(reader)
    with RecordReader(path) as reader:
        assert [(r.t_ns, r.topic, r.key, r.value) for r in reader] == [
            (i, EVENTS_TOPIC, b"race", b"event %d" % i) for i in range(5)
        ]


def _records(count: int, cars: int = 4) -> list[tuple[int, bytes, bytes]]:
    value = b"\x89\xa1v\x01"
    return [
        (car, b"%d" % car, value + bytes([i % 256]) * 40)
        for i in range(count)
        for car in range(cars)
    ]


def test_faults_are_off_by_default_and_counted() -> None:
    records = _records(10)
    assert FaultInjector(SimulatorConfig()).apply(records, 0) == records
    dup = FaultInjector(SimulatorConfig(dup_rate=0.5))
    out = dup.apply(_records(200), 0)
    assert len(out) == 800 + dup.counts["duplicated"] and 300 < dup.counts["duplicated"] < 500
    corrupt = FaultInjector(SimulatorConfig(corrupt_rate=1.0))
    assert all(
        v != orig[2]
        for (_, _, v), orig in zip(corrupt.apply(_records(5), 0), _records(5), strict=True)
    )


def test_reorder_sends_a_record_after_the_cars_next_one() -> None:
    faults = FaultInjector(SimulatorConfig(reorder_rate=0.3, seed=2))
    sent = []
    for step in range(50):
        batch = [(car, b"%d" % car, b"%d:%d" % (car, step)) for car in range(3)]
        sent += faults.apply(batch, step)
    sent += faults.flush()
    assert faults.counts["reordered"] > 5
    for car in range(3):
        steps = [int(v.split(b":")[1]) for c, _, v in sent if c == car]
        assert sorted(steps) == list(range(50))
        swaps = sum(1 for a, b in itertools.pairwise(steps) if b < a)
        assert swaps == sum(1 for i in range(49) if steps[i] == steps[i + 1] + 1)
        assert all(abs(s - i) <= 1 for i, s in enumerate(steps))


def test_corrupted_records_do_not_decode_as_the_original() -> None:
    from simulator.kernel import Simulation
    from slipstream.records import RawBatch, encode_raw

    sim = Simulation(SimulatorConfig(cars=3, duration_s=1.0))
    chunk = sim.next_chunk()
    assert chunk is not None
    value = encode_raw(RawBatch(sim.race, 1, 0, 0, 120, chunk.values[0, :12]))
    faults = FaultInjector(SimulatorConfig(corrupt_rate=1.0, seed=5))
    damaged = [v for _, _, v in faults.apply([(1, b"1", value)] * 60, 0)]
    assert all(v != value for v in damaged)
    failed = 0
    for v in damaged:
        try:
            decode_raw(v)
        except RecordError:
            failed += 1
    assert failed >= 30


def test_simulate_process_stops_cleanly_on_sigterm(kafka_broker: TansuBroker) -> None:
    """A real `slipstream simulate --kafka` process: records flow; SIGTERM ends it cleanly."""
    import asyncio
    import signal
    import subprocess
    import sys

    from slipstream.bus import make_bus
    from slipstream.config import RAW_TOPIC, BusConfig

    seed = 7000 + os.getpid() % 1000
    argv = [sys.executable, "-m", "slipstream", "simulate", "--kafka", kafka_broker.bootstrap,
            "--cars", "4", "--seed", str(seed), "--speed", "1"]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:

        async def first_record() -> None:
            bus = make_bus(BusConfig(kafka=kafka_broker.bootstrap))
            await bus.start()
            try:
                consumer = await bus.consumer([RAW_TOPIC], auto_offset_reset="earliest")
                async with asyncio.timeout(30):
                    while True:
                        records = await consumer.getmany(timeout_ms=200)
                        if any(decode_raw(r.value).race == f"daytona-{seed}" for r in records):
                            return
            finally:
                await bus.stop()

        asyncio.run(first_record())
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert f"race daytona-{seed}" in out and "ended by stopped" in out


def test_bench_command_writes_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kafka_broker: TansuBroker
) -> None:
    import json

    path = tmp_path / "bench.json"
    argv = ["bench", "simulator", "--cars", "4", "--seconds", "3", "--json", str(path),
            "--kafka", kafka_broker.bootstrap]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "kernel" in out and "kafka" in out and "x real time" in out
    figures = json.loads(path.read_text())
    for name in ("kernel", "kernel+encode", "kafka"):
        assert figures[name]["race_s"] == pytest.approx(3.0)
        assert figures[name]["real_time_multiple"] > 0
        assert figures[name]["channel_values_per_s"] == pytest.approx(
            figures[name]["car_samples_per_s"] * 139
        )
    assert figures["kafka"]["records"] == 4 * 30
