"""The replay ring and resume planning (pure core).

The ring keeps the last ``size`` ticks of the current race.  Given a fan's
cursor, :func:`plan_resume` says what it gets: the missed ticks in order when
the ring still holds them all, else (gap too long, other race, cursor from the
future of another node is fine: it waits) a notice plus a keyframe.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from broadcast.fanout import EncodedTick
from broadcast.protocol import Cursor, encode_message

__all__ = ["ReplayRing", "ResumePlan", "notice_message", "plan_resume"]

#: Ticks at the head of the ring that keep their encoded parts cached.
HOT_TICKS = 8


class ReplayRing:
    """The last ``size`` ticks of the current race, oldest first."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("the replay ring holds at least one tick")
        self.size = size
        self._ticks: deque[EncodedTick] = deque()

    def __len__(self) -> int:
        return len(self._ticks)

    def __iter__(self) -> Iterator[EncodedTick]:
        return iter(self._ticks)

    @property
    def latest(self) -> EncodedTick | None:
        """The newest tick, or None when empty."""
        return self._ticks[-1] if self._ticks else None

    @property
    def race(self) -> str | None:
        """Race of the ticks held."""
        return self._ticks[-1].race if self._ticks else None

    def append(self, tick: EncodedTick) -> None:
        """Add the next tick (a new race empties the ring first)."""
        if self._ticks and self._ticks[-1].race != tick.race:
            self._ticks.clear()
        if self._ticks and tick.tick <= self._ticks[-1].tick:
            raise ValueError(f"tick {tick.tick} does not follow {self._ticks[-1].tick}")
        self._ticks.append(tick)
        if len(self._ticks) > self.size:
            self._ticks.popleft().release()
        if len(self._ticks) > HOT_TICKS:
            self._ticks[-HOT_TICKS - 1].release()

    def after(self, race: str, tick: int) -> list[EncodedTick] | None:
        """Every tick of ``race`` after ``tick``, or None if the ring lacks some."""
        if not self._ticks or self._ticks[-1].race != race:
            return None
        first = self._ticks[0].tick
        if tick + 1 < first:
            return None
        start = max(0, tick + 1 - first)
        return [self._ticks[i] for i in range(start, len(self._ticks))]


def notice_message(
    code: str, message: str, race: str | None, from_tick: int | None, to_tick: int | None
) -> bytes:
    """A ``notice`` message (resume_gap, race_changed, conflated, resync, shutdown)."""
    return encode_message(
        {
            "t": "notice",
            "code": code,
            "message": message,
            "race": race,
            "from": from_tick,
            "to": to_tick,
        }
    )


@dataclass(frozen=True, slots=True)
class ResumePlan:
    """What a fan with a cursor gets before the live stream.

    Attributes:
        replay: Ticks to send, in order (the fan is in sync after).
        notice: A notice to send first, or None.
        jump: Send the latest tick as a keyframe now (no cursor, a gap past
            the ring, or another race); nothing to replay.
        keyframe_first: The first tick sent (replayed or live) is a keyframe.
        wait_until: The cursor is at or ahead of this node's latest tick:
            skip ticks up to this one (-1: none to skip).
    """

    replay: list[EncodedTick]
    notice: bytes | None
    jump: bool
    keyframe_first: bool
    wait_until: int = -1


def plan_resume(ring: ReplayRing, cursor: Cursor | None, keyframe: bool = False) -> ResumePlan:
    """Plan a (re)subscription from ``cursor`` (None: start from a keyframe).

    Args:
        ring: The node's replay ring.
        cursor: The fan's cursor.
        keyframe: The fan holds no state for the cursor's race (so the first
            tick after the cursor must be a keyframe).
    """
    latest = ring.latest
    if cursor is None:
        return ResumePlan([], None, latest is not None, True)
    if latest is None:
        # Nothing on this node yet: the live stream decides.
        return ResumePlan([], None, False, keyframe, wait_until=cursor.tick)
    if cursor.race == latest.race:
        if cursor.tick >= latest.tick:
            return ResumePlan([], None, False, keyframe, wait_until=cursor.tick)
        replay = ring.after(cursor.race, cursor.tick)
        if replay is not None:
            return ResumePlan(replay, None, False, keyframe)
        first = next(iter(ring)).tick
        text = (
            f"ticks {cursor.tick + 1}..{first - 1} of race {cursor.race} are past this "
            f"node's replay window ({ring.size} ticks); resuming from a keyframe at {latest.tick}"
        )
        notice = notice_message("resume_gap", text, cursor.race, cursor.tick + 1, latest.tick)
        return ResumePlan([], notice, True, True)
    text = (
        f"race {cursor.race} is not the current race {latest.race}; starting from a "
        f"keyframe of race {latest.race} at tick {latest.tick}"
    )
    notice = notice_message("race_changed", text, latest.race, None, latest.tick)
    return ResumePlan([], notice, True, True)
