"""The gate of a serving node: tokens and limits together, as decisions (pure, no I/O).

A server's adapters ask the gate at four points and turn its answers into
HTTP statuses or WebSocket close codes (docs/security.md):

1. A request arrives (WebSocket upgrade or long-poll): :meth:`Gate.check_request`
   checks the browser origin and counts the address; the answer is a
   :class:`Refusal` (HTTP 403 / 429) or an :class:`Entry` to :meth:`Gate.leave`
   when the connection or poll ends.
2. The token of that request: :meth:`Gate.authenticate` gives the
   :class:`~slipstream.auth.Grant` (None with auth off) or raises
   :class:`~slipstream.auth.AuthError` (close 4001 / 4004, HTTP 401).
3. Each client message of a WebSocket session: :meth:`SessionGate.on_message`
   (size and rate; a :class:`~slipstream.limits.Breach` to close with).
4. Each subscription: :meth:`SessionGate.on_subscribe` / :meth:`Gate.scope`
   (subscribe rate, then the grant's scope: ``forbidden`` is close 4003 / HTTP 403).

Operator paths (per-fan details such as ``/v1/sessions``) ask
:meth:`Gate.check_operator`: an operator token when auth is on (401 without a
token, 403 with a fan token), a loopback client when it is off.  Costly public
paths (``/metrics``, ``/v1/race``) and the operator paths ask
:meth:`Gate.check_costly` (HTTP 429 beyond :data:`COSTLY_RATE_PER_S` per address).

With neither auth nor limits configured, every check passes but the
operator one: a library user (tests, benchmarks) gets an open node unless it
asks for a gate.
"""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from slipstream.auth import (
    HTTP_FORBIDDEN,
    AuthConfig,
    AuthError,
    Grant,
    TokenVerifier,
    add_auth_arguments,
    token_from_request,
)
from slipstream.limits import (
    HTTP_FORBIDDEN_ORIGIN,
    HTTP_TOO_MANY_REQUESTS,
    AddressBuckets,
    AddressLimiter,
    Breach,
    ConnectionLimits,
    LimitsConfig,
    OriginPolicy,
    add_limits_arguments,
)

__all__ = [
    "COSTLY_BURST",
    "COSTLY_RATE_PER_S",
    "MAX_CLOSE_REASON_BYTES",
    "Entry",
    "Gate",
    "Refusal",
    "SessionGate",
    "add_gate_arguments",
    "close_reason",
]

