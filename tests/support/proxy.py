"""The one TCP fault proxy of the tests: forwards loopback bytes and breaks them on demand.

A :class:`FaultProxy` listens on 127.0.0.1 and forwards each connection to an
upstream port.  Faults, as the peers see them:

* :meth:`FaultProxy.cut`: abort every open connection and refuse new ones
  (a node or broker that went away), or with ``hold=True`` hold new ones
  unanswered (a dead network, no refusal) until :meth:`FaultProxy.restore`;
* :meth:`FaultProxy.drop_all`: abort the open connections only;
* :attr:`FaultProxy.refuse`: refuse new connections, leave the open ones be;
* :attr:`FaultProxy.strip_upgrade`: remove ``Upgrade``/``Connection`` request
  headers, as some proxies do (the WebSocket handshake then fails);
* :attr:`FaultProxy.buffering` (with ``buffer_responses=True``): pass each
  HTTP response only once it is complete, as buffering corporate proxies do; a
  response held longer than ``cut_after_s`` (a stream) cuts the connection.

In front of ``TansuBroker(advertised_port=proxy.port)`` every Kafka client goes
through the proxy, and a cut of the proxy is an outage of the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import re

__all__ = ["FaultProxy"]

_CHUNK_BYTES = 65536
_UPGRADE = re.compile(rb"\r\n(Upgrade|Connection):[^\r\n]*", re.IGNORECASE)
_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


class FaultProxy:
    """A loopback TCP proxy that can break its connections (see module doc).

    Args:
        upstream_port: Port on 127.0.0.1 to forward to.
        port: Port to listen on (0: a free one).
        buffer_responses: Start with :attr:`buffering` on.
        cut_after_s: With buffering, longest a response may be held before the
            connection is cut (the proxy's response timeout).

    Attributes:
        accepted: Connections forwarded.
        refused: Connections refused (cut, :attr:`refuse`, or upstream down).
        aborted: Open connections aborted by :meth:`cut` and :meth:`drop_all`.
        cuts: Connections cut for holding a response longer than ``cut_after_s``.
    """

    def __init__(
        self,
        upstream_port: int,
        port: int = 0,
        *,
        buffer_responses: bool = False,
        cut_after_s: float = 0.5,
    ) -> None:
        if not 0 < upstream_port < 65536:
            raise ValueError(f"upstream_port must be in 1..65535, got {upstream_port}")
        self.upstream_port = upstream_port
        self.refuse = False
        self.strip_upgrade = False
        self.buffering = buffer_responses
        self.cut_after_s = cut_after_s
        self.accepted = 0
        self.refused = 0
        self.aborted = 0
        self.cuts = 0
        self._requested_port = port
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The port the proxy listens on."""
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_cut(self) -> bool:
        """Whether new connections are refused or held."""
        return self.refuse or not self._open.is_set()

    @property
    def open_connections(self) -> int:
        """Proxied connections open now."""
        return len(self._pairs)

    def upstream_ports(self) -> set[int]:
        """Local ports of the open connections to the upstream (as the upstream sees them)."""
        return {int(up.get_extra_info("sockname")[1]) for _, up in self._pairs}

    async def start(self) -> None:
        """Listen on 127.0.0.1."""
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self._requested_port, backlog=4096, reuse_address=True
        )

    async def stop(self) -> None:
        """Stop listening and abort every connection."""
        if self._server is not None:
            self._server.close()
        self._open.set()  # held handlers see the cut state and end
        self.refuse = True
        self.drop_all()
        # Aborted connections end their handlers; cancelling a handler instead
        # makes asyncio log its CancelledError.
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=5.0)
            for task in pending:
                task.cancel()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def cut(self, *, hold: bool = False) -> int:
        """Abort every open connection; refuse new ones, or hold them unanswered.

        Returns:
            How many connections were open.
        """
        if hold:
            self._open.clear()
        else:
            self.refuse = True
        return self.drop_all()

    def restore(self) -> None:
        """Accept and forward connections again (held ones go through)."""
        self.refuse = False
        self._open.set()

    def drop_all(self) -> int:
        """Abort every open connection (a network failure, as both peers see it)."""
        pairs = list(self._pairs)
        for down, up in pairs:
            down.transport.abort()
            up.transport.abort()
        self._pairs.clear()
        self.aborted += len(pairs)
        return len(pairs)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._forward(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._open.wait()
        if self.refuse or writer.transport.is_closing():
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            self.refused += 1
            writer.transport.abort()
            return
        if self.is_cut:  # cut while connecting upstream
            self.refused += 1
            writer.transport.abort()
            up_writer.transport.abort()
            return
        self.accepted += 1
        pair = (writer, up_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, request=True),
                self._pump(up_reader, writer, request=False),
            )
        finally:
            self._pairs.discard(pair)
            writer.transport.abort()
            up_writer.transport.abort()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, request: bool
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            if not request and self.buffering:
                await self._pump_whole_responses(reader, writer)
            else:
                while data := await reader.read(_CHUNK_BYTES):
                    if request and self.strip_upgrade:
                        data = _UPGRADE.sub(b"", data)
                    writer.write(data)
                    await writer.drain()
        # One side ended: end both (the other pump then sees EOF or an error).
        writer.transport.abort()

    async def _pump_whole_responses(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Forward responses with a Content-Length once complete; hold streamed ones."""
        held = bytearray()
        while True:
            try:
                async with asyncio.timeout(self.cut_after_s if held else None):
                    data = await reader.read(_CHUNK_BYTES)
            except TimeoutError:
                self.cuts += 1
                return
            if not data:
                return
            held += data
            while (end := held.find(b"\r\n\r\n")) >= 0:
                length = _LENGTH.search(bytes(held[: end + 2]))
                if length is None:
                    break  # streamed: hold it
                total = end + 4 + int(length.group(1))
                if len(held) < total:
                    break
                writer.write(bytes(held[:total]))
                del held[:total]
                await writer.drain()
