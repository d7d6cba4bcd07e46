"""The wire protocol ``slipstream.v1`` (docs/protocol.md): envelopes, no I/O.

Server to client: binary msgpack maps with a type field ``t`` (``hello``,
``subscribed``, ``tick``, ``event``, ``notice``, ``error``, ``pong``).
Client to server: control messages as JSON text or a msgpack binary map with
an ``op`` field (``subscribe``, ``keyframe``, ``unsubscribe``, ``ping``).

Errors (root :class:`BroadcastError`)::

    BroadcastError (SlipstreamError)
    └── ProtocolError (also ValueError)   a message broke the protocol; ``code`` says how
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from slipstream.catalogue import CATALOGUE
from slipstream.errors import SlipstreamError

__all__ = [
    "CLOSE_BAD_INPUT",
    "CLOSE_SHUTDOWN",
    "CLOSE_TOO_SLOW",
    "KIND_DELTA",
    "KIND_KEYFRAME",
    "PROTOCOL_VERSION",
    "SUBPROTOCOL",
    "BroadcastError",
    "Cursor",
    "ProtocolError",
    "Subscribe",
    "decode_message",
    "encode_message",
    "pack_part",
    "parse_control",
    "parse_cursor",
    "tick_message",
]

PROTOCOL_VERSION = 1
SUBPROTOCOL = "slipstream.v1"
KIND_KEYFRAME = 0
KIND_DELTA = 1
#: Close codes (besides the standard 1001, 1009, 1011).
CLOSE_SHUTDOWN = 1012  # service restart: reconnect, to another node if you like
CLOSE_BAD_INPUT = 1008  # policy violation: too many bad messages
CLOSE_TOO_SLOW = 4008  # stayed behind the stream for too long
MAX_CAR = 999


class BroadcastError(SlipstreamError):
    """Root of the broadcast package's errors."""


