"""A tiny TCP proxy for tests: forwards bytes, can strip ``Upgrade`` and drop connections."""

from __future__ import annotations

import asyncio
import contextlib
import re

_UPGRADE = re.compile(rb"\r\n(Upgrade|Connection):[^\r\n]*", re.IGNORECASE)


class Proxy:
    """Listens on 127.0.0.1 (port 0) and forwards to ``upstream_port``.

    Attributes:
        strip_upgrade: Remove ``Upgrade``/``Connection`` headers from requests, as
            some proxies do (the WebSocket handshake then fails).
        refuse: Abort new connections at once (the node looks unreachable).
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.strip_upgrade = False
        self.refuse = False
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._upstream: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.drop_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def upstream_ports(self) -> set[int]:
        """Local ports of the proxy's open connections to the upstream (as it sees them)."""
        return {int(w.get_extra_info("sockname")[1]) for w in self._upstream}

    def drop_all(self) -> None:
        """Abort every proxied connection (a network failure, as the client sees it)."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.refuse:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        self._upstream.add(up_writer)
        t1 = asyncio.create_task(self._pump(reader, up_writer, rewrite=True))
        t2 = asyncio.create_task(self._pump(up_reader, writer, rewrite=False))
        self._tasks |= {t1, t2}
        await asyncio.wait({t1, t2}, return_when=asyncio.FIRST_COMPLETED)
        for w in (writer, up_writer):
            w.transport.abort()
            self._writers.discard(w)
        self._upstream.discard(up_writer)
        for t in (t1, t2):
            t.cancel()
            self._tasks.discard(t)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rewrite: bool
    ) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                if rewrite and self.strip_upgrade:
                    data = _UPGRADE.sub(b"", data)
                writer.write(data)
                await writer.drain()
