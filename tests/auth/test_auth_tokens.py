"""Tokens: mint and verify, each refusal case, scope checks and premium groups (pure, no loop)."""

from __future__ import annotations

import argparse
import base64
import json

import jwt
import pytest

from slipstream.auth import (
    CLOSE_FORBIDDEN,
    CLOSE_TOKEN_EXPIRED,
    CLOSE_UNAUTHORIZED,
    HTTP_FORBIDDEN,
    HTTP_UNAUTHORIZED,
    MAX_TOKEN_BYTES,
    AuthConfig,
    AuthError,
    Grant,
    TokenVerifier,
    add_auth_arguments,
    mint_token,
    token_from_request,
)
from slipstream.catalogue import CATALOGUE
from slipstream.errors import ConfigError

SECRET = "s" * 32 + "-test-secret"
OTHER = "o" * 32 + "-other-secret"
NOW = 1_800_000_000.0
ALL_GROUPS = tuple(g.index for g in CATALOGUE.groups)
PREMIUM = [g.name for g in CATALOGUE.groups if g.premium]
IDX = {g.name: g.index for g in CATALOGUE.groups}


def _verify(token: str, now: float = NOW, secret: str = SECRET) -> Grant:
    return TokenVerifier(secret).verify(token, now=now)


def _refused(token: str | None, code: str, now: float = NOW) -> AuthError:
    with pytest.raises(AuthError) as info:
        TokenVerifier(SECRET).verify(token, now=now)
    assert info.value.code == code, info.value
    return info.value


def test_catalogue_has_a_premium_group() -> None:
    # The premium tests below need one; the catalogue marks driver biometrics.
    assert PREMIUM == ["driver"]


def test_valid_token_round_trips_its_scope() -> None:
    token = mint_token(SECRET, [48, 24], ["tyres", "engine"], 600, subject="fan-1", now=NOW)
    grant = _verify(token, now=NOW + 599)
    assert grant.cars == frozenset({24, 48})
    assert grant.groups == frozenset({"tyres", "engine"})
    assert grant.expires_at == NOW + 600
    assert grant.subject == "fan-1"
    assert grant.seconds_left(NOW + 100) == 500


def test_expired_token_is_refused_with_its_own_codes() -> None:
    token = mint_token(SECRET, None, None, 60, now=NOW)
    _verify(token, now=NOW + 59.9)
    err = _refused(token, "token_expired", now=NOW + 60)
    assert (err.close_code, err.http_status) == (CLOSE_TOKEN_EXPIRED, HTTP_UNAUTHORIZED)
    assert "expired" in err.message


def test_leeway_tolerates_skew_and_moves_the_expiry() -> None:
    token = mint_token(SECRET, None, None, 60, now=NOW)
    grant = TokenVerifier(SECRET, leeway_s=5).verify(token, now=NOW + 62)
    assert grant.expires_at == NOW + 65


def test_wrong_signature_is_refused() -> None:
    token = mint_token(OTHER, None, None, 60, now=NOW)
    err = _refused(token, "bad_signature")
    assert (err.close_code, err.http_status) == (CLOSE_UNAUTHORIZED, HTTP_UNAUTHORIZED)


def test_tampered_scope_breaks_the_signature() -> None:
    token = mint_token(SECRET, [24], ["tyres"], 60, now=NOW)
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = {"cars": "*", "groups": "*"}
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    _refused(f"{head}.{forged}.{sig}", "bad_signature")


@pytest.mark.parametrize("token", [None, ""])
def test_missing_token(token: str | None) -> None:
    err = _refused(token, "missing_token")
    assert err.close_code == CLOSE_UNAUTHORIZED


@pytest.mark.parametrize(
    "token",
    ["not-a-jwt", "a.b.c", "x" * (MAX_TOKEN_BYTES + 1), "\x00\xff.\x01.\x02", "ü.ü.ü"],
)
def test_malformed_tokens(token: str) -> None:
    _refused(token, "bad_token")


def test_alg_none_and_other_algorithms_are_refused() -> None:
    claims = {"aud": "slipstream", "iat": int(NOW), "exp": int(NOW) + 60, "scope": {}}
    unsigned = jwt.encode(claims, None, algorithm="none")
    _refused(unsigned, "bad_token")
    hs512 = jwt.encode(claims, SECRET + "x" * 40, algorithm="HS512")
    _refused(hs512, "bad_token")


@pytest.mark.parametrize(
    "claims",
    [
        {"iat": int(NOW), "exp": int(NOW) + 60, "scope": {"cars": "*", "groups": "*"}},
        {"aud": "other", "iat": int(NOW), "exp": int(NOW) + 60, "scope": {}},
        {"aud": "slipstream", "iat": int(NOW), "scope": {"cars": "*", "groups": "*"}},
        {"aud": "slipstream", "exp": int(NOW) + 60, "scope": {"cars": "*", "groups": "*"}},
        {"aud": "slipstream", "iat": int(NOW), "exp": "soon", "scope": {"cars": "*"}},
        {"aud": "slipstream", "iat": int(NOW), "exp": int(NOW) + 60},
        {"aud": "slipstream", "iat": int(NOW), "exp": int(NOW) + 60, "scope": {"cars": [1]}},
        {"aud": "slipstream", "iat": int(NOW), "exp": int(NOW) + 60,
         "scope": {"cars": [1000], "groups": "*"}},
        {"aud": "slipstream", "iat": int(NOW), "exp": int(NOW) + 60,
         "scope": {"cars": "*", "groups": ["warp_drive"]}},
        {"aud": "slipstream", "iat": int(NOW), "exp": int(NOW) + 60,
         "scope": {"cars": [[1]], "groups": "*"}},
        {"aud": "slipstream", "iat": int(NOW) + 3600, "exp": int(NOW) + 7200,
         "scope": {"cars": "*", "groups": "*"}},
    ],
)  # fmt: skip
def test_well_signed_but_invalid_claims_are_refused(claims: dict[str, object]) -> None:
    _refused(jwt.encode(claims, SECRET, algorithm="HS256"), "bad_token")


