"""Record types that travel on the bus, and their msgpack encodings (version 1).

Three kinds of record, one per topic (see docs/records.md):

* :class:`RawBatch` on ``slipstream.raw``: a short run of raw samples from one
  car, keyed by car number.
* :class:`Frame` on ``slipstream.frames``: one car's 2 Hz window, quantised,
  keyed by car number.
* :class:`RaceEvent` on ``slipstream.events``: race control (flags, pit stops,
  laps, lead changes, incidents), keyed by race id.

Encoders here are pure and deterministic: the same value always gives the
same bytes, which is what makes re-emitted frames identical.  Decoders raise
:class:`RecordError` with a machine-readable ``reason`` for bad input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
from numpy.typing import NDArray

from slipstream.errors import SlipstreamError

__all__ = [
    "FORMAT_VERSION",
    "TICK_NS",
    "Frame",
    "RaceEvent",
    "RawBatch",
    "RecordError",
    "car_key",
    "decode_event",
    "decode_frame",
    "decode_raw",
    "encode_event",
    "encode_frame",
    "encode_raw",
    "sample_times_ns",
]

#: Version of the record formats in this module.
FORMAT_VERSION = 1
#: Length of one tick (one 2 Hz window), in nanoseconds of race time.
TICK_NS = 500_000_000


class RecordError(SlipstreamError, ValueError):
    """A record could not be decoded.

    Attributes:
        reason: Machine-readable reason, e.g. ``truncated``, ``bad_version``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


def car_key(car: int) -> bytes:
    """The bus key of a car's records (its number as ASCII digits)."""
    return str(car).encode()


@dataclass(frozen=True, slots=True, eq=False)
class RawBatch:
    """Raw samples of one car over a short interval.

    Attributes:
        race: Race id.
        car: Car number.
        seq: Batch sequence number of this car, from 0, without gaps.
        t0_ns: Race time of the first sample.
        rate_hz: Sampling rate; sample ``i`` is at :func:`sample_times_ns`.
        values: Samples in channel units, shape (samples, channels), float32.
            NaN marks a sensor dropout.
    """

    race: str
    car: int
    seq: int
    t0_ns: int
    rate_hz: int
    values: NDArray[np.float32]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RawBatch):
            return NotImplemented
        return (
            (self.race, self.car, self.seq, self.t0_ns, self.rate_hz)
            == (other.race, other.car, other.seq, other.t0_ns, other.rate_hz)
            and self.values.shape == other.values.shape
            and self.values.tobytes() == other.values.tobytes()
        )

    __hash__ = None  # type: ignore[assignment]


def sample_times_ns(t0_ns: int, rate_hz: int, count: int) -> NDArray[np.int64]:
    """Race times of ``count`` samples from ``t0_ns`` at ``rate_hz``, shape (count,)."""
    return t0_ns + (np.arange(count, dtype=np.int64) * 1_000_000_000) // rate_hz


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """One car's aggregated 500 ms window.

    Attributes:
        race: Race id.
        tick: Window index since race start (window ``[tick*500ms, (tick+1)*500ms)``).
        car: Car number.
        q: Quantised values, shape (channels,), int32; MISSING where the window
            had no finite sample of a channel.
        samples: Number of raw samples aggregated.
    """

    race: str
    tick: int
    car: int
    q: NDArray[np.int32]
    samples: int

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return (self.race, self.tick, self.car, self.samples) == (
            other.race,
            other.tick,
            other.car,
            other.samples,
        ) and self.q.tobytes() == other.q.tobytes()

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class RaceEvent:
    """A race-control event.

    Attributes:
        race: Race id.
        t_ns: Race time of the event.
        kind: ``flag``, ``pit_in``, ``pit_out``, ``lap``, ``lead_change``,
            ``incident``, ``race_start`` or ``race_end``.
        cars: Car numbers involved (may be empty).
        data: Further fields of the event (e.g. ``{"flag": "yellow"}``).
    """

    race: str
    t_ns: int
    kind: str
    cars: tuple[int, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)


