"""Sans-I/O cores of the load generator's lean clients.

Nothing here touches a socket, a clock or an event loop: bytes go in, parsed
messages come out.  The asyncio protocols in :mod:`slipstream.app.bench.loadgen`
only move bytes between a transport and these objects.

* WebSocket (RFC 6455), client side: :func:`handshake_request` /
  :func:`parse_handshake_response` for the upgrade, :class:`WsFrameReader` for
  the server's (unmasked) frames, :class:`WsClientReader` for both in turn
  (what a client connection reads), :func:`encode_client_frame` for masked
  frames to the server (pongs, close, subscription messages).
* HTTP/1.1 keep-alive: :func:`get_request` and :class:`HttpResponseReader`
  (``Content-Length`` and ``chunked`` bodies).

Every reader counts the bytes each message took on the wire (headers
included), which is what the benchmark reports as bytes per update.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from slipstream.app.bench import WireError

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONTINUATION",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "HttpResponse",
    "HttpResponseReader",
    "WsClientReader",
    "WsFrameReader",
    "accept_key",
    "encode_client_frame",
    "get_request",
    "handshake_request",
    "parse_handshake_response",
]

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: Largest message (or HTTP head/body) the readers accept.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
_MAX_HEAD_BYTES = 64 * 1024


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value a server must answer to ``key``."""
    digest = hashlib.sha1(key.encode("ascii") + _GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def handshake_request(
    host: str, port: int, target: str, key: str, subprotocols: Sequence[str] = ()
) -> bytes:
    """The HTTP upgrade request opening a WebSocket on ``target`` (path and query).

    Args:
        key: Base64 of 16 random bytes (``Sec-WebSocket-Key``).
        subprotocols: Offered in ``Sec-WebSocket-Protocol``, in preference order.
    """
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if subprotocols:
        lines.append("Sec-WebSocket-Protocol: " + ", ".join(subprotocols))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    try:
        text = head.decode("latin-1")
        status_line, *header_lines = text.split("\r\n")
        version, status, *_ = status_line.split(" ", 2)
        if not version.startswith("HTTP/1."):
            raise ValueError(version)
        headers: dict[str, str] = {}
        for line in header_lines:
            if not line:
                continue
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(status), headers
    except ValueError as exc:
        raise WireError(f"malformed HTTP response head: {head[:80]!r}") from exc


def parse_handshake_response(head: bytes, key: str, subprotocols: Sequence[str] = ()) -> str:
    """Check the server's answer to the upgrade; return the chosen subprotocol ("" if none).

    Args:
        head: The response head, up to and without the blank line.

    Raises:
        WireError: Not a 101, a wrong accept key, or a subprotocol not offered.
    """
    status, headers = _parse_head(head)
    if status != 101:
        raise WireError(f"upgrade refused with HTTP {status}")
    if headers.get("upgrade", "").lower() != "websocket":
        raise WireError("upgrade response lacks 'Upgrade: websocket'")
    if headers.get("sec-websocket-accept") != accept_key(key):
        raise WireError("upgrade response has a wrong Sec-WebSocket-Accept")
    chosen = headers.get("sec-websocket-protocol", "")
    if chosen and chosen not in subprotocols:
        raise WireError(f"server chose subprotocol {chosen!r}, which was not offered")
    if subprotocols and not chosen:
        raise WireError("server chose none of the offered subprotocols")
    return chosen


def encode_client_frame(opcode: int, payload: bytes, mask: bytes) -> bytes:
    """One final, masked client frame.

    Args:
        opcode: One of the ``OP_*`` constants.
        mask: 4 random bytes (clients must mask every frame).
    """
    if len(mask) != 4:
        raise ValueError("a WebSocket mask is 4 bytes")
    if not 0 <= opcode <= 0xF:
        raise ValueError(f"opcode {opcode} out of range")
    length = len(payload)
    if length < 126:
        head = bytes((0x80 | opcode, 0x80 | length))
    elif length < 1 << 16:
        head = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
    if length:
        repeated = (mask * (length // 4 + 1))[:length]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
            length, "big"
        )
    else:
        masked = b""
    return head + mask + masked


class WsFrameReader:
    """Parses the server's frames incrementally into whole messages.

    :meth:`feed` returns ``(opcode, payload, wire_bytes)`` per complete
    message: data messages (fragments joined, opcode of the first fragment)
    and control frames (close, ping, pong), in arrival order.  ``wire_bytes``
    counts frame headers too.
    """

    __slots__ = ("_buf", "_frag_bytes", "_frag_op", "_frags")

    def __init__(self) -> None:
        self._buf = b""
        self._frags: list[bytes] = []
        self._frag_op = 0
        self._frag_bytes = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes, int]]:
        """Messages completed by ``data`` (may be none).

        Raises:
            WireError: A masked server frame, RSV bits without an extension,
                a bad control frame, a stray continuation, or a message over
                :data:`MAX_MESSAGE_BYTES`.
        """
        buf = self._buf + data if self._buf else data
        n = len(buf)
        pos = 0
        out: list[tuple[int, bytes, int]] = []
        while n - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            if b1 & 0x80:
                raise WireError("server frames must not be masked")
            if b0 & 0x70:
                raise WireError("frame has RSV bits set but no extension was negotiated")
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if length > MAX_MESSAGE_BYTES:
                raise WireError(f"frame of {length} bytes is over the {MAX_MESSAGE_BYTES} limit")
            end = pos + head + length
            if end > n:
                break
            payload = buf[pos + head : end]
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            pos = end
            if opcode >= 0x8:
                if not fin or length > 125:
                    raise WireError("control frames must be final and at most 125 bytes")
                out.append((opcode, payload, head + length))
            elif opcode == OP_CONTINUATION:
                if not self._frags:
                    raise WireError("continuation frame without a message to continue")
                self._append_fragment(payload, head + length)
                if fin:
                    out.append((self._frag_op, b"".join(self._frags), self._frag_bytes))
                    self._frags = []
                    self._frag_bytes = 0
            elif self._frags:
                raise WireError("new data frame before the previous message was finished")
            elif fin:
                out.append((opcode, payload, head + length))
            else:
                self._frag_op = opcode
                self._append_fragment(payload, head + length)
        self._buf = buf[pos:] if pos < n else b""
        return out

    def _append_fragment(self, payload: bytes, wire_bytes: int) -> None:
        self._frags.append(payload)
        self._frag_bytes += wire_bytes
        if self._frag_bytes > MAX_MESSAGE_BYTES:
            raise WireError(f"fragmented message over the {MAX_MESSAGE_BYTES} limit")


