"""The CLI's filter of repeated library log lines (pure, on a fake clock)."""

from __future__ import annotations

import logging

import pytest

from slipstream.app.cli import configure_logging
from slipstream.logfilter import RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_repeats_of_a_kind_are_dropped_for_the_window_then_counted() -> None:
    clock = Clock()
    f = RepeatFilter("aiokafka", window_s=10.0, clock=clock)
    assert f.filter(record("aiokafka.conn", "Unable connect to node with id %s", 1))
    for node in range(30):  # other arguments, same kind
        clock.now += 0.1
        assert not f.filter(record("aiokafka.conn", "Unable connect to node with id %s", node))
    assert f.filter(record("aiokafka.cluster", "Unable to update metadata"))  # another kind
    assert f.filter(record("aiokafka.conn", "Unable connect to node with id %s", 1, level=30))
    clock.now = 110.0
    later = record("aiokafka.conn", "Unable connect to node with id %s", 7)
    assert f.filter(later)
    assert later.getMessage() == (
        "Unable connect to node with id 7 (30 more like this in the last 10 s not shown)"
    )
    assert f.dropped == 30
    clock.now += 1.0  # a fresh window, nothing dropped yet: no note
    quiet = record("aiokafka.conn", "Unable connect to node with id %s", 8)
    assert not f.filter(quiet) and f.dropped == 31


def test_other_loggers_pass_untouched() -> None:
    f = RepeatFilter("aiokafka", clock=Clock())
    for _ in range(5):
        assert f.filter(record("downsample.service", "commit failed, will retry: %s", "x"))
        assert f.filter(record("aiokafkaesque", "not below the prefix"))
    with pytest.raises(ValueError, match="window_s"):
        RepeatFilter("aiokafka", window_s=0)


def test_the_cli_handler_filters_aiokafka(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("info", "text")
        for node in range(50):
            logging.getLogger("aiokafka.conn").error("Unable connect to node with id %s", node)
        logging.getLogger("slipstream.test").error("ours, shown every time")
        logging.getLogger("slipstream.test").error("ours, shown every time")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    err = capsys.readouterr().err
    assert err.count("Unable connect to node") == 1
    assert err.count("ours, shown every time") == 2
