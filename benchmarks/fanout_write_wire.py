"""RFC 6455 pieces the write-path benchmark needs on both sides (pure, no I/O).

The benchmark's servers and clients are deliberately lean: one opening
handshake per connection, then unmasked binary frames from the server.  These
helpers build and check the handshake and count frames in a byte stream
without building a Python object per frame.
"""

from __future__ import annotations

import base64
import hashlib
import os

__all__ = [
    "FrameCounter",
    "HandshakeError",
    "accept_value",
    "binary_frame",
    "check_response",
    "client_request",
    "new_key",
    "server_response",
]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_END = b"\r\n\r\n"


class HandshakeError(ValueError):
    """An opening handshake that is not a WebSocket upgrade (the text says what was wrong)."""


def new_key() -> bytes:
    """A fresh ``Sec-WebSocket-Key``: 16 random bytes, base64."""
    return base64.b64encode(os.urandom(16))


def accept_value(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for ``key`` (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def client_request(host: str, port: int, key: bytes) -> bytes:
    """The client's opening handshake (a GET with the upgrade headers)."""
    return (
        b"GET / HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (host.encode(), port, key)
    )


def _headers(head: bytes) -> dict[bytes, bytes]:
    headers: dict[bytes, bytes] = {}
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def server_response(request: bytes) -> bytes:
    """The 101 response to a complete client ``request`` (up to and with the blank line).

    Raises:
        HandshakeError: not a GET with ``Upgrade: websocket`` and a key.
    """
    if not request.startswith(b"GET ") or not request.endswith(_END):
        raise HandshakeError("expected one complete GET request ending in a blank line")
    headers = _headers(request[: -len(_END)])
    key = headers.get(b"sec-websocket-key")
    if headers.get(b"upgrade", b"").lower() != b"websocket" or not key:
        raise HandshakeError("expected Upgrade: websocket and a Sec-WebSocket-Key header")
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: %s\r\n\r\n" % accept_value(key)
    )


def check_response(response: bytes, key: bytes) -> None:
    """Check the server's 101 ``response`` (without the blank line) against ``key``.

    Raises:
        HandshakeError: not a 101, or the accept value does not match the key.
    """
    if not response.startswith(b"HTTP/1.1 101"):
        raise HandshakeError(f"expected 101 Switching Protocols, got {response[:40]!r}")
    if _headers(response).get(b"sec-websocket-accept") != accept_value(key):
        raise HandshakeError("Sec-WebSocket-Accept does not match the key sent")


def binary_frame(payload: bytes) -> bytes:
    """One unmasked binary frame (FIN set) carrying ``payload``, as a server sends it."""
    size = len(payload)
    if size < 126:
        return bytes((0x82, size)) + payload
    if size < 1 << 16:
        return bytes((0x82, 126)) + size.to_bytes(2, "big") + payload
    return bytes((0x82, 127)) + size.to_bytes(8, "big") + payload


class FrameCounter:
    """Counts complete unmasked binary frames in a byte stream, skipping their payloads.

    Only the frame headers are looked at; a payload is skipped by arithmetic,
    so the cost per frame is a few integer operations.  ``bad`` counts frames
    that are not unfragmented binary frames of ``expected_size`` bytes.
    """

    __slots__ = ("_head", "_skip", "bad", "bytes", "expected_size", "frames")

    def __init__(self, expected_size: int) -> None:
        self.expected_size = expected_size
        self.frames = 0
        self.bad = 0
        self.bytes = 0
        self._skip = -1  # payload bytes left in the current frame; -1 between frames
        self._head = b""

    def feed(self, data: bytes) -> int:
        """Count the frames ``data`` completes; returns how many it completed."""
        self.bytes += len(data)
        buf = self._head + data if self._head else data
        self._head = b""
        i, end, done = 0, len(buf), 0
        while True:
            if self._skip >= 0:
                take = min(self._skip, end - i)
                i += take
                self._skip -= take
                if self._skip:
                    return done
                self._skip = -1
                done += 1
                self.frames += 1
            if end - i < 2:
                break
            first, length = buf[i], buf[i + 1] & 0x7F
            header = 2
            if length == 126:
                header = 4
            elif length == 127:
                header = 10
            if end - i < header:
                break
            if header > 2:
                length = int.from_bytes(buf[i + 2 : i + header], "big")
            if first != 0x82 or buf[i + 1] & 0x80 or length != self.expected_size:
                self.bad += 1
            i += header
            self._skip = length
        self._head = buf[i:]
        return done
