"""slipstream/keys.py and the verifier: key ids, key sets, rotation, Ed25519 (pure)."""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from slipstream.auth import AuthConfig, AuthError, TokenVerifier, add_auth_arguments, mint_token
from slipstream.errors import ConfigError
from slipstream.keys import KeySet, generate_key_pair, hmac_key, load_private_key, load_public_key

OLD = "old-secret-" + "o" * 32
NEW = "new-secret-" + "n" * 32
NOW = 1_800_000_000.0
ROOT = Path(__file__).resolve().parents[2]


def test_tokens_name_their_key_and_a_key_set_accepts_current_and_previous() -> None:
    old_token = mint_token(OLD, [24], ["tyres"], 600, now=NOW)
    assert jwt.get_unverified_header(old_token)["kid"] == hmac_key(OLD).kid
    rotating = TokenVerifier(KeySet.of([NEW, OLD]))
    assert rotating.verify(old_token, now=NOW).cars == frozenset({24})
    assert rotating.verify(mint_token(NEW, None, None, 600, now=NOW), now=NOW).cars is None
    with pytest.raises(AuthError, match="bad_signature") as info:
        TokenVerifier(NEW).verify(old_token, now=NOW)
    assert hmac_key(OLD).kid in info.value.message


def test_a_token_without_kid_from_before_key_ids_is_still_checked() -> None:
    claims = {"aud": "slipstream", "iat": int(NOW), "exp": int(NOW) + 60,
              "scope": {"cars": "*", "groups": "*"}}  # fmt: skip
    legacy = jwt.encode(claims, OLD, algorithm="HS256")
    assert TokenVerifier(KeySet.of([NEW, OLD])).verify(legacy, now=NOW).cars is None
    with pytest.raises(AuthError, match="bad_signature"):
        TokenVerifier(NEW).verify(legacy, now=NOW)


def test_ed25519_only_the_private_key_signs(tmp_path: Path) -> None:
    private, public, kid = generate_key_pair(tmp_path / "ticketing")
    assert private.stat().st_mode & 0o777 == 0o600
    key = load_private_key(private)
    assert key.kid == kid == load_public_key(public).kid
    token = mint_token(key, [7], None, 600, now=NOW)
    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "kid": kid, "typ": "JWT"}
    node = TokenVerifier(KeySet.of([], [public]))
    assert node.verify(token, now=NOW).cars == frozenset({7})
    # The node's public key is no HMAC secret: a token "signed" with it under the
    # key's id but another algorithm is refused (no algorithm confusion).
    forged = _hs256_by_hand(
        {"kid": kid, "alg": "HS256"},
        {"aud": "slipstream", "iat": int(NOW), "exp": int(NOW) + 60,
         "scope": {"cars": "*", "groups": "*"}},
        public.read_bytes(),
    )  # fmt: skip
    with pytest.raises(AuthError, match="bad_token"):
        node.verify(forged, now=NOW)
    with pytest.raises(ConfigError, match="exists"):
        generate_key_pair(private)


def _hs256_by_hand(header: dict[str, object], claims: dict[str, object], key: bytes) -> str:
    # PyJWT itself refuses a PEM key as an HMAC secret: an attacker would not.
    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signed = b64(json.dumps(header).encode()) + b"." + b64(json.dumps(claims).encode())
    return (signed + b"." + b64(hmac.new(key, signed, hashlib.sha256).digest())).decode()


def test_operator_tokens_carry_no_telemetry_and_fan_tokens_no_operator_scope() -> None:
    verifier = TokenVerifier(NEW)
    operator = verifier.verify(mint_token(NEW, None, None, 60, now=NOW, operator=True), now=NOW)
    assert operator.operator
    with pytest.raises(AuthError, match="operator token carries no telemetry"):
        operator.narrow(None, [0])
    fan = verifier.verify(mint_token(NEW, None, None, 60, now=NOW), now=NOW)
    assert not fan.operator


def test_auth_config_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _, public, _ = generate_key_pair(tmp_path / "k")

    def args() -> argparse.Namespace:  # variables are read when the flags are added
        parser = argparse.ArgumentParser()
        add_auth_arguments(parser)
        return parser.parse_args(["--token-public-key", str(public)])

    monkeypatch.setenv("SLIPSTREAM_SECRET", NEW)
    monkeypatch.setenv("SLIPSTREAM_PREVIOUS_SECRETS", OLD)
    config = AuthConfig.from_args(args())
    assert config.enabled and OLD not in repr(config) and NEW not in repr(config)
    assert sorted(config.keys().kids) == sorted(
        [hmac_key(NEW).kid, hmac_key(OLD).kid, load_public_key(public).kid]
    )
    monkeypatch.delenv("SLIPSTREAM_SECRET")
    monkeypatch.delenv("SLIPSTREAM_PREVIOUS_SECRETS")
    public_only = AuthConfig.from_args(args())
    assert public_only.enabled and public_only.keys().kids == [load_public_key(public).kid]
    with pytest.raises(ConfigError, match="32 bytes"):
        AuthConfig(secret=NEW, enabled=True, previous_secrets=("short",))


def test_token_cli_signs_with_a_private_key(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "slipstream", "token", *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        return done.stdout

    out = run("--generate-key", str(tmp_path / "ticket"))
    kid = out.split()[1]
    token = run("--private-key", str(tmp_path / "ticket"), "--cars", "24").strip()
    grant = TokenVerifier(KeySet.of([], [tmp_path / "ticket.pub"])).verify(token)
    assert grant.cars == frozenset({24}) and jwt.get_unverified_header(token)["kid"] == kid
    operator = run("--private-key", str(tmp_path / "ticket"), "--operator").strip()
    assert TokenVerifier(KeySet.of([], [tmp_path / "ticket.pub"])).verify(operator).operator
