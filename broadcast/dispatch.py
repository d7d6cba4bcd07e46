"""One port for everything: route each new connection to websockets or aiohttp.

:class:`DispatchProtocol` buffers the request head of a new connection.  A
request that asks for ``Upgrade: websocket`` is handed to a ``websockets``
:class:`ServerConnection` (so ``broadcast()`` works on it); anything else goes
to aiohttp's request handler.  The hand-over is the transport's
``set_protocol`` plus ``connection_made`` and ``data_received`` of the
buffered bytes: neither library can tell the difference.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import cast

__all__ = ["MAX_HEAD_BYTES", "DispatchProtocol"]

logger = logging.getLogger(__name__)

#: Largest request head accepted before the connection is refused.
MAX_HEAD_BYTES = 16 * 1024


def _is_websocket(head: bytes) -> bool:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False


class DispatchProtocol(asyncio.Protocol):
    """Decides per connection: WebSocket or plain HTTP.

    Args:
        websocket: Makes the protocol of a WebSocket connection.
        http: Makes the protocol of an HTTP connection.
        send_buffer_bytes: SO_SNDBUF of the socket (None: the kernel's default).
    """

    def __init__(
        self,
        websocket: Callable[[], asyncio.Protocol],
        http: Callable[[], asyncio.Protocol],
        send_buffer_bytes: int | None = None,
    ) -> None:
        self._send_buffer_bytes = send_buffer_bytes
        self._websocket = websocket
        self._http = http
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; uvloop's are not asyncio.Transport subclasses.
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if self._send_buffer_bytes is not None and sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_buffer_bytes)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        transport = self._transport
        if transport is None:
            return
        if end < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                transport.write(
                    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
                )
                transport.close()
            return
        head = bytes(self._buffer[:end])
        protocol = self._websocket() if _is_websocket(head) else self._http()
        data = bytes(self._buffer)
        self._buffer.clear()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(data)

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
