"""Limit policies with an injected clock (pure, no loop)."""

from __future__ import annotations

import argparse

import pytest

from slipstream.errors import ConfigError
from slipstream.limits import (
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_RATE_LIMITED,
    CLOSE_TOO_MANY_SUBSCRIPTIONS,
    AddressBuckets,
    AddressLimiter,
    LimitsConfig,
    OriginPolicy,
    TokenBucket,
    add_limits_arguments,
)


def test_token_bucket_allows_the_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate_per_s=2, burst=3, now=0.0)
    assert [bucket.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.allow(0.49)  # 0.98 of a token
    assert bucket.allow(0.5)
    assert not bucket.allow(0.5)
    # A long pause refills to the burst, not beyond.
    assert bucket.tokens(100.0) == 3
    assert [bucket.allow(100.0) for _ in range(4)] == [True, True, True, False]


def test_token_bucket_ignores_a_clock_going_back() -> None:
    bucket = TokenBucket(1, 1, now=10.0)
    assert bucket.allow(10.0)
    assert not bucket.allow(5.0)
    assert bucket.allow(11.0)


def test_token_bucket_sustained_rate_matches() -> None:
    bucket = TokenBucket(rate_per_s=8, burst=1, now=0.0)
    # Offered 64/s for 1024 steps (16 s, binary fractions: exact in floats): 8/s get
    # through, plus the full bucket at the start.
    allowed = sum(bucket.allow(i / 64) for i in range(1024))
    assert allowed == 1 + 1023 // 8


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0.5)])
def test_token_bucket_checks_its_arguments(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, 0.0)


def test_address_limiter_counts_and_forgets() -> None:
    limiter = AddressLimiter(2)
    assert limiter.acquire("10.0.0.1") and limiter.acquire("10.0.0.1")
    assert not limiter.acquire("10.0.0.1")
    assert limiter.count("10.0.0.1") == 2  # the refused one is not counted
    assert limiter.acquire("10.0.0.2")
    limiter.release("10.0.0.1")
    assert limiter.acquire("10.0.0.1")
    for _ in range(3):
        limiter.release("10.0.0.1")
    limiter.release("10.0.0.2")
    limiter.release("never-seen")
    assert len(limiter) == 0  # nothing kept for addresses without connections


def test_address_buckets_are_per_address_and_bounded() -> None:
    buckets = AddressBuckets(rate_per_s=1, burst=2, max_addresses=3)
    assert buckets.allow("a", 0) and buckets.allow("a", 0)
    assert not buckets.allow("a", 0)
    assert buckets.allow("b", 0)
    for name in "cdefg":
        buckets.allow(name, 0)
    assert len(buckets) == 3


def test_origin_policy() -> None:
    policy = OriginPolicy(["https://fans.example.com", "http://localhost:8000/"])
    assert policy.allows(None)  # not a browser
    assert policy.allows("https://fans.example.com")
    assert policy.allows("HTTPS://FANS.EXAMPLE.COM/")
    assert policy.allows("http://localhost:8000")
    assert not policy.allows("https://evil.example.com")
    assert not policy.allows("https://fans.example.com.evil.example")
    assert not policy.allows("null")
    assert not policy.allows("")
    assert OriginPolicy(["*"]).allows("https://anything.example")
    with pytest.raises(ValueError, match="https://host"):
        OriginPolicy(["fans.example.com"])


def test_connection_limits_size_rate_and_subscriptions() -> None:
    config = LimitsConfig(max_message_bytes=1000, message_rate_per_s=1, message_burst=2,
                          max_subscriptions=2)  # fmt: skip
    limits = config.connection(now=0.0)
    assert limits.on_message(1000, 0.0) is None
    too_big = limits.on_message(1001, 0.0)
    assert too_big is not None and too_big.close_code == CLOSE_MESSAGE_TOO_BIG
    assert "1001" in too_big.reason
    assert limits.on_message(10, 0.0) is None
    rate = limits.on_message(10, 0.1)
    assert rate is not None and rate.close_code == CLOSE_RATE_LIMITED
    assert limits.on_message(10, 1.2) is None
    assert limits.on_subscribe(0.0) is None and limits.on_subscribe(1.0) is None
    subs = limits.on_subscribe(2.0)
    assert subs is not None and subs.close_code == CLOSE_TOO_MANY_SUBSCRIPTIONS
    assert limits.on_subscribe(32.0) is None  # one more after half a minute


def test_limits_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIPSTREAM_ALLOWED_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("SLIPSTREAM_MESSAGE_RATE", "5")
    parser = argparse.ArgumentParser()
    add_limits_arguments(parser)
    config = LimitsConfig.from_args(parser.parse_args(["--max-subscriptions", "3"]))
    assert config.allowed_origins == ("https://a.example", "https://b.example")
    assert config.message_rate_per_s == 5
    assert config.max_subscriptions == 3
    monkeypatch.delenv("SLIPSTREAM_ALLOWED_ORIGINS")
    parser = argparse.ArgumentParser()
    add_limits_arguments(parser)
    assert LimitsConfig.from_args(parser.parse_args([])).allowed_origins == ("*",)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_connections_per_address": 0},
        {"max_message_bytes": 10},
        {"message_rate_per_s": 0},
        {"message_burst": 0},
        {"max_subscriptions": 0},
        {"allowed_origins": ()},
        {"allowed_origins": ("example.com",)},
    ],
)
def test_limits_config_is_checked(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        LimitsConfig(**kwargs)  # type: ignore[arg-type]
