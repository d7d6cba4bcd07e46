"""Scoped, expiring fan tokens: mint, verify, and check a subscription against them.

A token is an HS256 JWT (PyJWT) signed with the node's shared secret
(``SLIPSTREAM_SECRET``).  Its claims::

    aud    "slipstream"                 tokens of other services are refused
    iat    issued at, s since the epoch
    exp    expires at, s since the epoch
    sub    who it was minted for (optional, for logs)
    scope  {"cars": [24, 48] | "*", "groups": ["tyres", ...] | "*"}

``"groups": "*"`` means every group *except premium ones* (catalogue groups with
``premium`` set, e.g. ``driver``): a premium group must be named.  The pure core
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
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from slipstream.catalogue import CATALOGUE
from slipstream.errors import ConfigError, SlipstreamError
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

#: WebSocket close code: no token, or a token that is malformed or wrongly signed.
CLOSE_UNAUTHORIZED = 4001
#: WebSocket close code: a subscription asked for cars or groups the token does not grant.
CLOSE_FORBIDDEN = 4003
#: WebSocket close code: the token expired (at connect, or during the session).
CLOSE_TOKEN_EXPIRED = 4004
#: HTTP status of a long-poll without a valid token (missing, bad or expired).
HTTP_UNAUTHORIZED = 401
#: HTTP status of a long-poll asking for cars or groups the token does not grant.
HTTP_FORBIDDEN = 403

AUDIENCE = "slipstream"
ALGORITHM = "HS256"
#: Shortest accepted secret (RFC 7518 section 3.2: a key as long as the hash).
MIN_SECRET_BYTES = 32
#: Longest token accepted; a scope of every car and group fits in well under 2 KiB.
MAX_TOKEN_BYTES = 4096
_ALL = "*"


class AuthError(SlipstreamError, PermissionError):
    """A token was refused.

    Attributes:
        code: ``missing_token``, ``bad_token``, ``bad_signature``,
            ``token_expired`` or ``forbidden``.
        message: What was wrong, for the fan.
        close_code: WebSocket close code to end the session with.
        http_status: HTTP status to answer a long-poll with.
    """

    _CODES: dict[str, tuple[int, int]] = {
        "missing_token": (CLOSE_UNAUTHORIZED, HTTP_UNAUTHORIZED),
        "bad_token": (CLOSE_UNAUTHORIZED, HTTP_UNAUTHORIZED),
        "bad_signature": (CLOSE_UNAUTHORIZED, HTTP_UNAUTHORIZED),
        "token_expired": (CLOSE_TOKEN_EXPIRED, HTTP_UNAUTHORIZED),
        "forbidden": (CLOSE_FORBIDDEN, HTTP_FORBIDDEN),
    }

    def __init__(self, code: str, message: str) -> None:
        if code not in self._CODES:
            raise ValueError(f"unknown auth error code {code!r}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.close_code, self.http_status = self._CODES[code]


def _check_secret(secret: str | bytes) -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    if not isinstance(key, bytes):
        raise TypeError("the secret must be str or bytes")
    if len(key) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"SLIPSTREAM_SECRET must be at least {MIN_SECRET_BYTES} bytes (got {len(key)}); "
            'make one with: python -c "import secrets; print(secrets.token_urlsafe(32))"'
        )
    return key


def _scope_cars(cars: Iterable[int] | None) -> list[int] | str:
    return _ALL if cars is None else _car_list(cars)


def _car_list(cars: Iterable[int]) -> list[int]:
    out = sorted(set(cars))
    if not out:
        raise ValueError("a token needs at least one car, or None for every car")
    for car in out:
        if not isinstance(car, int) or isinstance(car, bool) or not 0 <= car <= 999:
            raise ValueError(f"car numbers must be integers 0..999, got {car!r}")
    return out


def _scope_groups(groups: Iterable[str] | None) -> list[str] | str:
    return _ALL if groups is None else _group_list(groups)


def _group_list(groups: Iterable[str]) -> list[str]:
    names = sorted(set(groups))
    if not names:
        raise ValueError("a token needs at least one group, or None for every non-premium group")
    unknown = [g for g in names if g not in CATALOGUE.group_by_name]
    if unknown:
        known = ", ".join(g.name for g in CATALOGUE.groups)
        raise ValueError(f"unknown group(s) {', '.join(unknown)}; known: {known}")
    return names


def mint_token(
    secret: str | bytes,
    cars: Iterable[int] | None,
    groups: Iterable[str] | None,
    ttl_s: float,
    subject: str | None = None,
    now: float | None = None,
) -> str:
    """A signed token granting ``cars`` and ``groups`` for ``ttl_s`` seconds.

    Args:
        secret: The shared secret (at least :data:`MIN_SECRET_BYTES` bytes).
        cars: Car numbers, or None for every car.
        groups: Group names, or None for every non-premium group (premium
            groups must be named).
        ttl_s: Lifetime in seconds (> 0).
        subject: Who the token is for (kept in ``sub``).
        now: Issue time in s since the epoch (default: the wall clock).

    Raises:
        ConfigError: The secret is too short.
        ValueError: Empty, unknown or out-of-range cars or groups, or ``ttl_s`` <= 0.
    """
    key = _check_secret(secret)
    if not isinstance(ttl_s, int | float) or not math.isfinite(ttl_s) or ttl_s <= 0:
        raise ValueError(f"ttl_s must be a positive number of seconds, got {ttl_s!r}")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "aud": AUDIENCE,
        "iat": issued,
        "exp": issued + max(1, math.ceil(ttl_s)),
        "scope": {"cars": _scope_cars(cars), "groups": _scope_groups(groups)},
    }
    if subject is not None:
        claims["sub"] = subject
    return jwt.encode(claims, key, algorithm=ALGORITHM)


@dataclass(frozen=True, slots=True)
class Grant:
    """What a verified token allows.

    Attributes:
        cars: Allowed car numbers, or None for every car.
        groups: Allowed group names, or None for every non-premium group.
        expires_at: When the token expires, s since the epoch.
        subject: The token's ``sub``, if any.
    """

    cars: frozenset[int] | None
    groups: frozenset[str] | None
    expires_at: float
    subject: str | None = None

    def allows_group(self, name: str) -> bool:
        """Whether the group called ``name`` is granted."""
        if self.groups is not None:
            return name in self.groups
        group = CATALOGUE.group_by_name.get(name)
        return group is not None and not group.premium

    def check(self, cars: Iterable[int] | None, groups: Iterable[str]) -> None:
        """Refuse cars or groups outside the grant (``cars`` None asks for every car).

        Raises:
            AuthError: ``forbidden``, naming what is not granted.
        """
        if cars is None:
            if self.cars is not None:
                raise AuthError(
                    "forbidden",
                    f"this token grants cars {sorted(self.cars)} only; name them, "
                    "or subscribe without cars to get exactly those",
                )
        else:
            extra = sorted(set(cars) - self.cars) if self.cars is not None else []
            if extra:
                raise AuthError(
                    "forbidden",
                    f"car(s) {extra} are not in this token's scope {sorted(self.cars or ())}",
                )
        denied = sorted({g for g in groups if not self.allows_group(g)})
        if denied:
            premium = [
                g
                for g in denied
                if g in CATALOGUE.group_by_name and CATALOGUE.group_by_name[g].premium
            ]
            hint = (
                f" ({', '.join(premium)}: premium, must be named in the token)" if premium else ""
            )
            raise AuthError(
                "forbidden", f"group(s) {', '.join(denied)} are not in this token's scope{hint}"
            )

    def narrow(
        self, cars: Sequence[int] | None, groups: Sequence[int]
    ) -> tuple[tuple[int, ...] | None, tuple[int, ...]]:
        """Check a subscription and resolve its defaults within the grant.

        ``cars`` None ("every car") becomes the granted cars; ``groups`` that are
        every catalogue group (what a subscription without groups asks for)
        become the granted ones.  Anything named explicitly must be granted.

        Args:
            cars: Car numbers, or None for every car.
            groups: Group indices into ``CATALOGUE.groups``.

        Returns:
            ``(cars, groups)``: cars ascending or None, group indices ascending.

        Raises:
            AuthError: ``forbidden``: something named is not granted, or the
                grant leaves nothing of the request.
        """
        all_groups = CATALOGUE.groups
        if cars is None:
            out_cars = None if self.cars is None else tuple(sorted(self.cars))
        else:
            self.check(cars, ())
            out_cars = tuple(sorted(set(cars)))
        wanted = sorted(set(groups))
        if len(wanted) == len(all_groups):
            out_groups = tuple(i for i in wanted if self.allows_group(all_groups[i].name))
            if not out_groups:
                raise AuthError("forbidden", "this token grants none of the catalogue's groups")
        else:
            self.check(out_cars, (all_groups[i].name for i in wanted))
            out_groups = tuple(wanted)
        return out_cars, out_groups

    def seconds_left(self, now: float | None = None) -> float:
        """Seconds until the token expires (<= 0 once it has)."""
        return self.expires_at - (time.time() if now is None else now)


def _int_claim(claims: Mapping[str, Any], name: str) -> int:
    value = claims.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise AuthError("bad_token", f"token claim {name!r} is missing or not an integer")
    return value


def _parse_scope(value: Any) -> tuple[frozenset[int] | None, frozenset[str] | None]:
    if not isinstance(value, dict):
        raise AuthError("bad_token", "token has no scope claim")
    cars, groups = value.get("cars"), value.get("groups")
    try:
        car_set = None if cars == _ALL else frozenset(_car_list(_as_list(cars)))
        group_set = None if groups == _ALL else frozenset(_group_list(_as_list(groups)))
    except (TypeError, ValueError) as exc:
        raise AuthError("bad_token", f"token scope is invalid: {exc}") from None
    return car_set, group_set


def _as_list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError('scope entries must be lists or "*"')
    return value


class TokenVerifier:
    """Verifies tokens signed with one secret.

    Args:
        secret: The shared secret.
        leeway_s: Clock skew tolerated on ``exp`` and ``iat`` (default 0: a
            session is ended when its token expires, not later).

    Raises:
        ConfigError: The secret is too short.
    """

    def __init__(self, secret: str | bytes, leeway_s: float = 0.0) -> None:
        if leeway_s < 0:
            raise ValueError("leeway_s must be >= 0")
        self._key = _check_secret(secret)
        self.leeway_s = leeway_s

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
        try:
            # Signature, algorithm and audience by PyJWT; the times below, against `now`.
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
            )
        except jwt.InvalidSignatureError:
            raise AuthError(
                "bad_signature", "token signature does not match this node's secret"
            ) from None
        except jwt.InvalidTokenError as exc:
            raise AuthError("bad_token", f"token is not valid: {exc}") from None
        except (ValueError, TypeError, UnicodeError) as exc:
            raise AuthError("bad_token", f"token is not valid: {exc}") from None
        now = time.time() if now is None else now
        exp = _int_claim(claims, "exp")
        iat = _int_claim(claims, "iat")
        if iat > now + self.leeway_s:
            raise AuthError("bad_token", "token is issued in the future (check the clocks)")
        if exp + self.leeway_s <= now:
            raise AuthError("token_expired", f"token expired {now - exp:.0f} s ago; get a new one")
        subject = claims.get("sub")
        cars, groups = _parse_scope(claims.get("scope"))
        return Grant(
            cars, groups, float(exp) + self.leeway_s, subject if isinstance(subject, str) else None
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
    """Whether a node checks tokens, and with which secret.

    Attributes:
        secret: The shared secret, or None.
        enabled: Whether tokens are required; needs a secret.
        leeway_s: Clock skew tolerated on expiry.
    """

    secret: str | None = None
    enabled: bool = False
    leeway_s: float = 0.0

    def __post_init__(self) -> None:
        if self.enabled and not self.secret:
            raise ConfigError(
                "auth is on but SLIPSTREAM_SECRET is not set; "
                "set it, or pass --no-auth for local use"
            )
        if self.secret is not None:
            _check_secret(self.secret)
        if self.leeway_s < 0:
            raise ConfigError("the token leeway must be >= 0")

    def __repr__(self) -> str:
        # Never print the secret.
        return f"AuthConfig(enabled={self.enabled}, leeway_s={self.leeway_s})"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> AuthConfig:
        """From :func:`add_auth_arguments`'s ``--no-auth`` and ``SLIPSTREAM_SECRET``.

        Auth is on whenever a secret is set, unless ``--no-auth``.
        """
        secret: str | None = args.secret
        return cls(secret=secret, enabled=secret is not None and not args.no_auth)

    def verifier(self) -> TokenVerifier | None:
        """A verifier, or None when auth is off."""
        if not self.enabled or self.secret is None:
            return None
        return TokenVerifier(self.secret, self.leeway_s)


def _secret(raw: str) -> str | None:
    if not raw:
        return None  # set but empty: as if unset
    if len(raw.encode()) < MIN_SECRET_BYTES:
        raise ValueError(
            f"expected a secret of at least {MIN_SECRET_BYTES} bytes; make one with: "
            'python -c "import secrets; print(secrets.token_urlsafe(32))"'
        )
    return raw


#: The secret is read from its variable only, never from a flag (``ps`` shows flags).
AUTH_OPTIONS = Options(
    AuthConfig,
    [Option("secret", None, "shared secret of the fan tokens", parse=_secret, env="SECRET")],
)


def add_auth_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--no-auth`` to a serving command (and read ``SLIPSTREAM_SECRET``)."""
    AUTH_OPTIONS.add_arguments(parser)
    parser.add_argument(
        "--no-auth",
        action="store_true",
        help="serve without tokens even if SLIPSTREAM_SECRET is set (local use only); "
        "auth is on by default whenever SLIPSTREAM_SECRET is set",
    )
