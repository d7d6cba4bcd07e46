"""WebSocket fans: a lean asyncio protocol around ``websockets``' sans-I/O core.

RFC 6455 is ``websockets``' :class:`~websockets.server.ServerProtocol`: it
parses the opening handshake and the client's frames, answers pings and
closes, and enforces the message size.  This adapter only moves bytes between
it, the socket and the fan's :class:`~broadcast.fan.Fan`:

* no task per connection: everything happens in the transport's callbacks;
* live ticks are written by the hub as shared, pre-framed bytes straight to
  the transport (a server frame is unmasked, so it is the same for every fan;
  the sans-I/O core keeps no state about the frames a server sends);
* flow control is the transport's: past ``max_send_buffer_bytes`` of unsent
  bytes ``pause_writing`` takes the fan out of the live stream, and
  ``resume_writing`` brings it back (``conflated`` notice + keyframe);
* keepalive is one task per node (:class:`WsServer`) that pings every
  connection once per ``ping_interval_s`` with one shared ping frame, spread
  over the interval, and closes (1011) those that did not answer the previous one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from typing import Any, cast

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from broadcast.fan import Fan
from broadcast.framing import ws_frame, ws_ping
from broadcast.guard import Guard
from broadcast.hub import Hub
from broadcast.protocol import CLOSE_SHUTDOWN, SUBPROTOCOL
from slipstream.auth import AuthError
from slipstream.gate import Entry, Refusal, close_reason

__all__ = ["WsConnection", "WsServer"]

logger = logging.getLogger(__name__)
_ws_logger = logging.getLogger("broadcast.websocket")

#: Every ping carries this payload (pongs are not matched: any pong shows life).
PING = ws_ping(b"slip")
#: How long a connection may take to send its opening handshake.
HANDSHAKE_TIMEOUT_S = 10.0
_CLOSE_INVALID_DATA = 1007
_CLOSE_PING_TIMEOUT = 1011


def _select_subprotocol(protocol: ServerProtocol, offered: Any) -> Subprotocol | None:
    # Accept clients that offer our subprotocol, and plain clients (browsers' tools).
    return Subprotocol(SUBPROTOCOL) if SUBPROTOCOL in offered else None


class WsServer:
    """The WebSocket side of a node: its connections and their keepalive."""

    def __init__(self, hub: Hub, guard: Guard) -> None:
        self.hub = hub
        self.guard = guard
        self.config = hub.config
        self.connections: set[WsConnection] = set()
        self._keepalive: asyncio.Task[None] | None = None
        self._all_gone = asyncio.Event()

    def protocol(self) -> WsConnection:
        """A protocol for a new connection (the dispatcher's factory)."""
        return WsConnection(self)

    def start(self) -> None:
        """Start the keepalive task (on the running loop)."""
        if self._keepalive is None:
            self._keepalive = asyncio.get_running_loop().create_task(
                self._keepalive_loop(), name="broadcast-ws-keepalive"
            )

    async def stop(self) -> None:
        """Tell every fan the node is stopping, close them, wait (bounded) for them to go."""
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        bye = self.hub.shutdown_notice()
        for conn in list(self.connections):
            if conn.fan is not None:
                conn.send(bye, None)
            conn.close(CLOSE_SHUTDOWN, "server shutting down; reconnect elsewhere")
        if self.connections:
            self._all_gone.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_gone.wait(), self.config.close_timeout_s)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()

    async def _keepalive_loop(self) -> None:
        interval = self.config.ping_interval_s
        steps = max(1, min(20, math.ceil(interval)))
        while True:
            conns = list(self.connections)
            per_step = max(1, math.ceil(len(conns) / steps))
            for i in range(steps):
                for conn in conns[i * per_step : (i + 1) * per_step]:
                    conn.keepalive()
                await asyncio.sleep(interval / steps)


