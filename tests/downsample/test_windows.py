"""Event-time windows of one partition: boundaries, lateness, duplicates, order, restarts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from downsample.checkpoint import Checkpoint, decode_checkpoint, encode_checkpoint
from downsample.synthetic import synthetic_batches
from downsample.windows import PartitionWindows, WindowRules
from ingest.dlq import DeadLetter
from slipstream.bus.base import Record
from slipstream.catalogue import CATALOGUE, MISSING
from slipstream.records import Frame, RawBatch, car_key, encode_raw
from tests.downsample.reference import frames_reference

TOPIC = "slipstream.raw"
C = len(CATALOGUE)


def records_of(batches: list[RawBatch], start: int = 0) -> list[Record]:
    return [
        Record(TOPIC, 0, start + i, car_key(b.car), encode_raw(b), 0) for i, b in enumerate(batches)
    ]


def run(
    records: list[Record], rules: WindowRules | None = None, chunk: int = 1000
) -> tuple[list[Frame], list[DeadLetter], PartitionWindows]:
    windows = PartitionWindows(TOPIC, 0, rules)
    frames: list[Frame] = []
    dead: list[DeadLetter] = []
    for i in range(0, len(records), chunk):
        f, d = windows.process(records[i : i + chunk])
        frames += f
        dead += d
    frames += windows.flush_all()
    return frames, dead, windows


def keyed(frames: list[Frame]) -> dict[tuple[str, int, int], Frame]:
    out: dict[tuple[str, int, int], Frame] = {}
    for f in frames:
        out.setdefault((f.race, f.car, f.tick), f)
    return out


def batch(car: int, seq: int, t0_ns: int, values: np.ndarray, rate_hz: int = 100) -> RawBatch:
    return RawBatch("r", car, seq, t0_ns, rate_hz, values.astype(np.float32))


def constant(n: int, value: float = 50.0) -> np.ndarray:
    values = np.full((n, C), np.nan, dtype=np.float32)
    values[:, 0] = value  # throttle, mean
    return values


def test_frames_equal_the_reference_and_are_in_tick_order() -> None:
    batches = list(synthetic_batches(cars=4, seconds=3, rate_hz=120, seed=3, dropout_rate=0.05))
    frames, dead, windows = run(records_of(batches), chunk=7)
    assert dead == []
    assert keyed(frames) == frames_reference(batches)
    ticks = [f.tick for f in frames]
    assert ticks == sorted(ticks)
    assert windows.counts.samples == sum(b.values.shape[0] for b in batches)
    assert sum(f.samples for f in frames) == windows.counts.samples


def test_window_boundaries_follow_race_time() -> None:
    # 100 Hz: samples 0..49 are tick 0, sample 50 (t = 500 ms) opens tick 1.
    values = constant(51)
    values[:, 0] = np.arange(51)
    frames, _, _ = run(records_of([batch(7, 0, 0, values)]))
    by_tick = {f.tick: f for f in frames}
    assert sorted(by_tick) == [0, 1]
    assert by_tick[0].samples == 50 and by_tick[1].samples == 1
    assert CATALOGUE.dequantise(by_tick[1].q)[0] == 50.0
    # A batch starting one nanosecond before a boundary puts its first sample in the earlier tick.
    frames, _, _ = run(records_of([batch(7, 0, 499_999_999, constant(2))]))
    assert sorted(f.tick for f in frames) == [0, 1]


def test_late_samples_are_dead_lettered_not_merged() -> None:
    rules = WindowRules(allowed_lateness_ns=500_000_000)
    # Three 0.5 s batches from 0.25 s: each straddles two ticks.
    early, straggler, ahead = (
        batch(5, seq, 250_000_000 + seq * 500_000_000, constant(50, value))
        for seq, value in ((0, 10.0), (1, 90.0), (2, 20.0))
    )
    frames, dead, windows = run(records_of([early, ahead, straggler]), rules)
    # "ahead" ends at 1.74 s: watermark 1.24 s, tick 1 closed before the straggler
    # came; its 25 samples there (0.75..0.99 s) are late, not merged.
    assert [(d.reason, d.seq, d.samples) for d in dead] == [("late", 1, 25)]
    assert windows.counts.late_samples == 25
    by_tick = {f.tick: f for f in frames}
    assert [by_tick[t].samples for t in (0, 1, 2, 3)] == [25, 25, 50, 25]
    assert CATALOGUE.dequantise(by_tick[1].q)[0] == 10.0
    assert CATALOGUE.dequantise(by_tick[2].q)[0] == (25 * 90.0 + 25 * 20.0) / 50


def test_reordering_within_lateness_gives_the_ordered_frames() -> None:
    batches = list(synthetic_batches(cars=3, seconds=4, rate_hz=100, batch_ms=100, seed=9))
    rng = np.random.default_rng(1)
    shuffled = list(batches)
    # Swap neighbours at random: displacement well within one second.
    for i in range(0, len(shuffled) - 3, 2):
        if rng.random() < 0.5:
            shuffled[i], shuffled[i + 3] = shuffled[i + 3], shuffled[i]
    ordered, _, _ = run(records_of(batches))
    frames, dead, _ = run(records_of(shuffled), chunk=5)
    assert dead == []
    assert keyed(frames) == keyed(ordered)


def test_duplicates_are_dropped_and_reported() -> None:
    batches = list(synthetic_batches(cars=2, seconds=2, rate_hz=100, seed=4))
    with_dups = [*batches[:10], batches[3], batches[8], *batches[10:], batches[-1]]
    clean, _, _ = run(records_of(batches))
    frames, dead, windows = run(records_of(with_dups))
    assert keyed(frames) == keyed(clean)
    assert [(d.reason, d.car, d.seq) for d in dead] == [
        ("duplicate", batches[i].car, batches[i].seq) for i in (3, 8, -1)
    ]
    assert windows.counts.duplicates == 3
    assert dead[0].value == encode_raw(batches[3]) and dead[0].offset == 10


def test_a_car_without_samples_gets_no_frame_and_nan_becomes_missing() -> None:
    values = constant(50)
    frames, _, _ = run(records_of([batch(3, 0, 0, values), batch(4, 0, 500_000_000, values)]))
    assert {(f.car, f.tick) for f in frames} == {(3, 0), (4, 1)}
    q = frames[0].q
    assert q[0] == CATALOGUE.quantise(np.full(C, 50.0))[0]
    assert (q[1:] == MISSING).all()


def test_infinite_and_bad_records_are_dead_lettered_with_distinct_reasons() -> None:
    inf = constant(10)
    inf[3, 5] = np.inf
    good = batch(1, 0, 0, constant(10))
    records = records_of([good, batch(2, 0, 0, inf), batch(100, 0, 0, constant(10))])
    records.append(Record(TOPIC, 0, 3, b"1", encode_raw(good)[:-7], 0))
    frames, dead, windows = run(records)
    assert [d.reason for d in dead] == ["non_finite", "unknown_car", "truncated"]
    assert windows.counts.rejected == {"non_finite": 1, "unknown_car": 1, "truncated": 1}
    assert [f.car for f in frames] == [1]


def test_a_far_future_record_does_not_close_every_window() -> None:
    rules = WindowRules(max_skew_ns=10_000_000_000)
    records = records_of(
        [batch(1, 0, 0, constant(10)), batch(1, 1, 3600 * 10**9, constant(10)),
         batch(1, 2, 200_000_000, constant(10))]
    )  # fmt: skip
    frames, dead, _ = run(records, rules)
    assert [d.reason for d in dead] == ["bad_timestamp"]
    assert sum(f.samples for f in frames) == 20


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), chunks=st.lists(st.integers(1, 40), min_size=1))
def test_batching_does_not_change_anything(seed: int, chunks: list[int]) -> None:
    rng = np.random.default_rng(seed)
    batches = list(synthetic_batches(cars=3, seconds=3, rate_hz=50, seed=seed, dropout_rate=0.1))
    order = np.argsort(np.arange(len(batches)) + rng.integers(0, 30, len(batches)), kind="stable")
    records = records_of([batches[i] for i in order])
    rules = WindowRules(allowed_lateness_ns=300_000_000)
    whole, whole_dead, _ = run(records, rules, chunk=len(records))
    windows = PartitionWindows(TOPIC, 0, rules)
    frames: list[Frame] = []
    dead: list[DeadLetter] = []
    position = 0
    for size in chunks * (len(records) // sum(chunks) + 1):
        f, d = windows.process(records[position : position + size])
        frames += f
        dead += d
        position += size
    frames += windows.flush_all()
    assert frames == whole
    assert dead == whole_dead


@pytest.mark.parametrize("crash_at", [13, 40, 77, 119])
def test_restart_from_checkpoint_recomputes_identical_frames(crash_at: int) -> None:
    batches = list(synthetic_batches(cars=4, seconds=4, rate_hz=100, seed=5, dropout_rate=0.02))
    rng = np.random.default_rng(crash_at)
    # Reorder a little and duplicate a few records, so that state matters.
    order = np.argsort(np.arange(len(batches)) + rng.integers(0, 12, len(batches)), kind="stable")
    stream = [batches[i] for i in order]
    for i in rng.choice(len(stream), 6, replace=False):
        stream.insert(int(i) + 5, stream[int(i)])
    records = records_of(stream)
    rules = WindowRules(allowed_lateness_ns=400_000_000)
    clean, clean_dead, _ = run(records, rules, chunk=9)

    first = PartitionWindows(TOPIC, 0, rules)
    emitted: list[Frame] = []
    letters: list[DeadLetter] = []
    checkpoint_bytes = b""
    for i in range(0, crash_at, 9):
        f, d = first.process(records[i : min(i + 9, crash_at)])
        emitted += f
        letters += d
        checkpoint_bytes = encode_checkpoint(Checkpoint.of("g", first))
    # "Crash": everything after the last checkpoint is lost except what was sent.
    checkpoint = decode_checkpoint(checkpoint_bytes)
    second = PartitionWindows(TOPIC, 0, rules)
    checkpoint.apply(second)
    f, d = second.process(records[checkpoint.offset :])
    emitted += f + second.flush_all()
    letters += d

    clean_keyed = keyed(clean)
    for frame in emitted:  # every (re-)emitted frame is identical to the clean run's
        assert frame == clean_keyed[(frame.race, frame.car, frame.tick)]
    assert keyed(emitted).keys() == clean_keyed.keys()
    assert {(x.offset, x.reason) for x in letters} == {(x.offset, x.reason) for x in clean_dead}


def test_a_phantom_race_needs_a_first_batch_unless_reading_began_midstream() -> None:
    good = batch(1, 0, 0, constant(10))
    phantom = RawBatch("r2", 1, 7, 0, 100, constant(10))
    frames, dead, _ = run(records_of([good, phantom]))
    assert [(d.reason, d.race) for d in dead] == [("unknown_race", "r2")]
    assert {f.race for f in frames} == {"r"}
    # A consumer whose first record is not the partition's first joins races late.
    frames, dead, windows = run(records_of([phantom], start=100))
    assert dead == [] and windows.midstream and {f.race for f in frames} == {"r2"}


def test_batches_overlapping_their_neighbours_and_bad_keys_are_refused() -> None:
    records = records_of(
        [batch(1, 0, 0, constant(10)), batch(1, 1, 100_000_000, constant(10)),
         batch(1, 2, 150_000_000, constant(10)), batch(1, 2, 200_000_000, constant(10), 50)]
    )  # fmt: skip
    records.append(Record(TOPIC, 0, 4, b"2", encode_raw(batch(1, 3, 300_000_000, constant(10))), 0))
    frames, dead, _ = run(records)
    assert [(d.reason, d.seq) for d in dead] == [
        ("bad_timestamp", 2),
        ("bad_timestamp", 2),
        ("bad_key", 3),
    ]
    assert sum(f.samples for f in frames) == 20


@pytest.mark.parametrize("seed", range(6))
def test_damaged_headers_are_dead_lettered_and_never_change_a_frame(seed: int) -> None:
    # Like the simulator's corrupt fault: a few random bytes of the header flipped.
    batches = list(synthetic_batches(cars=5, seconds=3, rate_hz=100, seed=seed))
    rng = np.random.default_rng(seed)
    records: list[Record] = []
    damaged: set[int] = set()
    for b in batches:
        data = encode_raw(b)
        # A car's very first batch is left alone: a damaged race id there would
        # open a phantom race (the record format has no checksum).
        if b.seq > 0 and rng.random() < 0.3:
            bad = bytearray(data)
            header = data.index(b"\xa1x") + 2  # values are not checksummed: leave them
            for at in rng.integers(0, header, size=int(rng.integers(1, 5))).tolist():
                bad[at] ^= int(rng.integers(1, 256))
            if bytes(bad) != data:
                damaged.add(len(records))
                records.append(Record(TOPIC, 0, len(records), car_key(b.car), bytes(bad), 0))
        records.append(Record(TOPIC, 0, len(records), car_key(b.car), data, 0))
    frames, dead, _ = run(records)
    assert keyed(frames) == frames_reference(batches)
    assert {d.offset for d in dead} == damaged
