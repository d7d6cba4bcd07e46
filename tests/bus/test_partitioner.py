"""The pure murmur2 partitioner agrees with aiokafka's on many keys."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from slipstream.bus import partition_for
from slipstream.bus.partitioner import murmur2


def test_murmur2_matches_aiokafka_on_many_keys() -> None:
    rng = np.random.default_rng(18)
    keys = [str(car).encode() for car in range(1, 100)]
    keys += [b"", b"a", b"ab", b"abc", b"abcd", b"\xff\xff\xff\xff\xff"]
    keys += [rng.bytes(int(n)) for n in rng.integers(0, 64, 5000)]
    for key in keys:
        assert murmur2(key) == aiokafka_murmur2(key) & 0xFFFFFFFF, key


def test_partition_matches_kafka_default_partitioner() -> None:
    # Kafka's own test vectors (Java client, DefaultPartitionerTest / Utils.murmur2).
    assert murmur2(b"21") & 0x7FFFFFFF == (-973932308 & 0x7FFFFFFF)
    assert murmur2(b"foobar") & 0x7FFFFFFF == (-790332482 & 0x7FFFFFFF)
    for car in range(1, 100):
        key = str(car).encode()
        for partitions in (1, 3, 8, 16):
            want = (aiokafka_murmur2(key) & 0x7FFFFFFF) % partitions
            assert partition_for(key, partitions) == want


def test_the_bus_contract_loads_no_kafka_client() -> None:
    code = (
        "import sys, slipstream.bus; from slipstream.bus import Record, make_bus; "
        "assert 'aiokafka' not in sys.modules, 'aiokafka loaded'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
