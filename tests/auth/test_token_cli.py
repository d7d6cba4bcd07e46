"""``slipstream token``: mints a verifiable token, or says clearly what is wrong."""

from __future__ import annotations

import time

import pytest

from slipstream.app.cli import main
from slipstream.auth import TokenVerifier

SECRET = "cli-secret-" + "z" * 32


def test_token_command_mints_a_scoped_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLIPSTREAM_SECRET", SECRET)
    before = time.time()
    code = main(["token", "--cars", "24,48", "--groups", "tyres,engine", "--ttl", "3600"])
    assert code == 0
    token = capsys.readouterr().out.strip()
    grant = TokenVerifier(SECRET).verify(token)
    assert grant.cars == frozenset({24, 48})
    assert grant.groups == frozenset({"tyres", "engine"})
    assert before + 3599 <= grant.expires_at <= time.time() + 3601


def test_token_command_defaults_to_everything_but_premium(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLIPSTREAM_SECRET", SECRET)
    assert main(["token", "--cars", "*"]) == 0
    grant = TokenVerifier(SECRET).verify(capsys.readouterr().out.strip())
    assert grant.cars is None and grant.groups is None
    assert not grant.allows_group("driver")


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["token"], None, "token: error: SLIPSTREAM_SECRET is not set"),
        # A bad variable is refused as the command line is read, naming it.
        (["token"], "short", ": error: SLIPSTREAM_SECRET: expected a secret of at least 32 bytes"),
        (["token", "--groups", "tyres,warp"], SECRET, "token: error: unknown group(s) warp"),
        (["token", "--cars", "1000"], SECRET, "0..999"),
        (["token", "--ttl", "0"], SECRET, "token: error: ttl_s must be a positive"),
    ],
)
def test_token_command_errors(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: str | None,
    message: str,
) -> None:
    if env is None:
        monkeypatch.delenv("SLIPSTREAM_SECRET", raising=False)
    else:
        monkeypatch.setenv("SLIPSTREAM_SECRET", env)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("slipstream") and message in captured.err


def test_token_command_rejects_bad_car_lists(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["token", "--cars", "24,abc"])
    assert info.value.code == 2
    assert "expected car numbers" in capsys.readouterr().err
