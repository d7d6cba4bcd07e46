"""Abuse limits as pure, clock-injected policies (no I/O, no clock of their own).

* :class:`TokenBucket`: a rate with a burst (client messages, subscribe changes).
* :class:`AddressLimiter`: concurrent connections per remote address.
* :class:`AddressBuckets`: a token bucket per address, bounded in size (long-poll rate).
* :class:`OriginPolicy`: which browser origins may connect.
* :class:`ConnectionLimits`: the per-connection checks of one WebSocket session.
* :class:`LimitsConfig`: the values, from flags and ``SLIPSTREAM_*`` variables.

Every breach maps to a documented close code or HTTP status (docs/security.md):
:data:`CLOSE_MESSAGE_TOO_BIG`, :data:`CLOSE_RATE_LIMITED`,
:data:`CLOSE_TOO_MANY_SUBSCRIPTIONS`, :data:`HTTP_TOO_MANY_REQUESTS`,
:data:`HTTP_FORBIDDEN_ORIGIN`.  Times are seconds on any monotonic clock the
caller chooses (e.g. ``loop.time()``).
"""

from __future__ import annotations

import argparse
from collections import OrderedDict
from dataclasses import dataclass

from slipstream.errors import ConfigError
from slipstream.options import Option, Options, integer, number

__all__ = [
    "CLOSE_MESSAGE_TOO_BIG",
    "CLOSE_RATE_LIMITED",
    "CLOSE_TOO_MANY_SUBSCRIPTIONS",
    "HTTP_FORBIDDEN_ORIGIN",
    "HTTP_TOO_MANY_REQUESTS",
    "LIMITS_OPTIONS",
    "AddressBuckets",
    "AddressLimiter",
    "Breach",
    "ConnectionLimits",
    "LimitsConfig",
    "OriginPolicy",
    "TokenBucket",
    "add_limits_arguments",
]

#: WebSocket close code: a client message larger than ``max_message_bytes`` (RFC 6455).
CLOSE_MESSAGE_TOO_BIG = 1009
#: WebSocket close code: client messages faster than ``message_rate_per_s`` beyond the burst.
CLOSE_RATE_LIMITED = 4029
#: WebSocket close code: more subscribe messages than ``max_subscriptions`` per minute.
CLOSE_TOO_MANY_SUBSCRIPTIONS = 4030
#: HTTP status: too many connections (or long-polls) from one address.
HTTP_TOO_MANY_REQUESTS = 429
#: HTTP status: the browser's ``Origin`` is not allowed.
HTTP_FORBIDDEN_ORIGIN = 403