class ProtocolError(BroadcastError, ValueError):
    """A message broke the protocol.

    Attributes:
        code: Machine-readable error code (``malformed``, ``unknown_op``,
            ``bad_field``, ``unknown_car``, ``unknown_group``, ``unknown_codec``,
            ``bad_cursor``, ``bad_base``).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True, order=True)
class Cursor:
    """Where a fan is: the race and the last tick it applied (-1: none yet)."""

    race: str
    tick: int

    def __str__(self) -> str:
        return f"{self.race}:{self.tick}"


def parse_cursor(text: str) -> Cursor:
    """Parse ``RACE:TICK``.

    Raises:
        ProtocolError: ``bad_cursor``.
    """
    race, sep, tick = text.rpartition(":")
    if not sep or not race or not tick.lstrip("-").isdigit() or int(tick) < -1:
        raise ProtocolError("bad_cursor", f"expected RACE:TICK with TICK >= -1, got {text!r}")
    return Cursor(race, int(tick))


@dataclass(frozen=True, slots=True)
class Subscribe:
    """A subscription: which cars and groups, in which codec, from where.

    Attributes:
        cars: Car numbers, ascending; None for every car.
        groups: Group indices into ``CATALOGUE.groups``, ascending.
        codec: Codec name.
        cursor: Resume point, or None to start from a keyframe.
        keyframe: The fan holds no state: the first tick after the cursor
            comes as a keyframe (deltas cannot apply to nothing).
    """

    cars: tuple[int, ...] | None
    groups: tuple[int, ...]
    codec: str
    cursor: Cursor | None = None
    keyframe: bool = False

    @property
    def key(self) -> tuple[tuple[int, ...] | None, tuple[int, ...], str]:
        """What decides the bytes a subscriber receives (cursor aside)."""
        return (self.cars, self.groups, self.codec)


def encode_message(obj: dict[str, Any]) -> bytes:
    """Pack a server message (a map with ``t``)."""
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def decode_message(data: bytes) -> dict[str, Any]:
    """Unpack a server message.

    Raises:
        ProtocolError: ``malformed``: not a msgpack map with a string ``t``.
    """
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ProtocolError("malformed", f"not a msgpack message: {exc}") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("t"), str):
        raise ProtocolError("malformed", "a message is a msgpack map with a string 't'")
    return obj


def pack_part(car: int, group: int, kind: int, base: int, payload: bytes) -> bytes:
    """One pre-packed part ``[car, group, kind, base, payload]`` of a tick message."""
    return msgpack.packb([car, group, kind, base, payload], use_bin_type=True)  # type: ignore[no-any-return]


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def tick_message(
    race: str,
    tick: int,
    keyframe: bool,
    codec: str,
    stale: Sequence[int],
    parts: Sequence[bytes],
    emitted_ns: int | None = None,
) -> bytes:
    """Assemble a tick message from pre-packed parts (see :func:`pack_part`).

    The map's last field ``p`` is the array of parts: the header is packed with
    ``p`` = nil, the nil byte is cut and the parts are spliced in, so the parts
    are copied, never re-encoded.  ``ts`` is ``emitted_ns``, the server's
    wall-clock time when the tick was emitted (ns since the epoch; nil if not
    given), from which fans and benchmarks measure delivery latency.
    """
    head = encode_message(
        {
            "t": "tick",
            "race": race,
            "tick": tick,
            "kf": keyframe,
            "codec": codec,
            "stale": list(stale),
            "ts": emitted_ns,
            "p": None,
        }
    )
    return b"".join((head[:-1], _array_header(len(parts)), *parts))


def _cars(value: Any, known: frozenset[int] | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise ProtocolError("bad_field", "cars must be a non-empty list of car numbers or null")
    if not all(isinstance(c, int) and not isinstance(c, bool) for c in value):
        raise ProtocolError("bad_field", "cars must be integers")
    bad = sorted(c for c in value if not 0 <= c <= MAX_CAR)
    if bad:
        raise ProtocolError("bad_field", f"car numbers must be 0..{MAX_CAR}, got {bad}")
    if known:
        unknown = sorted(set(value) - known)
        if unknown:
            listing = ", ".join(map(str, sorted(known)))
            raise ProtocolError(
                "unknown_car", f"unknown car(s) {unknown} in this race; known: {listing}"
            )
    return tuple(sorted(set(value)))


def _groups(value: Any) -> tuple[int, ...]:
    if value is None:
        return tuple(g.index for g in CATALOGUE.groups)
    if not isinstance(value, list) or not value or not all(isinstance(g, str) for g in value):
        raise ProtocolError("bad_field", "groups must be a non-empty list of group names or null")
    try:
        groups = CATALOGUE.resolve_groups(value)
    except ValueError as exc:
        raise ProtocolError("unknown_group", str(exc)) from None
    return tuple(g.index for g in groups)


def _cursor(value: Any) -> Cursor | None:
    if value is None:
        return None
    if isinstance(value, str):
        return parse_cursor(value)
    if not isinstance(value, dict):
        raise ProtocolError("bad_cursor", "cursor must be {race, tick} or 'RACE:TICK'")
    race, tick = value.get("race"), value.get("tick")
    if not isinstance(race, str) or not race or not isinstance(tick, int) or tick < -1:
        raise ProtocolError("bad_cursor", "cursor needs a race id and a tick >= -1")
    return Cursor(race, tick)


def build_subscribe(
    cars: Any,
    groups: Any,
    codec: Any,
    cursor: Any,
    *,
    keyframe: Any = False,
    codecs: Sequence[str],
    default_codec: str,
    known_cars: frozenset[int] | None = None,
) -> Subscribe:
    """Validate the fields of a subscription (shared by WebSocket and long-poll).

    Raises:
        ProtocolError: A field is wrong; the message says which and what is allowed.
    """
    if codec is None:
        codec = default_codec
    if not isinstance(codec, str) or codec not in codecs:
        raise ProtocolError("unknown_codec", f"unknown codec {codec!r}; known: {', '.join(codecs)}")
    if not isinstance(keyframe, bool):
        raise ProtocolError("bad_field", "keyframe must be true or false")
    return Subscribe(_cars(cars, known_cars), _groups(groups), codec, _cursor(cursor), keyframe)


def parse_control(
    data: str | bytes,
    *,
    codecs: Sequence[str],
    default_codec: str,
    known_cars: frozenset[int] | None = None,
) -> tuple[str, Subscribe | None]:
    """Parse a client control message (JSON text or a msgpack map).

    Returns:
        ``(op, subscription)``; the subscription only for ``subscribe``.

    Raises:
        ProtocolError: Malformed, unknown op or a bad field.
    """
    try:
        if isinstance(data, str):
            obj = json.loads(data)
        else:
            obj = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, TypeError, RecursionError, msgpack.UnpackException) as exc:
        raise ProtocolError("malformed", f"not JSON or msgpack: {exc}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("op"), str):
        raise ProtocolError("malformed", 'a control message is a map with a string "op"')
    op = obj["op"]
    if op == "subscribe":
        sub = build_subscribe(
            obj.get("cars"),
            obj.get("groups"),
            obj.get("codec"),
            obj.get("cursor"),
            keyframe=obj.get("keyframe", False),
            codecs=codecs,
            default_codec=default_codec,
            known_cars=known_cars,
        )
        return op, sub
    if op in ("keyframe", "unsubscribe", "ping"):
        return op, None
    raise ProtocolError(
        "unknown_op", f"unknown op {op!r}; expected subscribe, keyframe, unsubscribe or ping"
    )
