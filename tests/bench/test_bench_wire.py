"""The sans-I/O client cores, checked against the websockets library's own framing."""

from __future__ import annotations

from collections.abc import Generator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from slipstream.app.bench import WireError
from slipstream.app.bench.wire import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    HttpResponseReader,
    WsClientReader,
    WsFrameReader,
    accept_key,
    encode_client_frame,
    get_request,
    handshake_request,
    parse_handshake_response,
)

WS_BINARY = Opcode.BINARY
WS_CONT = Opcode.CONT
WS_PING = Opcode.PING


def _server_frame(payload: bytes, opcode: Opcode = WS_BINARY, fin: bool = True) -> bytes:
    return Frame(opcode, payload, fin=fin).serialize(mask=False)


def _feed_in_pieces(
    reader: WsFrameReader, data: bytes, cuts: list[int]
) -> list[tuple[int, bytes, int]]:
    out: list[tuple[int, bytes, int]] = []
    start = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        out.extend(reader.feed(data[start:cut]))
        start = cut
    return out


def test_accept_key_matches_rfc_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_handshake_round_trip() -> None:
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    request = handshake_request("127.0.0.1", 8000, "/ws?x=1", key, ["slipstream.v1"])
    assert request.startswith(b"GET /ws?x=1 HTTP/1.1\r\n")
    assert b"Sec-WebSocket-Protocol: slipstream.v1\r\n" in request
    assert request.endswith(b"\r\n\r\n")
    head = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(key)}\r\nSec-WebSocket-Protocol: slipstream.v1"
    ).encode()
    assert parse_handshake_response(head, key, ["slipstream.v1"]) == "slipstream.v1"


@pytest.mark.parametrize(
    ("head", "message"),
    [
        (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0", "HTTP 403"),
        (b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: nope", "Accept"),
        (b"nonsense", "malformed"),
    ],
)
def test_handshake_refusals(head: bytes, message: str) -> None:
    with pytest.raises(WireError, match=message):
        parse_handshake_response(head, "dGhlIHNhbXBsZSBub25jZQ==")


def test_handshake_rejects_missing_subprotocol() -> None:
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    head = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        f"Sec-WebSocket-Accept: {accept_key(key)}"
    ).encode()
    with pytest.raises(WireError, match="none of the offered"):
        parse_handshake_response(head, key, ["slipstream.v1"])


def _upgrade_head(key: str) -> bytes:
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(key)}\r\nSec-WebSocket-Protocol: slipstream.v1\r\n\r\n"
    ).encode()


@given(cut=st.integers(min_value=0, max_value=400))
def test_client_reader_upgrades_then_reads_frames_split_anywhere(cut: int) -> None:
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    data = _upgrade_head(key) + _server_frame(b"hello") + _server_frame(b"", WS_PING)
    cut = min(cut, len(data))
    reader = WsClientReader(key, ["slipstream.v1"])
    opened_first, first = reader.feed(data[:cut])
    opened_then, then = reader.feed(data[cut:])
    assert [opened_first, opened_then].count(True) == 1
    assert opened_first == (cut >= len(_upgrade_head(key)))
    assert [(op, payload) for op, payload, _ in first + then] == [
        (OP_BINARY, b"hello"),
        (OP_PING, b""),
    ]
    assert reader.subprotocol == "slipstream.v1"