def _pack(obj: dict[str, Any]) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def _unpack(data: bytes, what: str) -> dict[str, Any]:
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except msgpack.ExtraData as exc:
        raise RecordError("trailing_bytes", f"{what} has bytes after its end") from exc
    except (ValueError, msgpack.UnpackException) as exc:
        if "incomplete" in str(exc).lower() or isinstance(exc, msgpack.OutOfData):
            raise RecordError("truncated", f"{what} ends early") from exc
        raise RecordError("malformed", f"{what} is not valid msgpack: {exc}") from exc
    if not isinstance(obj, dict):
        raise RecordError("malformed", f"{what} is not a msgpack map")
    version = obj.get("v")
    if version != FORMAT_VERSION:
        raise RecordError("bad_version", f"{what} version {version!r}, expected {FORMAT_VERSION}")
    return obj


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = obj.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise RecordError("bad_field", f"{what} field {name!r} missing or of the wrong type")
    return value


def encode_raw(batch: RawBatch) -> bytes:
    """Encode a raw batch (values as little-endian float32, sample-major)."""
    values = np.ascontiguousarray(batch.values, dtype="<f4")
    if values.ndim != 2:
        raise ValueError("RawBatch.values must have shape (samples, channels)")
    return _pack(
        {
            "v": FORMAT_VERSION,
            "race": batch.race,
            "car": batch.car,
            "seq": batch.seq,
            "t0": batch.t0_ns,
            "hz": batch.rate_hz,
            "n": values.shape[0],
            "ch": values.shape[1],
            "x": values.tobytes(),
        }
    )


def decode_raw(data: bytes) -> RawBatch:
    """Decode a raw batch; checks structure only (ranges are ingest's job).

    Raises:
        RecordError: ``truncated``, ``malformed``, ``bad_version``, ``bad_field``
            or ``bad_length`` (value bytes do not match samples x channels).
    """
    obj = _unpack(data, "raw record")
    race = _field(obj, "race", str, "raw record")
    car = _field(obj, "car", int, "raw record")
    seq = _field(obj, "seq", int, "raw record")
    t0 = _field(obj, "t0", int, "raw record")
    hz = _field(obj, "hz", int, "raw record")
    n = _field(obj, "n", int, "raw record")
    channels = _field(obj, "ch", int, "raw record")
    raw = _field(obj, "x", bytes, "raw record")
    if n < 0 or channels <= 0 or hz <= 0:
        raise RecordError("bad_field", "raw record has a non-positive size or rate")
    if len(raw) != n * channels * 4:
        raise RecordError(
            "bad_length",
            f"raw record holds {len(raw)} value bytes, expected {n}x{channels}x4",
        )
    values = np.frombuffer(raw, dtype="<f4").reshape(n, channels)
    return RawBatch(race, car, seq, t0, hz, values)


def encode_frame(frame: Frame) -> bytes:
    """Encode a frame (values as little-endian int32)."""
    return _pack(
        {
            "v": FORMAT_VERSION,
            "race": frame.race,
            "tick": frame.tick,
            "car": frame.car,
            "n": frame.samples,
            "q": np.ascontiguousarray(frame.q, dtype="<i4").tobytes(),
        }
    )


def decode_frame(data: bytes) -> Frame:
    """Decode a frame.

    Raises:
        RecordError: The bytes are not a version-1 frame.
    """
    obj = _unpack(data, "frame")
    raw = _field(obj, "q", bytes, "frame")
    if len(raw) % 4:
        raise RecordError("bad_length", "frame values are not whole int32s")
    return Frame(
        _field(obj, "race", str, "frame"),
        _field(obj, "tick", int, "frame"),
        _field(obj, "car", int, "frame"),
        np.frombuffer(raw, dtype="<i4"),
        _field(obj, "n", int, "frame"),
    )


def encode_event(event: RaceEvent) -> bytes:
    """Encode a race event."""
    return _pack(
        {
            "v": FORMAT_VERSION,
            "race": event.race,
            "t": event.t_ns,
            "kind": event.kind,
            "cars": list(event.cars),
            "data": event.data,
        }
    )


def decode_event(data: bytes) -> RaceEvent:
    """Decode a race event.

    Raises:
        RecordError: The bytes are not a version-1 event.
    """
    obj = _unpack(data, "event")
    cars = _field(obj, "cars", list, "event")
    if not all(isinstance(c, int) for c in cars):
        raise RecordError("bad_field", "event cars must be integers")
    extra = obj.get("data", {})
    if not isinstance(extra, dict):
        raise RecordError("bad_field", "event data must be a map")
    return RaceEvent(
        _field(obj, "race", str, "event"),
        _field(obj, "t", int, "event"),
        _field(obj, "kind", str, "event"),
        tuple(cars),
        extra,
    )
