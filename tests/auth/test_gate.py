"""The gate: origin, address and poll-rate admission, tokens, per-session limits (pure)."""

from __future__ import annotations

import argparse

import pytest

from slipstream.auth import (
    CLOSE_FORBIDDEN,
    CLOSE_TOKEN_EXPIRED,
    AuthConfig,
    AuthError,
    mint_token,
)
from slipstream.catalogue import CATALOGUE
from slipstream.gate import (
    MAX_CLOSE_REASON_BYTES,
    Entry,
    Gate,
    Refusal,
    add_gate_arguments,
    close_reason,
)
from slipstream.limits import (
    CLOSE_RATE_LIMITED,
    CLOSE_TOO_MANY_SUBSCRIPTIONS,
    Breach,
    LimitsConfig,
)

SECRET = "gate-secret-" + "g" * 32
NOW = 1_800_000_000.0
ALL = tuple(g.index for g in CATALOGUE.groups)
TYRES = CATALOGUE.group_by_name["tyres"].index
DRIVER = CATALOGUE.group_by_name["driver"].index


def test_an_open_gate_lets_everything_through() -> None:
    gate = Gate()
    assert not gate.auth_enabled
    for _ in range(1000):
        assert isinstance(gate.check_request("1.2.3.4", "https://x.example", 0.0, poll=True), Entry)
    assert gate.authenticate({}, None) is None
    session = gate.session(None, 0.0)
    assert all(session.on_message(10**9, 0.0) is None for _ in range(100))
    assert session.on_subscribe(None, ALL, 0.0) == (None, ALL)
    assert session.expires_in() is None


def test_origin_and_connections_per_address() -> None:
    gate = Gate(limits=LimitsConfig(max_connections_per_address=2,
                                    allowed_origins=("https://fans.example",)))  # fmt: skip
    refused = gate.check_request("1.1.1.1", "https://evil.example", 0.0)
    assert isinstance(refused, Refusal) and refused.http_status == 403
    assert refused.code == "origin_forbidden"
    a = gate.check_request("1.1.1.1", "https://fans.example", 0.0)
    b = gate.check_request("1.1.1.1", None, 0.0)
    assert isinstance(a, Entry) and isinstance(b, Entry)
    third = gate.check_request("1.1.1.1", None, 0.0)
    assert isinstance(third, Refusal) and third.http_status == 429
    assert third.code == "too_many_connections"
    assert isinstance(gate.check_request("2.2.2.2", None, 0.0), Entry)
    gate.leave(a)
    assert isinstance(gate.check_request("1.1.1.1", None, 0.0), Entry)


def test_poll_rate_per_address() -> None:
    gate = Gate(limits=LimitsConfig(message_rate_per_s=1, message_burst=2))
    for _ in range(2):
        entry = gate.check_request("1.1.1.1", None, 0.0, poll=True)
        assert isinstance(entry, Entry)
        gate.leave(entry)
    refused = gate.check_request("1.1.1.1", None, 0.5, poll=True)
    assert isinstance(refused, Refusal) and refused.code == "too_many_requests"
    assert isinstance(gate.check_request("1.1.1.1", None, 1.5, poll=True), Entry)


def test_authenticate_reads_header_or_query() -> None:
    gate = Gate(auth=AuthConfig(secret=SECRET, enabled=True))
    assert gate.auth_enabled
    token = mint_token(SECRET, [24], ["tyres"], 60, now=NOW)
    grant = gate.authenticate({"token": token}, None, now=NOW)
    assert grant is not None and grant.cars == frozenset({24})
    assert gate.authenticate({}, f"Bearer {token}", now=NOW) == grant
    with pytest.raises(AuthError, match="missing_token"):
        gate.authenticate({}, None, now=NOW)
    with pytest.raises(AuthError, match="token_expired"):
        gate.authenticate({"token": token}, None, now=NOW + 60)


def test_session_gate_checks_rate_scope_and_expiry() -> None:
    limits = LimitsConfig(message_rate_per_s=1, message_burst=1, max_subscriptions=2)
    gate = Gate(AuthConfig(secret=SECRET, enabled=True), limits)
    token = mint_token(SECRET, [24, 48], None, 60, now=NOW)
    grant = gate.authenticate({"token": token}, None, now=NOW)
    session = gate.session(grant, now=0.0)
    assert session.expires_in(NOW) == 60
    assert session.on_message(10, 0.0) is None
    breach = session.on_message(10, 0.1)
    assert isinstance(breach, Breach) and breach.close_code == CLOSE_RATE_LIMITED
    cars, groups = session.on_subscribe(None, ALL, 0.0, NOW)  # type: ignore[misc]
    assert cars == (24, 48) and DRIVER not in groups
    forbidden = session.on_subscribe([24], (TYRES, DRIVER), 0.0, NOW)
    assert isinstance(forbidden, Breach) and forbidden.close_code == CLOSE_FORBIDDEN
    assert "premium" in forbidden.reason
    too_many = session.on_subscribe([24], (TYRES,), 0.0, NOW)
    assert isinstance(too_many, Breach) and too_many.close_code == CLOSE_TOO_MANY_SUBSCRIPTIONS
    late = gate.session(grant, now=0.0).on_subscribe([24], (TYRES,), 0.0, NOW + 61)
    assert isinstance(late, Breach) and late.close_code == CLOSE_TOKEN_EXPIRED


def test_close_reasons_fit_a_close_frame() -> None:
    assert close_reason("short") == "short"
    long = "é" * 200
    cut = close_reason(long)
    assert len(cut.encode()) <= MAX_CLOSE_REASON_BYTES and cut.endswith("...")


def _gate(argv: list[str]) -> Gate:
    parser = argparse.ArgumentParser()
    add_gate_arguments(parser)
    return Gate.from_args(parser.parse_args(argv))


def test_gate_from_flags_says_how_to_switch_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIPSTREAM_SECRET", SECRET)
    on = _gate(["--max-subscriptions", "5"])
    assert on.auth_enabled and "--no-auth" in on.describe()
    assert on.limits is not None and on.limits.max_subscriptions == 5
    off = _gate(["--no-auth"])
    assert not off.auth_enabled and "off (--no-auth)" in off.describe()
    monkeypatch.delenv("SLIPSTREAM_SECRET")
    unset = _gate([])
    assert not unset.auth_enabled and "set it to require tokens" in unset.describe()


def test_loopback_is_not_counted_unless_asked() -> None:
    tight = LimitsConfig(max_connections_per_address=1, message_rate_per_s=1, message_burst=1)
    gate = Gate(limits=tight)
    for address in ("127.0.0.1", "::1", "127.1.2.3"):
        entries = [gate.check_request(address, None, 0.0, poll=True) for _ in range(5)]
        assert all(isinstance(e, Entry) for e in entries)
        for entry in entries:
            gate.leave(entry)  # type: ignore[arg-type]
    assert isinstance(gate.check_request("10.0.0.1", None, 0.0), Entry)
    assert isinstance(gate.check_request("10.0.0.1", None, 0.0), Refusal)
    strict = Gate(limits=LimitsConfig(max_connections_per_address=1, limit_loopback=True))
    assert isinstance(strict.check_request("127.0.0.1", None, 0.0), Entry)
    assert isinstance(strict.check_request("127.0.0.1", None, 0.0), Refusal)
    # The origin check applies to local clients as well.
    origins = Gate(limits=LimitsConfig(allowed_origins=("https://fans.example",)))
    assert isinstance(origins.check_request("127.0.0.1", "https://evil.example", 0.0), Refusal)