def test_out_of_scope_car_is_forbidden() -> None:
    grant = _verify(mint_token(SECRET, [24, 48], None, 60, now=NOW))
    grant.check([24], ["tyres"])
    with pytest.raises(AuthError) as info:
        grant.check([24, 7], ["tyres"])
    assert info.value.code == "forbidden"
    assert (info.value.close_code, info.value.http_status) == (CLOSE_FORBIDDEN, HTTP_FORBIDDEN)
    assert "[7]" in info.value.message
    with pytest.raises(AuthError, match="forbidden"):
        grant.check(None, ["tyres"])  # "every car" is more than 24 and 48


def test_out_of_scope_group_is_forbidden() -> None:
    grant = _verify(mint_token(SECRET, None, ["tyres", "engine"], 60, now=NOW))
    grant.check(None, ["engine"])
    with pytest.raises(AuthError, match="brakes"):
        grant.check(None, ["tyres", "brakes"])


def test_premium_group_needs_to_be_named() -> None:
    everything = _verify(mint_token(SECRET, None, None, 60, now=NOW))
    everything.check(None, [g.name for g in CATALOGUE.groups if not g.premium])
    with pytest.raises(AuthError, match="premium") as info:
        everything.check(None, PREMIUM)
    assert info.value.close_code == CLOSE_FORBIDDEN
    premium = _verify(mint_token(SECRET, None, ["tyres", *PREMIUM], 60, now=NOW))
    premium.check([1, 2], ["tyres", *PREMIUM])
    assert premium.allows_group("driver") and not everything.allows_group("driver")


def test_narrow_resolves_defaults_within_the_grant() -> None:
    grant = _verify(mint_token(SECRET, [48, 24], None, 60, now=NOW))
    cars, groups = grant.narrow(None, ALL_GROUPS)
    assert cars == (24, 48)
    assert IDX["driver"] not in groups
    assert len(groups) == len(ALL_GROUPS) - len(PREMIUM)
    assert grant.narrow([48], (IDX["tyres"],)) == ((48,), (IDX["tyres"],))
    with pytest.raises(AuthError, match="forbidden"):
        grant.narrow([5], (IDX["tyres"],))
    with pytest.raises(AuthError, match="premium"):
        grant.narrow(None, (IDX["tyres"], IDX["driver"]))


def test_narrow_with_a_premium_grant_keeps_the_premium_group() -> None:
    grant = _verify(mint_token(SECRET, None, ["driver", "timing"], 60, now=NOW))
    assert grant.narrow(None, ALL_GROUPS) == (None, tuple(sorted((IDX["driver"], IDX["timing"]))))


def test_mint_checks_its_arguments() -> None:
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        mint_token("short", None, None, 60)
    with pytest.raises(ValueError, match="unknown group"):
        mint_token(SECRET, None, ["warp_drive"], 60)
    with pytest.raises(ValueError, match=r"0\.\.999"):
        mint_token(SECRET, [1000], None, 60)
    with pytest.raises(ValueError, match="at least one car"):
        mint_token(SECRET, [], None, 60)
    for ttl in (0, -5, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="ttl_s"):
            mint_token(SECRET, None, None, ttl)


def test_token_from_request_prefers_the_header() -> None:
    assert token_from_request({"token": "q"}, "Bearer h") == "h"
    assert token_from_request({"token": "q"}, "bearer  h ") == "h"
    assert token_from_request({"token": "q"}, "Basic xyz") == "q"
    assert token_from_request({}, None) is None
    assert token_from_request({"token": ""}, "Bearer ") is None


def _args(no_auth: bool) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_auth_arguments(parser)
    return parser.parse_args(["--no-auth"] if no_auth else [])


def test_auth_is_on_when_a_secret_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIPSTREAM_SECRET", SECRET)
    config = AuthConfig.from_args(_args(no_auth=False))
    assert config.enabled
    assert config.verifier() is not None
    assert SECRET not in repr(config)
    off = AuthConfig.from_args(_args(no_auth=True))
    assert not off.enabled and off.verifier() is None


def test_auth_is_off_without_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLIPSTREAM_SECRET", raising=False)
    config = AuthConfig.from_args(_args(no_auth=False))
    assert not config.enabled and config.verifier() is None
    with pytest.raises(ConfigError, match="SLIPSTREAM_SECRET"):
        AuthConfig(enabled=True)
    with pytest.raises(ConfigError, match="32 bytes"):
        AuthConfig(secret="short", enabled=True)
