"""The one fan fleet of the tests: ``count`` lean resuming fans (:mod:`tests.support.fans`).

:class:`FanFleet` opens them (spread over node addresses), waits until every fan
has reached a tick or an event, drops their connections on demand and
summarises their states for failure messages.
"""

from __future__ import annotations

import asyncio
import bisect
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

from tests.support.fans import Fan, Observations

__all__ = ["FanFleet"]


class FanFleet:
    """``count`` fans subscribed to ``cars`` x ``groups`` on the first reachable address.

    Args:
        addresses: ``(host, port)`` of nodes; fan ``i`` starts on ``i % len``
            and moves to the next when a connection attempt fails.
        first_delay_s: A lost fan waits uniformly up to this before reconnecting.
        spread: Start fans round-robin on the addresses (else all on the first).
        decode: Decode the subscribed parts and compare values (else count
            fresh car-frames only: a load generator's cost).
        record_ticks: Keep every tick number each fan receives (:attr:`Fan.ticks`).
    """

    def __init__(
        self,
        addresses: list[tuple[str, int]],
        count: int,
        cars: tuple[int, ...] | None,
        groups: tuple[int, ...] | None,
        *,
        first_delay_s: float = 0.5,
        backoff_max_s: float = 1.0,
        max_attempts: int = 200,
        spread: bool = True,
        decode: bool = True,
        record_ticks: bool = False,
    ) -> None:
        self.addresses = addresses
        self.spread = spread
        self.decode = decode
        self.record_ticks = record_ticks
        self.cars = cars
        self.groups = groups
        self.first_delay_s = first_delay_s
        self.backoff_max_s = backoff_max_s
        self.max_attempts = max_attempts
        self.observations = Observations()
        #: Set by :meth:`missing`: car-frames of the truth a tick listed as stale.
        self.stale_reported = 0
        self.fans = [Fan(self, i) for i in range(count)]
        self.connect_failures = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._target: Callable[[Fan], bool] | None = None
        self._reached: set[int] = set()
        self._event = asyncio.Event()

    def backoff_s(self, attempt: int) -> float:
        return random.uniform(0.5, 1.0) * min(self.backoff_max_s, 0.05 * 2**attempt)

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def open(self, timeout_s: float, concurrency: int = 200) -> None:
        """Connect every fan and wait for each one's first tick."""
        await self.connect_all(timeout_s, concurrency)
        await self.wait_all(0, 1, timeout_s)

    def progress(self, fan: Fan) -> None:
        if self._target is None or fan.index in self._reached or not self._target(fan):
            return
        self._reached.add(fan.index)
        if len(self._reached) == len(self.fans):
            self._event.set()

    async def wait_all(self, tick: int, connects: int, timeout_s: float) -> None:
        """Wait until every fan has applied ``tick`` after at least ``connects`` connections.

        Raises:
            TimeoutError: With how many fans got there.
        """

        def there(fan: Fan) -> bool:
            return fan.cursor is not None and fan.cursor[1] >= tick and fan.connects >= connects

        await self.wait_until(there, f"reach tick {tick} after {connects} connection(s)", timeout_s)

    async def wait_race_end(self, timeout_s: float) -> None:
        """Wait until every fan has received the ``race_end`` event."""
        await self.wait_until(lambda fan: fan.race_ended, "see race_end", timeout_s)

    async def wait_until(self, done: Callable[[Fan], bool], what: str, timeout_s: float) -> None:
        """Wait until ``done(fan)`` holds for every fan (checked as ticks arrive)."""
        self._target = done
        self._reached.clear()
        self._event.clear()
        for fan in self.fans:
            self.progress(fan)
        try:
            async with asyncio.timeout(timeout_s):
                await self._event.wait()
        except TimeoutError:
            behind = [f for f in self.fans if f.index not in self._reached]
            sample = [(f.index, f.cursor, f.connects, f.errors[-1:]) for f in behind[:5]]
            raise TimeoutError(
                f"{len(behind)} of {len(self.fans)} fans did not {what} in {timeout_s:g} s; "
                f"e.g. {sample}; {self.describe()}"
            ) from None
        finally:
            self._target = None

    async def connect_all(self, timeout_s: float, concurrency: int = 200) -> None:
        """Connect every fan and wait until each one is subscribed."""
        limit = asyncio.Semaphore(concurrency)

        async def one(fan: Fan) -> None:
            async with limit:
                await fan.connect()

        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*(one(f) for f in self.fans))
        await self.wait_until(lambda fan: fan.connects >= 1, "subscribe", timeout_s)

    def describe(self) -> str:
        """A summary of the fans' states, for failure messages."""
        fans = self.fans
        last = Counter(f.cursor[1] if f.cursor else None for f in fans).most_common(6)
        connects = Counter(f.connects for f in fans).most_common(4)
        servers = Counter(tuple(f.servers[-2:]) for f in fans).most_common(4)
        notices = Counter(str(n.get("code")) for f in fans for n in f.notices).most_common(4)
        errors = Counter(e for f in fans for e in f.errors).most_common(4)
        return (
            f"last ticks {last}; connects {connects}; servers {servers}; "
            f"notices {notices}; errors {errors}"
        )

    def latest_tick(self) -> int:
        return max((f.cursor[1] for f in self.fans if f.cursor is not None), default=-1)

    def drop_all(self) -> int:
        """Abort every fan's connection (each reconnects by itself); returns how many."""
        dropped = 0
        for fan in self.fans:
            if fan.connection is not None:
                fan.connection.abort()
                dropped += 1
        return dropped

    async def close(self) -> None:
        for fan in self.fans:
            fan.closed = True
            if fan.connection is not None:
                fan.connection.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> FanFleet:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def summary(self) -> dict[str, Any]:
        """Fleet-wide figures: duplicates, gaps (reported or not), errors, resume times."""
        resume = sorted(s for f in self.fans for s in f.resume_s)
        return {
            "fans": len(self.fans),
            "duplicates": sum(f.duplicates for f in self.fans),
            "unreported_gaps": sum(1 for f in self.fans for g in f.gaps if not g.reported),
            "reported_gaps": sum(1 for f in self.fans for g in f.gaps if g.reason == "resume_gap"),
            # a fan too slow to read (the load generator, not the node) is conflated
            "conflated_gaps": sum(1 for f in self.fans for g in f.gaps if g.reason == "conflated"),
            "bad_bases": sum(f.bad_bases for f in self.fans),
            "mismatches": self.observations.mismatches,
            "errors": sum(len(f.errors) for f in self.fans),
            "car_frames": sum(f.frames for f in self.fans),
            "reconnects": sum(max(0, f.connects - 1) for f in self.fans),
            "resume_p50_s": resume[len(resume) // 2] if resume else None,
            "resume_max_s": resume[-1] if resume else None,
        }

    def missing(self, truth: dict[tuple[str, int, int], int]) -> list[str]:
        """Problems of each fan against ``truth`` ((race, car, tick) -> digest) over its span.

        A fan must hold exactly the truth's car-frames of its cars between its
        first and last tick, except inside gaps a notice reported and for cars
        a tick listed stale (the node emitted the tick without a late frame and
        said so; counted in :attr:`stale_reported`); every value the fleet saw
        must equal the truth's.
        """
        problems: list[str] = []
        self.stale_reported = 0
        for key, value in self.observations.values.items():
            if truth.get(key) != value:
                problems.append(f"{key}: fans saw {value}, truth {truth.get(key)}")
                if len(problems) > 10:
                    return problems
        ticks: dict[str, list[int]] = {}  # per race, the tick of every truth car-frame
        for r, car, tick in truth:
            if not self.cars or car in self.cars:
                ticks.setdefault(r, []).append(tick)
        for sorted_ticks in ticks.values():
            sorted_ticks.sort()

        def count(race: str, first: int, last: int) -> int:
            if first > last:
                return 0
            got = ticks.get(race, [])
            return bisect.bisect_right(got, last) - bisect.bisect_left(got, first)

        for fan in self.fans:
            if fan.cursor is None or fan.first_tick is None:
                problems.append(f"fan {fan.index} got no tick")
                continue
            race, last = fan.cursor
            in_gaps = [g for g in fan.gaps if g.reported and g.race == race]
            stale = {
                key
                for key in fan.stale
                if key in truth
                and key[0] == race
                and fan.first_tick <= key[2] <= last
                and not any(g.first <= key[2] <= g.last for g in in_gaps)
            }
            self.stale_reported += len(stale)
            excused = sum(
                count(g.race, max(g.first, fan.first_tick), min(g.last, last)) for g in in_gaps
            )
            want = count(race, fan.first_tick, last) - excused - len(stale)
            if fan.frames != want:
                problems.append(
                    f"fan {fan.index}: {fan.frames} car-frames in ticks {fan.first_tick}..{last}, "
                    f"truth has {want}"
                )
            if len(problems) > 10:
                break
        return problems