def test_client_reader_refusals() -> None:
    reader = WsClientReader("dGhlIHNhbXBsZSBub25jZQ==", ["slipstream.v1"])
    with pytest.raises(WireError, match="HTTP 429"):
        reader.feed(b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n")
    reader = WsClientReader("dGhlIHNhbXBsZSBub25jZQ==")
    assert reader.feed(b"HTTP/1.1 101 Switching Protocols\r\nX-Pad: " + b"x" * 65000) == (False, [])
    with pytest.raises(WireError, match="64 KiB"):
        reader.feed(b"x" * 1000)


@given(
    payloads=st.lists(st.binary(max_size=70_000), min_size=1, max_size=5),
    cuts=st.lists(st.integers(min_value=0, max_value=300_000), max_size=8),
)
def test_reader_parses_frames_split_anywhere(payloads: list[bytes], cuts: list[int]) -> None:
    data = b"".join(_server_frame(p) for p in payloads)
    messages = _feed_in_pieces(WsFrameReader(), data, cuts)
    assert [m[1] for m in messages] == payloads
    assert all(m[0] == OP_BINARY for m in messages)
    assert sum(m[2] for m in messages) == len(data)


def test_reader_joins_fragments_and_passes_control_frames_between() -> None:
    data = (
        _server_frame(b"abc", fin=False)
        + _server_frame(b"hi", opcode=WS_PING)
        + _server_frame(b"def", opcode=WS_CONT)
    )
    messages = WsFrameReader().feed(data)
    assert messages == [(OP_PING, b"hi", 4), (OP_BINARY, b"abcdef", len(data) - 4)]


@pytest.mark.parametrize(
    "data",
    [
        Frame(WS_BINARY, b"x").serialize(mask=True),
        bytes((0x80 | 0x40 | OP_BINARY, 1)) + b"x",
        _server_frame(b"x", opcode=WS_CONT),
        bytes((OP_PING, 1)) + b"x",
    ],
    ids=["masked", "rsv", "stray-continuation", "fragmented-control"],
)
def test_reader_rejects_protocol_violations(data: bytes) -> None:
    with pytest.raises(WireError):
        WsFrameReader().feed(data)


def _parse_masked(data: bytes) -> Frame:
    reader = StreamReader()
    reader.feed_data(data)
    parser: Generator[None, None, Frame] = Frame.parse(reader.read_exact, mask=True)
    try:
        next(parser)
    except StopIteration as stop:
        frame: Frame = stop.value
        return frame
    raise AssertionError("frame incomplete")


@given(
    payload=st.binary(max_size=70_000),
    mask=st.binary(min_size=4, max_size=4),
    opcode=st.sampled_from([OP_BINARY, OP_PONG, OP_CLOSE]),
)
def test_client_frames_parse_with_websockets(payload: bytes, mask: bytes, opcode: int) -> None:
    if opcode != OP_BINARY:
        payload = payload[:125]
    frame = _parse_masked(encode_client_frame(opcode, payload, mask))
    assert frame.opcode.value == opcode
    assert frame.data == payload
    assert frame.fin


def test_client_frame_checks_arguments() -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        encode_client_frame(OP_PONG, b"", b"abc")


def test_get_request_is_minimal_keep_alive() -> None:
    request = get_request("127.0.0.1", 80, "/v1/poll?race=r&cursor=3")
    assert request.startswith(b"GET /v1/poll?race=r&cursor=3 HTTP/1.1\r\nHost: 127.0.0.1:80\r\n")
    assert b"Connection: keep-alive" in request


def _response(body: bytes, chunked: bool = False) -> bytes:
    if chunked:
        half = len(body) // 2
        parts = [body[:half], body[half:]]
        framed = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in parts if p)
        return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + framed + b"0\r\n\r\n"
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-A: b\r\n\r\n" % len(body) + body


@given(
    bodies=st.lists(st.tuples(st.binary(max_size=3000), st.booleans()), min_size=1, max_size=4),
    cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=8),
)
def test_http_reader_parses_responses_split_anywhere(
    bodies: list[tuple[bytes, bool]], cuts: list[int]
) -> None:
    encoded = [_response(b, c) for b, c in bodies]
    data = b"".join(encoded)
    reader = HttpResponseReader()
    got = []
    start = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        got.extend(reader.feed(data[start:cut]))
        start = cut
    assert [r.body for r in got] == [b for b, _ in bodies]
    assert [r.wire_bytes for r in got] == [len(e) for e in encoded]
    assert all(r.status == 200 for r in got)


def test_http_reader_reports_headers_and_rejects_garbage() -> None:
    (response,) = HttpResponseReader().feed(_response(b"xyz"))
    assert response.headers["x-a"] == "b"
    with pytest.raises(WireError):
        HttpResponseReader().feed(b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n")
    with pytest.raises(WireError):
        HttpResponseReader().feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