class WsClientReader:
    """What a WebSocket client reads: the upgrade response, then the server's frames.

    Args:
        key: The ``Sec-WebSocket-Key`` the upgrade request sent.
        subprotocols: The subprotocols it offered.

    Attributes:
        subprotocol: The one the server chose, once upgraded (None before).
    """

    __slots__ = ("_frames", "_head", "_key", "_subprotocols", "subprotocol")

    def __init__(self, key: str, subprotocols: Sequence[str] = ()) -> None:
        self._key = key
        self._subprotocols = tuple(subprotocols)
        self._head = b""
        self._frames: WsFrameReader | None = None
        self.subprotocol: str | None = None

    def feed(self, data: bytes) -> tuple[bool, list[tuple[int, bytes, int]]]:
        """Whether ``data`` completed the upgrade, and the messages it completed.

        Raises:
            WireError: The upgrade was refused or malformed (or its head is over
                64 KiB), or a frame is bad (:meth:`WsFrameReader.feed`).
        """
        frames = self._frames
        if frames is not None:
            return False, frames.feed(data)
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > 65536:
                raise WireError("upgrade response head over 64 KiB")
            return False, []
        self.subprotocol = parse_handshake_response(self._head[:end], self._key, self._subprotocols)
        rest, self._head = self._head[end + 4 :], b""
        frames = self._frames = WsFrameReader()
        return True, frames.feed(rest) if rest else []


def get_request(host: str, port: int, target: str) -> bytes:
    """A minimal keep-alive ``GET`` (a browser would add several hundred bytes of headers)."""
    return (
        f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: */*\r\n"
        "Connection: keep-alive\r\n\r\n"
    ).encode("ascii")


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """One complete HTTP response.

    Attributes:
        status: Status code.
        headers: Header names lower-cased (the last of repeated names wins).
        body: The body, de-chunked.
        wire_bytes: Bytes the response took on the wire, head and framing included.
    """

    status: int
    headers: dict[str, str]
    body: bytes
    wire_bytes: int


class HttpResponseReader:
    """Parses keep-alive HTTP/1.1 responses incrementally.

    Bodies must be framed by ``Content-Length`` or ``Transfer-Encoding:
    chunked`` (a response with neither has an empty body, as for 204/304).
    """

    __slots__ = ("_buf", "_head")

    def __init__(self) -> None:
        self._buf = b""
        self._head: tuple[int, dict[str, str], int] | None = None

    def feed(self, data: bytes) -> list[HttpResponse]:
        """Responses completed by ``data`` (may be none).

        Raises:
            WireError: A malformed head or chunk, or sizes over the limits.
        """
        self._buf += data
        out: list[HttpResponse] = []
        while True:
            if self._head is None:
                end = self._buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buf) > _MAX_HEAD_BYTES:
                        raise WireError("HTTP response head over 64 KiB")
                    break
                status, headers = _parse_head(self._buf[:end])
                self._head = (status, headers, end + 4)
                self._buf = self._buf[end + 4 :]
            status, headers, head_bytes = self._head
            parsed = self._take_body(headers)
            if parsed is None:
                break
            body, body_bytes = parsed
            self._head = None
            out.append(HttpResponse(status, headers, body, head_bytes + body_bytes))
        return out

    def _take_body(self, headers: dict[str, str]) -> tuple[bytes, int] | None:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return self._take_chunked()
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError as exc:
            raise WireError("Content-Length is not a number") from exc
        if not 0 <= length <= MAX_MESSAGE_BYTES:
            raise WireError(f"Content-Length {length} out of range")
        if len(self._buf) < length:
            return None
        body = self._buf[:length]
        self._buf = self._buf[length:]
        return body, length

    def _take_chunked(self) -> tuple[bytes, int] | None:
        # Re-parses from the start of the body each time: bodies here are small.
        buf = self._buf
        pos = 0
        chunks: list[bytes] = []
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                return None
            try:
                size = int(buf[pos:line_end].split(b";", 1)[0], 16)
            except ValueError as exc:
                raise WireError("malformed chunk size") from exc
            if size < 0 or size > MAX_MESSAGE_BYTES:
                raise WireError(f"chunk of {size} bytes out of range")
            start = line_end + 2
            if size == 0:
                # No trailers expected: the last chunk ends with an empty line.
                if len(buf) < start + 2:
                    return None
                if buf[start : start + 2] != b"\r\n":
                    raise WireError("trailers after a chunked body are not supported")
                self._buf = buf[start + 2 :]
                return b"".join(chunks), start + 2
            if len(buf) < start + size + 2:
                return None
            if buf[start + size : start + size + 2] != b"\r\n":
                raise WireError("chunk not followed by CRLF")
            chunks.append(buf[start : start + size])
            pos = start + size + 2
