"""Fan-out kernels under pytest-benchmark: tick assembly at the node, decoding at the client.

Skipped in the ordinary test run (addopts has --benchmark-skip).  Run::

    pytest benchmarks/test_fanout_assembly.py -o addopts="" --benchmark-only \\
        --benchmark-json benchmarks/results/fanout_kernels.json

* ``fanout-assemble-tick``: what the node does once per tick and subscription
  state (encode every car once per codec, then assemble one message), for a
  fan following 2 cars and one following all 40.
* ``fanout-client-message``: what the load generator spends per received
  message (frame or HTTP parse plus msgpack decode of the envelope), the
  figure that must stay well below the node's per-subscriber cost.
"""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture
from websockets.frames import Frame, Opcode

from broadcast.fanout import EncodedTick
from broadcast.ticks import TickAssembler, TickData
from slipstream.app.bench.race import RaceFrames, simulate_race
from slipstream.app.bench.slipstream_adapter import SlipstreamAdapter
from slipstream.app.bench.wire import HttpResponseReader, WsFrameReader
from slipstream.catalogue import CATALOGUE
from slipstream.codecs import CODECS

RACE: RaceFrames = simulate_race(cars=40, seconds=3, seed=1)
ALL_GROUPS = tuple(g.index for g in CATALOGUE.groups)
TWO_CARS = (int(RACE.cars[0]), int(RACE.cars[1]))


def _ticks() -> list[TickData]:
    assembler = TickAssembler(1.0, lambda car: 0)
    assembler.add_event(RACE.start, 0.0)
    out: list[TickData] = []
    for tick in range(4):
        for frame in RACE.frames(tick):
            out += assembler.add_frame(frame, 0, 0.0)
        out += assembler.poll(0.0)
    return out


TICK = _ticks()[-1]


@pytest.mark.benchmark(group="fanout-assemble-tick")
@pytest.mark.parametrize("codec", sorted(CODECS))
@pytest.mark.parametrize("cars", ["two", "all"])
def test_encode_and_assemble_one_tick(benchmark: BenchmarkFixture, codec: str, cars: str) -> None:
    key = (TWO_CARS if cars == "two" else None, ALL_GROUPS, codec)

    def assemble() -> bytes:
        return EncodedTick(TICK).message(key, False)

    message = benchmark(assemble)
    assert message[:1] == b"\x88"  # a msgpack map of 8 fields


def _message(codec: str) -> bytes:
    return EncodedTick(TICK).message((TWO_CARS, ALL_GROUPS, codec), False)


@pytest.mark.benchmark(group="fanout-client-message")
@pytest.mark.parametrize("codec", sorted(CODECS))
def test_ws_client_per_message(benchmark: BenchmarkFixture, codec: str) -> None:
    frame = Frame(Opcode.BINARY, _message(codec)).serialize(mask=False)
    reader = WsFrameReader()
    adapter = SlipstreamAdapter()

    def receive() -> int:
        ((_, payload, _),) = reader.feed(frame)
        stamp = adapter.ws_message(payload, False)
        assert stamp is not None
        return stamp[0]

    assert benchmark(receive) == TICK.tick


@pytest.mark.benchmark(group="fanout-client-message")
def test_poll_client_per_response(benchmark: BenchmarkFixture) -> None:
    import msgpack

    body = msgpack.packb({"v": 1, "race": TICK.race, "cursor": TICK.tick, "m": [_message("full")]})
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-msgpack\r\n"
        b"Content-Length: %d\r\nCache-Control: no-store\r\n\r\n" % len(body)
    ) + body
    reader = HttpResponseReader()
    adapter = SlipstreamAdapter()

    def receive() -> int:
        (parsed,) = reader.feed(response)
        stamps, _ = adapter.poll_response(parsed.status, parsed.body, "")
        return len(stamps)

    assert benchmark(receive) == 1
