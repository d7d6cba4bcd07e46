"""A test proxy that passes only whole responses, as buffering corporate proxies do."""

from __future__ import annotations

import asyncio
import contextlib
import re

from tests.support.proxy import Proxy

_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


class BufferingProxy(Proxy):
    """A :class:`Proxy` that also holds each response until it is complete.

    A response with a ``Content-Length`` is forwarded once all of it arrived (a
    long-poll answer, the 426 of ``/ws``); a streamed one (chunked, like an SSE
    stream) is held, and a connection holding a response longer than
    ``cut_after_s`` is cut (the proxy's response timeout).  Set ``buffering``
    False to pass responses as they come again.
    """

    def __init__(self, upstream_port: int, cut_after_s: float = 0.5) -> None:
        super().__init__(upstream_port)
        self.cut_after_s = cut_after_s
        self.cuts = 0
        self.buffering = True

    async def __aenter__(self) -> BufferingProxy:
        await super().__aenter__()
        return self

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rewrite: bool
    ) -> None:
        if rewrite or not self.buffering:
            await super()._pump(reader, writer, rewrite)
            return
        held = bytearray()
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while True:
                try:
                    async with asyncio.timeout(self.cut_after_s if held else None):
                        data = await reader.read(65536)
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
