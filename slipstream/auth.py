"""Scoped, expiring fan tokens: mint, verify, and check a subscription against them.

A token is a JWT (PyJWT) signed with the shared secret (``SLIPSTREAM_SECRET``,
HS256) or with the ticketing side's Ed25519 private key (``EdDSA``; nodes hold
only the public key); its header names the key (``kid``) and a node accepts a
set of keys, current and previous (:mod:`slipstream.keys`).  Its claims::

    aud    "slipstream"                 tokens of other services are refused
    iat    issued at, s since the epoch
    exp    expires at, s since the epoch
    sub    who it was minted for (optional, for logs)
    scope  {"cars": [24, 48] | "*", "groups": ["tyres", ...] | "*"}   a fan token
           {"operator": true}                                       an operator token

``"groups": "*"`` means every group *except premium ones* (catalogue groups with
``premium`` set, e.g. ``driver``): a premium group must be named.  An operator
token opens the operator paths (``/v1/sessions``) and no telemetry; a fan
token never opens them.  The pure core
here takes the time as an argument (``now``, s since the epoch); only callers
that pass nothing read the wall clock.  See docs/security.md for the threat
model and the close codes and HTTP statuses below.

Errors::

    SlipstreamError
    └── AuthError (also PermissionError)   missing, malformed, expired or out-of-scope token;
                                           ``code``, ``close_code`` and ``http_status`` say which
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from slipstream.errors import ConfigError
from slipstream.grants import (
    CLOSE_FORBIDDEN,
    CLOSE_TOKEN_EXPIRED,
    CLOSE_UNAUTHORIZED,
    HTTP_FORBIDDEN,
    HTTP_UNAUTHORIZED,
    AuthError,
    Grant,
    parse_scope,
    scope_claim,
)
from slipstream.keys import MIN_SECRET_BYTES, KeySet, SigningKey, check_secret, hmac_key
from slipstream.options import Option, Options

__all__ = [
    "AUDIENCE",
    "AUTH_OPTIONS",
    "CLOSE_FORBIDDEN",
    "CLOSE_TOKEN_EXPIRED",
    "CLOSE_UNAUTHORIZED",
    "HTTP_FORBIDDEN",
    "HTTP_UNAUTHORIZED",
    "MAX_TOKEN_BYTES",
    "MIN_SECRET_BYTES",
    "AuthConfig",
    "AuthError",
    "Grant",
    "TokenVerifier",
    "add_auth_arguments",
    "mint_token",
    "token_from_request",
]

AUDIENCE = "slipstream"
#: Longest token accepted; a scope of every car and group fits in well under 2 KiB.
MAX_TOKEN_BYTES = 4096


def mint_token(
    secret: str | bytes | SigningKey,
    cars: Iterable[int] | None,
    groups: Iterable[str] | None,
    ttl_s: float,
    subject: str | None = None,
    now: float | None = None,
    operator: bool = False,
) -> str:
    """A signed token granting ``cars`` and ``groups`` for ``ttl_s`` seconds.

    Args:
        secret: The shared secret (at least :data:`MIN_SECRET_BYTES` bytes) or
            a signing key (:mod:`slipstream.keys`); its ``kid`` goes in the header.
        cars: Car numbers, or None for every car.
        groups: Group names, or None for every non-premium group (premium
            groups must be named).
        ttl_s: Lifetime in seconds (> 0).
        subject: Who the token is for (kept in ``sub``).
        now: Issue time in s since the epoch (default: the wall clock).
        operator: An operator token (``cars`` and ``groups`` ignored): it opens
            the operator paths and no telemetry.

    Raises:
        ConfigError: The secret is too short.
        ValueError: Empty, unknown or out-of-range cars or groups, or ``ttl_s`` <= 0.
    """
    key = secret if isinstance(secret, SigningKey) else hmac_key(secret)
    if not isinstance(ttl_s, int | float) or not math.isfinite(ttl_s) or ttl_s <= 0:
        raise ValueError(f"ttl_s must be a positive number of seconds, got {ttl_s!r}")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "aud": AUDIENCE,
        "iat": issued,
        "exp": issued + max(1, math.ceil(ttl_s)),
        "scope": scope_claim(cars, groups, operator),
    }
    if subject is not None:
        claims["sub"] = subject
    return jwt.encode(claims, key.key, algorithm=key.algorithm, headers={"kid": key.kid})


def _int_claim(claims: Mapping[str, Any], name: str) -> int:
    value = claims.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise AuthError("bad_token", f"token claim {name!r} is missing or not an integer")
    return value


class TokenVerifier:
    """Verifies tokens signed with any key of a set (current and previous keys).

    Args:
        secret: The shared secret, or the node's :class:`~slipstream.keys.KeySet`.
        leeway_s: Clock skew tolerated on ``exp`` and ``iat`` (default 0: a
            session is ended when its token expires, not later).

    Raises:
        ConfigError: The secret is too short.
    """

    def __init__(self, secret: str | bytes | KeySet, leeway_s: float = 0.0) -> None:
        if leeway_s < 0:
            raise ValueError("leeway_s must be >= 0")
        self.keys = secret if isinstance(secret, KeySet) else KeySet.of([secret])
        self.leeway_s = leeway_s

    def _decode(self, token: str | bytes) -> dict[str, Any]:
        # Signature, algorithm and audience by PyJWT; the times are checked against `now`.
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except (jwt.InvalidTokenError, ValueError, TypeError, UnicodeError) as exc:
            raise AuthError("bad_token", f"token is not valid: {exc}") from None
        candidates = self.keys.candidates(kid if isinstance(kid, str) else None)
        if not candidates:
            raise AuthError(
                "bad_signature",
                f"token signature is by key {kid}, which this node does not accept; "
                "get a new token",
            )
        for key in candidates:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key.key,
                    algorithms=[key.algorithm],
                    audience=AUDIENCE,
                    options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
                )
                return claims
            except jwt.InvalidSignatureError:
                continue
            except jwt.InvalidTokenError as exc:
                raise AuthError("bad_token", f"token is not valid: {exc}") from None
            except (ValueError, TypeError, UnicodeError) as exc:
                raise AuthError("bad_token", f"token is not valid: {exc}") from None
        raise AuthError("bad_signature", "token signature does not match this node's keys")

    def verify(self, token: str | bytes | None, now: float | None = None) -> Grant:
        """The grant of ``token`` at time ``now`` (s since the epoch; default the wall clock).

        Raises:
            AuthError: ``missing_token``, ``bad_token`` (malformed, wrong audience
                or algorithm, issued in the future, bad scope), ``bad_signature``
                or ``token_expired``.
        """
        if token is None or token in ("", b""):
            raise AuthError("missing_token", "this node needs a token (ask the operator for one)")
        if len(token) > MAX_TOKEN_BYTES:
            raise AuthError("bad_token", f"token is longer than {MAX_TOKEN_BYTES} bytes")
        claims = self._decode(token)
        now = time.time() if now is None else now
        exp = _int_claim(claims, "exp")
        iat = _int_claim(claims, "iat")
        if iat > now + self.leeway_s:
            raise AuthError("bad_token", "token is issued in the future (check the clocks)")
        if exp + self.leeway_s <= now:
            raise AuthError("token_expired", f"token expired {now - exp:.0f} s ago; get a new one")
        subject = claims.get("sub")
        scope = claims.get("scope")
        cars, groups = parse_scope(scope)
        return Grant(
            cars,
            groups,
            float(exp) + self.leeway_s,
            subject if isinstance(subject, str) else None,
            operator=isinstance(scope, dict) and scope.get("operator") is True,
        )


def token_from_request(query: Mapping[str, str], authorization: str | None) -> str | None:
    """The token of a request: ``Authorization: Bearer T`` or else ``?token=T``.

    Browsers cannot set headers on a WebSocket, so the query form is accepted too.
    """
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    token = query.get("token")
    return token or None


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Whether a node checks tokens, and with which keys.

    Attributes:
        secret: The shared secret (HS256), or None.
        enabled: Whether tokens are required; needs a secret or a public key.
        leeway_s: Clock skew tolerated on expiry.
        previous_secrets: Secrets still accepted while a rotation is under way.
        public_keys: Paths of Ed25519 public keys (PEM) accepted, current and previous.
    """

    secret: str | None = None
    enabled: bool = False
    leeway_s: float = 0.0
    previous_secrets: tuple[str, ...] = ()
    public_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.enabled and not (self.secret or self.public_keys):
            raise ConfigError(
                "auth is on but neither SLIPSTREAM_SECRET nor --token-public-key is set; "
                "set one, or pass --no-auth for local use"
            )
        for secret in (self.secret, *self.previous_secrets):
            if secret is not None:
                try:
                    check_secret(secret)
                except ConfigError as exc:
                    raise ConfigError(f"SLIPSTREAM_SECRET / PREVIOUS_SECRETS: {exc}") from None
        if self.leeway_s < 0:
            raise ConfigError("the token leeway must be >= 0")

    def __repr__(self) -> str:
        # Never print the secrets.
        return (
            f"AuthConfig(enabled={self.enabled}, leeway_s={self.leeway_s}, "
            f"previous_secrets={len(self.previous_secrets)}, public_keys={self.public_keys})"
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> AuthConfig:
        """From :func:`add_auth_arguments`'s flags and ``SLIPSTREAM_(PREVIOUS_)SECRET(S)``.

        Auth is on whenever a secret or a public key is set, unless ``--no-auth``.
        """
        values = AUTH_OPTIONS.build(args, enabled=False)
        keyed = values.secret is not None or bool(values.public_keys)
        return dataclasses.replace(values, enabled=keyed and not args.no_auth)

    def keys(self) -> KeySet:
        """The accepted keys.

        Raises:
            ConfigError: A public key cannot be read, or no key is configured.
        """
        secrets = [s for s in (self.secret, *self.previous_secrets) if s is not None]
        return KeySet.of(secrets, self.public_keys)

    def verifier(self) -> TokenVerifier | None:
        """A verifier, or None when auth is off."""
        if not self.enabled:
            return None
        return TokenVerifier(self.keys(), self.leeway_s)


def _secret(raw: str) -> str | None:
    if not raw:
        return None  # set but empty: as if unset
    if len(raw.encode()) < MIN_SECRET_BYTES:
        raise ValueError(
            f"expected a secret of at least {MIN_SECRET_BYTES} bytes; make one with: "
            'python -c "import secrets; print(secrets.token_urlsafe(32))"'
        )
    return raw


def _secrets(raw: str) -> str:
    secret = _secret(raw)
    if secret is None:
        raise ValueError("expected a secret, not an empty value")
    return secret


def _public_key(raw: str) -> str:
    if not Path(raw.strip()).is_file():
        raise ValueError("expected the path of a PEM public key (no such file)")
    return raw.strip()


#: Secrets are read from their variables only, never from a flag (``ps`` shows flags).
AUTH_OPTIONS = Options(
    AuthConfig,
    [
        Option("secret", None, "shared secret of the fan tokens", parse=_secret, env="SECRET"),
        Option(
            "previous_secrets", None,
            "secrets still accepted during a rotation (comma-separated)",
            parse=_secrets, env="PREVIOUS_SECRETS", repeat=True,
        ),
        Option(
            "public_keys", "--token-public-key",
            "accept tokens signed by the Ed25519 private key of this public key (from "
            "`slipstream token --generate-key`); repeat for the previous key during a rotation. "
            "Shared secrets: SLIPSTREAM_SECRET signs and is accepted; "
            "SLIPSTREAM_PREVIOUS_SECRETS (comma-separated) are accepted too, so a rotation "
            "ends no session (docs/security.md)",
            parse=_public_key, env="TOKEN_PUBLIC_KEYS", metavar="PEM", repeat=True,
            default_text="none",
        ),
    ],
)  # fmt: skip


def add_auth_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--no-auth`` and ``--token-public-key`` to a serving command (and read the
    secrets' variables)."""
    AUTH_OPTIONS.add_arguments(parser)
    parser.add_argument(
        "--no-auth",
        action="store_true",
        help="serve without tokens even if SLIPSTREAM_SECRET or a public key is set (local "
        "use only); auth is on by default whenever either is set",
    )