class WsConnection(asyncio.Protocol):
    """One WebSocket connection (see module doc)."""

    __slots__ = (
        "_abort_handle",
        "_entry",
        "_fragments",
        "fan",
        "ping_outstanding",
        "protocol",
        "server",
        "transport",
    )

    def __init__(self, server: WsServer) -> None:
        self.server = server
        self.protocol = ServerProtocol(
            subprotocols=[Subprotocol(SUBPROTOCOL)],
            select_subprotocol=_select_subprotocol,
            max_size=server.config.max_message_bytes,
            logger=_ws_logger,
        )
        self.transport: asyncio.Transport | None = None
        self.fan: Fan | None = None
        self.ping_outstanding = False
        self._entry: Entry | None = None
        self._fragments: tuple[bool, list[bytes]] | None = None  # (text, parts)
        self._abort_handle: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        limit = self.server.config.max_send_buffer_bytes
        transport.set_write_buffer_limits(high=limit, low=limit // 2)
        self.server.connections.add(self)
        self._abort_after(HANDSHAKE_TIMEOUT_S)

    def data_received(self, data: bytes) -> None:
        protocol = self.protocol
        protocol.receive_data(data)
        events = protocol.events_received()
        self._flush()
        for event in events:
            if isinstance(event, Frame):
                self._frame(event)
            elif isinstance(event, Request):
                self._handshake(event)

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.receive_eof()
        server = self.server
        server.connections.discard(self)
        if not server.connections:
            server._all_gone.set()
        if self._abort_handle is not None:
            self._abort_handle.cancel()
            self._abort_handle = None
        fan, self.fan = self.fan, None
        if fan is not None:
            self.server.hub.fans.remove(fan)
        if self._entry is not None:
            self.server.guard.gate.leave(self._entry)
            self._entry = None
        self.transport = None

    def pause_writing(self) -> None:
        if self.fan is not None:
            self.server.hub.fans.pause(self.fan)

    def resume_writing(self) -> None:
        if self.fan is not None:
            self.server.hub.fans.resume(self.fan)

    # -- the fan's connection (hub.Connection) ------------------------------------------

    def send(self, message: bytes, event_id: str | None) -> None:
        """Write one server message as a binary frame."""
        transport = self.transport
        if transport is None or transport.is_closing() or self.protocol.state is not State.OPEN:
            return
        frame = ws_frame(message)
        transport.write(frame)
        self.server.hub.sent("ws", 1, len(frame))

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake; abort if it does not finish in ``close_timeout_s``."""
        fan = self.fan
        if fan is not None:
            fan.closed()
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(code, close_reason(reason))
            self._flush()
        elif self.protocol.state is State.CONNECTING and self.transport is not None:
            self.transport.abort()
            return
        self._abort_after(self.server.config.close_timeout_s)

    def keepalive(self) -> None:
        """Ping, or close a connection that did not answer the previous ping."""
        transport = self.transport
        if transport is None or self.fan is None or self.protocol.state is not State.OPEN:
            return
        if transport.is_closing():
            return
        if self.ping_outstanding:
            # Fail the connection (RFC 6455 7.1.7): a dead peer would not answer a close.
            if self.fan is not None:
                self.fan.closed()
            self.protocol.fail(_CLOSE_PING_TIMEOUT, "keepalive ping timeout")
            self._flush()
            transport.close()
            return
        self.ping_outstanding = True
        transport.write(PING)

    # -- internals -------------------------------------------------------------------

    def _abort_after(self, delay_s: float) -> None:
        if self._abort_handle is not None:
            self._abort_handle.cancel()
        transport = self.transport
        if transport is not None:
            self._abort_handle = asyncio.get_running_loop().call_later(delay_s, transport.abort)

    def _flush(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            self.protocol.data_to_send()  # nowhere to go
            return
        for data in self.protocol.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():
                try:
                    transport.write_eof()
                except Exception:  # uvloop may raise RuntimeError on a closing socket
                    transport.close()
            else:
                transport.close()
        if self.protocol.close_expected() and self._abort_handle is None:
            self._abort_after(self.server.config.close_timeout_s)

    def _handshake(self, request: Request) -> None:
        protocol = self.protocol
        server = self.server
        guard = server.guard
        loop = asyncio.get_running_loop()
        refusal = _check_path(request)
        address = _peer(self.transport)
        if refusal is None:
            address, answer = guard.admit(address, request, loop.time())
            if isinstance(answer, Refusal):
                refusal = (answer.http_status, f"{answer.code}: {answer.message}\n")
            else:
                self._entry = answer
        if refusal is not None:
            protocol.send_response(protocol.reject(*refusal))
            self._flush()
            return
        protocol.send_response(protocol.accept(request))
        self._flush()
        if protocol.state is not State.OPEN:
            return
        if self._abort_handle is not None:
            self._abort_handle.cancel()
            self._abort_handle = None
        try:
            grant = guard.authenticate(request)
        except AuthError as exc:
            self.close(exc.close_code, exc.message)
            return
        hub = server.hub
        fan = Fan(
            hub.fans,
            "ws",
            self.transport.write if self.transport is not None else None,
            guard.gate.session(grant, loop.time()),
            fan_id=secrets.token_hex(6),
            remote=address,
        )
        fan.owner = self
        self.fan = fan
        expires = None if grant is None else grant.expires_at
        hub.fans.add(fan, expires)
        hub.perform(fan, fan.open())

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.PONG:
            self.ping_outstanding = False
            return
        if opcode is Opcode.CLOSE:
            if self.fan is not None:
                self.fan.closed()
            return
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if not frame.fin:
                self._fragments = (opcode is Opcode.TEXT, [bytes(frame.data)])
                return
            data = bytes(frame.data)
            text = opcode is Opcode.TEXT
        elif opcode is Opcode.CONT and self._fragments is not None:
            text, parts = self._fragments
            parts.append(bytes(frame.data))
            if not frame.fin:
                return
            data = b"".join(parts)
            self._fragments = None
        else:
            return  # pings are answered by the protocol itself
        self._message(data, text)

    def _message(self, data: bytes, text: bool) -> None:
        fan = self.fan
        if fan is None:
            return
        message: str | bytes = data
        if text:
            try:
                message = data.decode()
            except UnicodeDecodeError:
                self.close(_CLOSE_INVALID_DATA, "invalid UTF-8 in a text message")
                return
        started = time.perf_counter()
        resumes = fan.resumes
        actions = fan.receive(message, asyncio.get_running_loop().time(), time.time())
        self.server.hub.perform(fan, actions, started if fan.resumes != resumes else None)


def _peer(transport: asyncio.BaseTransport | None) -> str:
    address = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(address, tuple) and address:
        return str(address[0])
    return str(address or "")


def _check_path(request: Request) -> tuple[int, str] | None:
    if request.path.split("?")[0] != "/ws":
        return 404, "WebSocket endpoint is /ws\n"
    offered = request.headers.get_all("Sec-WebSocket-Protocol")
    wanted = [p.strip() for value in offered for p in value.split(",")]
    if any(p.startswith("slipstream.") for p in wanted) and SUBPROTOCOL not in wanted:
        return 400, f"unsupported protocol version {wanted}; this node speaks {SUBPROTOCOL}\n"
    return None
