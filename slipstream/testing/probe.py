"""A minimal Kafka client: enough wire protocol to tell that a broker really serves.

Plain sockets, no event loop, so it works from sync code and from inside a
running loop alike.  Requests are version 0 (every broker speaks them).

Hierarchy::

    SlipstreamError
    └── ProtocolError      the peer answered, but not as a Kafka broker does
"""

from __future__ import annotations

import socket
import struct

from slipstream.errors import SlipstreamError

__all__ = ["ProtocolError", "probe"]

_API_VERSIONS = 18
_METADATA = 3
_MAX_RESPONSE_BYTES = 1 << 24


class ProtocolError(SlipstreamError):
    """The peer answered, but not the way a Kafka broker does."""


def _kafka_request(sock: socket.socket, api_key: int, correlation_id: int, body: bytes) -> bytes:
    """Send a version-0 request; return the response body after the correlation id."""
    client_id = b"slipstream-probe"
    header = struct.pack(">hhih", api_key, 0, correlation_id, len(client_id)) + client_id
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    size = struct.unpack(">i", _recv_exact(sock, 4))[0]
    if not 4 <= size <= _MAX_RESPONSE_BYTES:
        raise ProtocolError(f"a Kafka response is not {size} bytes long")
    response = _recv_exact(sock, size)
    (got,) = struct.unpack_from(">i", response)
    if got != correlation_id:
        raise ProtocolError(f"broker answered correlation id {got}, expected {correlation_id}")
    return response[4:]


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        chunks += chunk
    return bytes(chunks)


def probe(host: str, port: int, timeout_s: float = 2.0) -> list[tuple[str, int]]:
    """Ask a Kafka broker for its API versions and metadata.

    Returns:
        The ``(host, port)`` of every broker in the metadata answer.

    Raises:
        OSError: Nothing answered, or the connection broke.
        ProtocolError: The answer was not what a Kafka broker says.
    """
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        try:
            return _ask(sock)
        except (struct.error, UnicodeDecodeError) as exc:
            raise ProtocolError(f"not a Kafka answer: {exc}") from exc


def _ask(sock: socket.socket) -> list[tuple[str, int]]:
    body = _kafka_request(sock, _API_VERSIONS, 1, b"")
    (error_code,) = struct.unpack_from(">h", body)
    if error_code != 0:
        raise ProtocolError(f"ApiVersions failed with error code {error_code}")
    # Metadata v0 with an empty topic list: brokers and (all) topics.
    body = _kafka_request(sock, _METADATA, 2, struct.pack(">i", 0))
    (count,) = struct.unpack_from(">i", body)
    at = 4
    brokers = []
    for _ in range(count):
        _node_id, host_len = struct.unpack_from(">ih", body, at)
        at += 6
        broker_host = body[at : at + host_len].decode()
        at += host_len
        (broker_port,) = struct.unpack_from(">i", body, at)
        at += 4
        brokers.append((broker_host, broker_port))
    if not brokers:
        raise ProtocolError("metadata lists no broker")
    return brokers