class TokenBucket:
    """``rate_per_s`` tokens a second, at most ``burst`` saved; starts full.

    Args:
        rate_per_s: Refill rate (> 0).
        burst: Capacity (>= 1): how many may come at once.
        now: Time of creation.
    """

    __slots__ = ("_at", "_tokens", "burst", "rate_per_s")

    def __init__(self, rate_per_s: float, burst: float, now: float) -> None:
        if not rate_per_s > 0:
            raise ValueError(f"rate_per_s must be positive, got {rate_per_s!r}")
        if not burst >= 1:
            raise ValueError(f"burst must be at least 1, got {burst!r}")
        self.rate_per_s = float(rate_per_s)
        self.burst = float(burst)
        self._tokens = self.burst
        self._at = now

    def allow(self, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens if there are enough at ``now``; whether it did.

        A clock that goes backwards refills nothing (and is not an error).
        """
        if now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate_per_s)
            self._at = now
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False

    def tokens(self, now: float) -> float:
        """Tokens available at ``now`` (without taking any)."""
        if now > self._at:
            return min(self.burst, self._tokens + (now - self._at) * self.rate_per_s)
        return self._tokens


class AddressLimiter:
    """At most ``max_per_address`` concurrent connections per remote address.

    Memory is one entry per address with a connection open: entries are
    removed when their count drops to zero.
    """

    __slots__ = ("_counts", "max_per_address")

    def __init__(self, max_per_address: int) -> None:
        if max_per_address < 1:
            raise ValueError("max_per_address must be at least 1")
        self.max_per_address = max_per_address
        self._counts: dict[str, int] = {}

    def acquire(self, address: str) -> bool:
        """Count a new connection from ``address``; False (and not counted) when full."""
        count = self._counts.get(address, 0)
        if count >= self.max_per_address:
            return False
        self._counts[address] = count + 1
        return True

    def release(self, address: str) -> None:
        """Forget one connection of ``address`` (a release without acquire is ignored)."""
        count = self._counts.get(address, 0)
        if count <= 1:
            self._counts.pop(address, None)
        else:
            self._counts[address] = count - 1

    def count(self, address: str) -> int:
        """Open connections of ``address``."""
        return self._counts.get(address, 0)

    def __len__(self) -> int:
        """Addresses with a connection open."""
        return len(self._counts)


class AddressBuckets:
    """A :class:`TokenBucket` per address, keeping at most ``max_addresses`` of them.

    When full, the least recently used bucket is dropped: an address that was
    quiet long enough to be evicted would have a full bucket anyway, unless
    ``max_addresses`` distinct addresses came in between.
    """

    __slots__ = ("_buckets", "burst", "max_addresses", "rate_per_s")

    def __init__(self, rate_per_s: float, burst: float, max_addresses: int = 100_000) -> None:
        TokenBucket(rate_per_s, burst, 0.0)  # validates the arguments
        if max_addresses < 1:
            raise ValueError("max_addresses must be at least 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_addresses = max_addresses
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def allow(self, address: str, now: float) -> bool:
        """Take one token of ``address``'s bucket; whether there was one."""
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = TokenBucket(self.rate_per_s, self.burst, now)
            self._buckets[address] = bucket
            if len(self._buckets) > self.max_addresses:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(address)
        return bucket.allow(now)

    def __len__(self) -> int:
        return len(self._buckets)


def _normalise_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


class OriginPolicy:
    """Which browser origins may connect.

    Args:
        allowed: Exact origins (``https://fans.example.com``, compared without
            case or a trailing slash) or ``"*"`` for any.

    A request without an ``Origin`` header is not from a browser page (scripts,
    the Python client, ``slipstream subscribe``) and is always allowed: the
    check stops other web sites from using a visitor's browser, not programs.
    """

    __slots__ = ("_any", "_origins")

    def __init__(self, allowed: tuple[str, ...] | list[str]) -> None:
        self._any = "*" in allowed
        self._origins = frozenset(_normalise_origin(o) for o in allowed if o != "*")
        for origin in self._origins:
            if origin != "null" and "://" not in origin:
                raise ValueError(f"an origin looks like https://host[:port], got {origin!r}")

    def allows(self, origin: str | None) -> bool:
        """Whether a request with this ``Origin`` header (None: no header) may connect."""
        if origin is None or self._any:
            return True
        return _normalise_origin(origin) in self._origins


@dataclass(frozen=True, slots=True)
class Breach:
    """A limit a connection broke: close it with ``close_code`` and ``reason``."""

    close_code: int
    reason: str


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Abuse limits of a broadcast node.

    Attributes:
        max_connections_per_address: Concurrent WebSocket connections plus
            held long-polls per remote address (HTTP 429 beyond).
        max_message_bytes: Largest client message (close 1009 beyond).
        message_rate_per_s: Sustained client messages per second per
            connection (close 4029 beyond the burst); also long-polls per
            second per address (HTTP 429).
        message_burst: Client messages that may come at once.
        max_subscriptions: Subscribe messages per connection in any minute
            (close 4030 beyond).
        allowed_origins: Browser origins allowed to connect; ``("*",)`` for any.
        limit_loopback: Apply the per-address limits to loopback addresses too.
            Off by default: clients on the node's own host (a local proxy such as
            ``slipstream run --nodes``' nginx, load generators, tests) all share
            one address, which per-address limits would count as one client.
    """

    max_connections_per_address: int = 64
    max_message_bytes: int = 64 * 1024
    message_rate_per_s: float = 20.0
    message_burst: int = 40
    max_subscriptions: int = 30
    allowed_origins: tuple[str, ...] = ("*",)
    limit_loopback: bool = False

    def __post_init__(self) -> None:
        if self.max_connections_per_address < 1:
            raise ConfigError("max connections per address must be at least 1")
        if self.max_message_bytes < 256:
            raise ConfigError("max message bytes must be at least 256")
        if not self.message_rate_per_s > 0 or self.message_burst < 1:
            raise ConfigError("the message rate must be positive and the burst at least 1")
        if self.max_subscriptions < 1:
            raise ConfigError("max subscriptions must be at least 1")
        if not self.allowed_origins:
            raise ConfigError('give at least one allowed origin (or "*" for any)')
        try:
            OriginPolicy(self.allowed_origins)
        except ValueError as exc:
            raise ConfigError(f"--allowed-origin: {exc}") from None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> LimitsConfig:
        """Build from the flags added by :func:`add_limits_arguments`."""
        return LIMITS_OPTIONS.build(args)

    def origin_policy(self) -> OriginPolicy:
        """The origin policy of these limits."""
        return OriginPolicy(self.allowed_origins)

    def address_limiter(self) -> AddressLimiter:
        """A fresh per-address connection counter."""
        return AddressLimiter(self.max_connections_per_address)

    def poll_buckets(self) -> AddressBuckets:
        """Per-address long-poll rate buckets."""
        return AddressBuckets(self.message_rate_per_s, self.message_burst)

    def connection(self, now: float) -> ConnectionLimits:
        """The per-connection checks of a session opened at ``now``."""
        return ConnectionLimits(self, now)


class ConnectionLimits:
    """Message-size, message-rate and subscription limits of one connection."""

    __slots__ = ("_messages", "_subscribes", "config")

    def __init__(self, config: LimitsConfig, now: float) -> None:
        self.config = config
        self._messages = TokenBucket(config.message_rate_per_s, config.message_burst, now)
        per_s = config.max_subscriptions / 60.0
        self._subscribes = TokenBucket(per_s, config.max_subscriptions, now)

    def on_message(self, size_bytes: int, now: float) -> Breach | None:
        """Check a client message of ``size_bytes`` received at ``now``."""
        if size_bytes > self.config.max_message_bytes:
            return Breach(
                CLOSE_MESSAGE_TOO_BIG,
                f"message of {size_bytes} bytes; the limit is {self.config.max_message_bytes}",
            )
        if not self._messages.allow(now):
            return Breach(
                CLOSE_RATE_LIMITED,
                f"more than {self.config.message_rate_per_s:g} messages/s "
                f"(burst {self.config.message_burst})",
            )
        return None

    def on_subscribe(self, now: float) -> Breach | None:
        """Check a subscribe message received at ``now``."""
        if not self._subscribes.allow(now):
            return Breach(
                CLOSE_TOO_MANY_SUBSCRIPTIONS,
                f"more than {self.config.max_subscriptions} subscribe messages a minute",
            )
        return None


def _origin(raw: str) -> str:
    origin = raw.strip()
    if origin not in ("*", "null") and "://" not in origin:
        raise ValueError("expected an origin like https://host[:port], or * for any")
    return origin


#: The abuse limits of a serving command (docs/security.md).
LIMITS_OPTIONS = Options(
    LimitsConfig,
    [
        Option(
            "max_connections_per_address", "--max-connections-per-address",
            "concurrent WebSocket connections plus held long-polls per client address; "
            "HTTP 429 beyond",
            parse=integer(minimum=1), env="MAX_CONNECTIONS_PER_ADDRESS", metavar="N",
        ),
        Option(
            "max_message_bytes", "--max-message-bytes", "largest client message; close 1009 beyond",
            parse=integer(minimum=256), env="MAX_MESSAGE_BYTES", metavar="BYTES",
        ),
        Option(
            "message_rate_per_s", "--message-rate",
            "client messages per second per connection, and long-polls per second per "
            "address; close 4029 / HTTP 429 beyond the burst",
            parse=number(positive=True), env="MESSAGE_RATE", metavar="PER_S",
        ),
        Option(
            "message_burst", "--message-burst", "client messages that may come at once",
            parse=integer(minimum=1), env="MESSAGE_BURST", metavar="N",
        ),
        Option(
            "max_subscriptions", "--max-subscriptions",
            "subscribe messages per connection in any minute; close 4030 beyond",
            parse=integer(minimum=1), env="MAX_SUBSCRIPTIONS", metavar="N",
        ),
        Option(
            "limit_loopback", "--limit-loopback",
            "apply the per-address limits to 127.0.0.1 and ::1 too (by default local "
            "clients such as a proxy on this host, load generators and tests are not counted)",
            switch=True,
        ),
        Option(
            "allowed_origins", "--allowed-origin",
            "browser origin allowed to connect, e.g. https://fans.example.com (repeatable; "
            "the variable takes them comma-separated). Requests without an Origin header "
            "(non-browser clients) are always allowed; others get HTTP 403",
            parse=_origin, env="ALLOWED_ORIGINS", metavar="ORIGIN", repeat=True,
            default_text="any",
        ),
    ],
)  # fmt: skip


def add_limits_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the abuse-limit flags to a serving command."""
    LIMITS_OPTIONS.add_arguments(parser)
