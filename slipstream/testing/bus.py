"""Waiting helpers for tests that read from a bus (either kind).

They wait on the bus itself (``getmany`` returns as soon as records arrive, and
drives a Kafka group's joins and rebalances), bounded by a deadline: no sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from slipstream.bus.base import Consumer, Record, TopicPartition

__all__ = ["drain", "settle"]

#: Default bound on a wait; a Kafka group's first join alone takes ~3 s on Tansu.
DEFAULT_TIMEOUT_S = 30.0


async def drain(
    consumer: Consumer, count: int, *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> list[Record]:
    """Read until exactly ``count`` records arrived.

    Raises:
        TimeoutError: Fewer arrived within ``timeout_s``.
        AssertionError: More arrived than expected (the list is in the message).
    """
    records: list[Record] = []
    async with asyncio.timeout(timeout_s):
        while len(records) < count:
            records += await consumer.getmany(timeout_ms=500)
    if len(records) != count:
        got = [(r.topic, r.partition, r.offset) for r in records]
        raise AssertionError(f"expected {count} records, read {len(records)}: {got}")
    return records


async def settle(
    consumers: Sequence[Consumer],
    expected: set[TopicPartition],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> list[set[TopicPartition]]:
    """Poll the members of one group until they split ``expected`` among them all.

    Every member ends up with at least one partition, no partition with two
    members.  Call it while no records are waiting: reading one is an error
    (it would be lost to the caller).

    Returns:
        Each member's assignment, in the order of ``consumers``.

    Raises:
        TimeoutError: The group did not settle within ``timeout_s``.
        AssertionError: A member read a record meanwhile.
    """

    def split() -> bool:
        assignments = [c.assignment() for c in consumers]
        union: set[TopicPartition] = set().union(*assignments)
        disjoint = sum(len(a) for a in assignments) == len(union)
        return union == expected and disjoint and all(assignments)

    async with asyncio.timeout(timeout_s):
        while not split():
            batches = await asyncio.gather(*(c.getmany(timeout_ms=200) for c in consumers))
            if any(batches):
                raise AssertionError("settle() read records; call it before producing any")
    return [c.assignment() for c in consumers]