#: Longest WebSocket close reason (RFC 6455: 125 bytes of control payload, 2 for the code).
MAX_CLOSE_REASON_BYTES = 123
#: Requests per second per address to a costly path (scrapes, ops pages): a Prometheus
#: scrape is one per 15 s, an ops page one per second.
COSTLY_RATE_PER_S = 5.0
COSTLY_BURST = 20.0


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def close_reason(text: str) -> str:
    """``text`` cut to fit a close frame (whole UTF-8 characters, "..." when cut)."""
    data = text.encode()
    if len(data) <= MAX_CLOSE_REASON_BYTES:
        return text
    return data[: MAX_CLOSE_REASON_BYTES - 3].decode("utf-8", "ignore") + "..."


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request refused before it is served.

    Attributes:
        http_status: Status to answer with (403 origin, 429 too many).
        code: Machine-readable code (``origin_forbidden``, ``too_many_connections``,
            ``too_many_requests``).
        message: What was wrong, for people.
    """

    http_status: int
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Entry:
    """A counted connection or poll of ``address`` (give it back with :meth:`Gate.leave`)."""

    address: str


class Gate:
    """Auth and limits of one node.

    Args:
        auth: Token checking (None: off).
        limits: Abuse limits (None: none).
    """

    def __init__(self, auth: AuthConfig | None = None, limits: LimitsConfig | None = None) -> None:
        self.auth = auth
        self.limits = limits
        self.verifier: TokenVerifier | None = auth.verifier() if auth is not None else None
        self._origins: OriginPolicy | None = limits.origin_policy() if limits else None
        self._addresses: AddressLimiter | None = limits.address_limiter() if limits else None
        self._polls: AddressBuckets | None = limits.poll_buckets() if limits else None
        self._costly = AddressBuckets(COSTLY_RATE_PER_S, COSTLY_BURST) if limits else None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Gate:
        """The gate of a serving command (flags of :func:`add_gate_arguments`)."""
        return cls(AuthConfig.from_args(args), LimitsConfig.from_args(args))

    @property
    def auth_enabled(self) -> bool:
        """Whether tokens are required."""
        return self.verifier is not None

    def describe(self) -> str:
        """One line for people: is auth on, and how to change that."""
        if self.auth_enabled and self.verifier is not None:
            kinds = "SLIPSTREAM_SECRET" if self.auth and self.auth.secret else "public keys"
            return (
                f"auth: on ({kinds}; keys {', '.join(self.verifier.keys.kids)}): fans need a token "
                "from `slipstream token`, /v1/sessions an operator token (--operator); "
                "pass --no-auth for local use"
            )
        if self.auth is not None and (self.auth.secret or self.auth.public_keys):
            return "auth: off (--no-auth): anyone who can reach this port sees every group"
        return (
            "auth: off (SLIPSTREAM_SECRET is not set): anyone who can reach this port sees "
            "every group; set it to require tokens"
        )

    def check_request(
        self, address: str, origin: str | None, now: float, *, poll: bool = False
    ) -> Entry | Refusal:
        """Admit a new WebSocket connection or long-poll from ``address`` at ``now``.

        Args:
            address: The peer's IP address.
            origin: The ``Origin`` header (None when absent).
            now: Monotonic time, s.
            poll: A long-poll (also rate-limited per address).
        """
        if self._origins is not None and not self._origins.allows(origin):
            return Refusal(
                HTTP_FORBIDDEN_ORIGIN,
                "origin_forbidden",
                f"origin {origin!r} is not allowed to connect to this node",
            )
        if self.limits is not None and not self.limits.limit_loopback and _is_loopback(address):
            return Entry("")  # not counted: see LimitsConfig.limit_loopback
        if poll and self._polls is not None and not self._polls.allow(address, now):
            assert self.limits is not None
            return Refusal(
                HTTP_TOO_MANY_REQUESTS,
                "too_many_requests",
                f"more than {self.limits.message_rate_per_s:g} polls/s from {address}; slow down",
            )
        if self._addresses is not None and not self._addresses.acquire(address):
            return Refusal(
                HTTP_TOO_MANY_REQUESTS,
                "too_many_connections",
                f"more than {self._addresses.max_per_address} connections from {address}",
            )
        return Entry(address)

    def _unlimited(self, address: str) -> bool:
        return self.limits is None or (not self.limits.limit_loopback and _is_loopback(address))

    def check_costly(self, address: str, now: float) -> Refusal | None:
        """Admit a request to a costly path (``/metrics``, ``/v1/race``, operator paths)."""
        if self._costly is None or self._unlimited(address):
            return None
        if self._costly.allow(address, now):
            return None
        return Refusal(
            HTTP_TOO_MANY_REQUESTS,
            "too_many_requests",
            f"more than {COSTLY_RATE_PER_S:g} requests/s to this path from {address}; slow down",
        )

    def check_operator(
        self,
        address: str,
        query: Mapping[str, str],
        authorization: str | None,
        now: float | None = None,
    ) -> Refusal | None:
        """Admit a request to an operator path (per-fan details), or refuse it (401 / 403).

        Args:
            address: The client's address (after trusted proxies).
            query: The request's query parameters (``token``).
            authorization: Its ``Authorization`` header.
            now: Wall-clock time, s since the epoch (default: now).
        """
        if self.verifier is None:
            if _is_loopback(address):
                return None
            return Refusal(
                HTTP_FORBIDDEN,
                "operator_only",
                "auth is off, so this operator path answers loopback clients only; set "
                "SLIPSTREAM_SECRET (or --token-public-key) and use an operator token",
            )
        try:
            grant = self.verifier.verify(token_from_request(query, authorization), now)
        except AuthError as exc:
            message = exc.message
            if exc.code == "missing_token":
                message = "this operator path needs an operator token (slipstream token --operator)"
            return Refusal(exc.http_status, exc.code, message)
        if not grant.operator:
            return Refusal(
                HTTP_FORBIDDEN,
                "operator_only",
                "a fan token does not open operator paths; use an operator token "
                "(slipstream token --operator)",
            )
        return None

    def leave(self, entry: Entry) -> None:
        """The connection or poll of ``entry`` ended."""
        if self._addresses is not None and entry.address:
            self._addresses.release(entry.address)

    def authenticate(
        self, query: Mapping[str, str], authorization: str | None, now: float | None = None
    ) -> Grant | None:
        """The grant of a request's token (None when auth is off).

        Args:
            query: The request's query parameters (``token``).
            authorization: Its ``Authorization`` header.
            now: Wall-clock time, s since the epoch (default: now).

        Raises:
            AuthError: No valid token.
        """
        if self.verifier is None:
            return None
        return self.verifier.verify(token_from_request(query, authorization), now)

    @staticmethod
    def scope(
        grant: Grant | None, cars: Sequence[int] | None, groups: Sequence[int]
    ) -> tuple[tuple[int, ...] | None, tuple[int, ...]]:
        """A subscription's cars and groups within ``grant`` (unchanged with auth off).

        Raises:
            AuthError: ``forbidden`` (see :meth:`Grant.narrow`).
        """
        if grant is None:
            return (None if cars is None else tuple(cars)), tuple(groups)
        return grant.narrow(cars, groups)

    def session(self, grant: Grant | None, now: float) -> SessionGate:
        """The per-connection gate of a WebSocket session opened at ``now`` (monotonic)."""
        limits = self.limits.connection(now) if self.limits is not None else None
        return SessionGate(grant, limits)


class SessionGate:
    """Limits and grant of one WebSocket session."""

    __slots__ = ("grant", "limits")

    def __init__(self, grant: Grant | None, limits: ConnectionLimits | None) -> None:
        self.grant = grant
        self.limits = limits

    def on_message(self, size_bytes: int, now: float) -> Breach | None:
        """Check a client message (monotonic ``now``); a breach to close with, or None."""
        return None if self.limits is None else self.limits.on_message(size_bytes, now)

    def on_subscribe(
        self,
        cars: Sequence[int] | None,
        groups: Sequence[int],
        now: float,
        wall_now: float | None = None,
    ) -> tuple[tuple[int, ...] | None, tuple[int, ...]] | Breach:
        """Check a subscription: its rate, the token's expiry, then its scope.

        Returns:
            The subscription's ``(cars, groups)`` within the grant, or a
            :class:`Breach` to close the session with (4030, 4004 or 4003).
        """
        if self.limits is not None:
            breach = self.limits.on_subscribe(now)
            if breach is not None:
                return breach
        grant = self.grant
        try:
            if grant is not None and grant.seconds_left(wall_now) <= 0:
                raise AuthError("token_expired", "the token of this session has expired")
            return Gate.scope(grant, cars, groups)
        except AuthError as exc:
            return Breach(exc.close_code, exc.message)

    def expires_in(self, wall_now: float | None = None) -> float | None:
        """Seconds until the session's token expires (None: no token, never)."""
        return None if self.grant is None else self.grant.seconds_left(wall_now)


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--no-auth`` and the limit flags to a serving command."""
    add_auth_arguments(parser)
    add_limits_arguments(parser)
