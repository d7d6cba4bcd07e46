"""Kafka's default partitioner, without a Kafka client.

Kafka's Java client (and aiokafka) put a keyed record in partition
``(murmur2(key) & 0x7fffffff) % partitions``.  Both buses use this module so a
car lands in the same partition in process and on a broker, and the bus
contract stays free of aiokafka (tests/bus/test_partitioner.py checks it
against aiokafka's implementation).
"""

from __future__ import annotations

__all__ = ["murmur2", "partition_for"]

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """MurmurHash2 of ``data`` as Kafka computes it (seed 0x9747b28c).

    Returns:
        The hash as an unsigned 32-bit integer (Java's ``int`` bits).
    """
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = data[whole:]
    if tail:
        # The Java switch falls through: the third byte, then the second, then the first.
        h ^= int.from_bytes(tail, "little")
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partition of ``key`` among ``partitions`` partitions.

    Raises:
        ValueError: ``partitions`` is not positive.
    """
    if partitions <= 0:
        raise ValueError("a topic needs at least one partition")
    return (murmur2(key) & 0x7FFFFFFF) % partitions
