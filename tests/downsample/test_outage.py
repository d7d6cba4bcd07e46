"""The quiet-partition tracker: drained partitions, and no flush through a broker outage."""

from __future__ import annotations

import pytest

from downsample.outage import QuietTracker


def test_a_drained_partition_is_quiet_after_idle() -> None:
    tracker = QuietTracker(idle_s=1.0)
    assert tracker.due(0.0)
    assert tracker.answer(0.0, {0: 10, 1: 20}, {0: 10, 1: 15}) == set()
    assert not tracker.due(0.2) and tracker.due(0.25)
    assert tracker.answer(0.5, {0: 10, 1: 20}, {0: 10, 1: 15}) == set()
    assert tracker.answer(1.0, {0: 10, 1: 20}, {0: 10, 1: 15}) == {0}
    # New records on partition 0: no longer drained, silence starts again when read.
    assert tracker.answer(1.5, {0: 12, 1: 20}, {0: 10, 1: 20}) == set()
    assert tracker.answer(2.5, {0: 12, 1: 20}, {0: 12, 1: 20}) == {1}
    assert tracker.answer(3.5, {0: 12, 1: 20}, {0: 12, 1: 20}) == {0, 1}


def test_a_partition_no_longer_assigned_is_forgotten() -> None:
    tracker = QuietTracker(idle_s=1.0)
    tracker.answer(0.0, {0: 5}, {0: 5})
    assert tracker.answer(1.0, {1: 0}, {1: 0}) == set()
    assert tracker.answer(2.0, {1: 0}, {1: 0}) == {1}


def test_after_an_outage_nothing_is_quiet_until_producers_are_back() -> None:
    tracker = QuietTracker(idle_s=1.0, grace_factor=10)
    tracker.answer(0.0, {0: 10}, {0: 10})
    assert tracker.no_answer(0.5) == set() and tracker.in_outage
    # The broker answers again: silence is not trusted while the producers reconnect.
    assert tracker.answer(1.0, {0: 10}, {0: 10}) == set()
    assert tracker.answer(5.0, {0: 10}, {0: 10}) == set()
    # A producer is back (the end offset grew): silence is measured again from now.
    assert tracker.answer(6.0, {0: 11}, {0: 11}) == set()
    assert not tracker.in_outage
    assert tracker.answer(7.0, {0: 11}, {0: 11}) == {0}


def test_after_an_outage_the_grace_ends_without_producers() -> None:
    tracker = QuietTracker(idle_s=1.0, grace_factor=3)
    tracker.no_answer(0.0)
    tracker.answer(1.0, {0: 4}, {0: 4})
    assert tracker.answer(3.9, {0: 4}, {0: 4}) == set() and tracker.in_outage
    assert tracker.answer(4.0, {0: 4}, {0: 4}) == set() and not tracker.in_outage
    assert tracker.answer(5.0, {0: 4}, {0: 4}) == {0}


def test_idle_must_be_positive() -> None:
    with pytest.raises(ValueError, match="idle_s"):
        QuietTracker(idle_s=0)
