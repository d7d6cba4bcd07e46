"""``SLIPSTREAM_*`` variables as flag defaults: taken when valid, a clear error when not."""

from __future__ import annotations

import pytest

from slipstream.app.cli import build_parser, main


def test_a_variable_sets_the_flag_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIPSTREAM_TICK_WAIT_S", "2.5")
    monkeypatch.setenv("SLIPSTREAM_REPLAY_TICKS", "480")
    args = build_parser().parse_args(["broadcast", "--kafka", "127.0.0.1:9092"])
    assert (args.tick_wait, args.replay_ticks) == (2.5, 480)
    args = build_parser().parse_args(["run", "--tick-wait", "0.5"])  # a flag wins
    assert args.tick_wait == 0.5


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("SLIPSTREAM_TICK_WAIT_S", "soon", "SLIPSTREAM_TICK_WAIT_S must be a number, got 'soon'"),
        ("SLIPSTREAM_REPLAY_TICKS", "1.5", "SLIPSTREAM_REPLAY_TICKS must be an integer"),
        ("SLIPSTREAM_ALLOWED_LATENESS_MS", "lots", "LATENESS_MS must be an integer, got 'lots'"),
    ],
)
def test_a_bad_variable_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, value: str,
    says: str,
) -> None:  # fmt: skip
    monkeypatch.setenv(name, value)
    assert main(["run", "--help"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("slipstream: error: ") and says in err
    assert "Traceback" not in err
