"""What a token grants, and why a token is refused: the pure core of :mod:`slipstream.auth`.

:class:`Grant` is a verified token's scope; :class:`AuthError` says why a
token or a subscription was refused, with the WebSocket close code and HTTP
status to answer with (docs/security.md).  Both are re-exported by
:mod:`slipstream.auth`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from slipstream.catalogue import CATALOGUE
from slipstream.errors import SlipstreamError

__all__ = [
    "CLOSE_FORBIDDEN",
    "CLOSE_TOKEN_EXPIRED",
    "CLOSE_UNAUTHORIZED",
    "HTTP_FORBIDDEN",
    "HTTP_UNAUTHORIZED",
    "AuthError",
    "Grant",
    "parse_scope",
    "scope_claim",
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

_ALL = "*"


class AuthError(SlipstreamError, PermissionError):
    """A token was refused.

    Attributes:
        code: ``missing_token``, ``bad_token``, ``bad_signature``,
            ``token_expired``, ``forbidden`` or ``operator_only`` (a path for
            operator tokens).
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
        "operator_only": (CLOSE_FORBIDDEN, HTTP_FORBIDDEN),
    }

    def __init__(self, code: str, message: str) -> None:
        if code not in self._CODES:
            raise ValueError(f"unknown auth error code {code!r}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.close_code, self.http_status = self._CODES[code]


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


def scope_claim(
    cars: Iterable[int] | None, groups: Iterable[str] | None, operator: bool = False
) -> dict[str, Any]:
    """The ``scope`` claim of a fan token (or of an operator token, which carries nothing else).

    Raises:
        ValueError: Empty, unknown or out-of-range cars or groups.
    """
    if operator:
        return {"operator": True}
    return {"cars": _scope_cars(cars), "groups": _scope_groups(groups)}


@dataclass(frozen=True, slots=True)
class Grant:
    """What a verified token allows.

    Attributes:
        cars: Allowed car numbers, or None for every car.
        groups: Allowed group names, or None for every non-premium group.
        expires_at: When the token expires, s since the epoch.
        subject: The token's ``sub``, if any.
        operator: An operator token: operator paths, no telemetry.
    """

    cars: frozenset[int] | None
    groups: frozenset[str] | None
    expires_at: float
    subject: str | None = None
    operator: bool = False

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
                grant leaves nothing of the request (or it is an operator token).
        """
        if self.operator:
            raise AuthError("forbidden", "an operator token carries no telemetry; use a fan token")
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


def parse_scope(value: Any) -> tuple[frozenset[int] | None, frozenset[str] | None]:
    """The cars and groups of a ``scope`` claim (both empty for an operator scope).

    Raises:
        AuthError: ``bad_token``: no scope, or an invalid one.
    """
    if not isinstance(value, dict):
        raise AuthError("bad_token", "token has no scope claim")
    if "operator" in value:
        if value != {"operator": True}:
            raise AuthError("bad_token", "an operator scope carries nothing else")
        return frozenset(), frozenset()
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
