"""The synchronous client, for scripts and notebooks: ``for item in SyncClient(url)``.

It runs the asyncio :class:`~slipstream.client.connection.Client` on an event
loop in a background thread and hands items over through a bounded queue, so
it works where an event loop is already running (Jupyter) and where none is.
A refusal (see :class:`~slipstream.client.connection.Client`) yields the
``suspended`` state item, then raises :class:`ClientError`: a blocked script
has no other way to supply a new token.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

from broadcast.decoder import FrameItem, Item, StateItem
from slipstream.client.connection import Client, ClientError
from slipstream.client.table import FrameBatch

__all__ = ["SyncClient"]

_END = object()


class SyncClient:
    """A blocking iterator over a node's items; takes :class:`Client`'s arguments.

    Example::

        with SyncClient("http://127.0.0.1:8000", cars=[24], groups=["engine"]) as fan:
            df = fan.frames(100).to_pandas()

    Args:
        *args: Positional arguments of :class:`Client`.
        queue_items: Items held for a slow reader before the stream waits.
        **kwargs: Keyword arguments of :class:`Client`.
    """

    def __init__(self, *args: Any, queue_items: int = 10_000, **kwargs: Any) -> None:
        self._args, self._kwargs = args, kwargs
        Client(*args, **kwargs)  # check the arguments here, in the caller's thread
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_items)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Client | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._done = False

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._main, name="slipstream-client", daemon=True
            )
            self._thread.start()
            self._ready.wait()

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._pump())
        finally:
            loop.close()

    def _put(self, item: object) -> bool:
        """Hand ``item`` over, waiting while the queue is full; False once closed."""
        while not self._done:
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    async def _pump(self) -> None:
        client = Client(*self._args, **self._kwargs)
        self._client = client
        self._ready.set()
        loop = asyncio.get_running_loop()
        try:
            async for item in client:
                # A full queue blocks a worker thread, not this loop (pings go on).
                if not await loop.run_in_executor(None, self._put, item):
                    break
                if isinstance(item, StateItem) and item.refused:
                    await loop.run_in_executor(None, self._put, ClientError(item.detail))
                    break
        except BaseException as exc:  # handed to the reader, raised there
            await loop.run_in_executor(None, self._put, exc)
        finally:
            await client.close()
            await loop.run_in_executor(None, self._put, _END)

    @property
    def cursor(self) -> Any:
        """Race and last tick applied (see :attr:`Client.cursor`)."""
        return self._client.cursor if self._client is not None else None

    def __iter__(self) -> Iterator[Item]:
        self._start()
        while True:
            item = self._queue.get()
            if item is _END:
                self._done = True
                return
            if isinstance(item, BaseException):
                self._done = True
                raise item
            yield item  # type: ignore[misc]

    def frames(self, count: int, *, timeout_s: float | None = None) -> FrameBatch:
        """The next ``count`` frame items as a batch (``.to_pandas()``).

        Raises:
            TimeoutError: Fewer than ``count`` frames within ``timeout_s``.
            ClientError: The node refused.
        """
        if count < 1:
            raise ValueError("count must be at least 1")
        self._start()
        got: list[FrameItem] = []
        end = None if timeout_s is None else time.monotonic() + timeout_s
        while len(got) < count:
            wait_s = None if end is None else max(0.0, end - time.monotonic())
            try:
                item = self._queue.get(timeout=wait_s)
            except queue.Empty:
                raise TimeoutError(f"{len(got)} of {count} frames within {timeout_s} s") from None
            if item is _END:
                self._done = True
                break
            if isinstance(item, BaseException):
                self._done = True
                raise item
            if isinstance(item, FrameItem):
                got.append(item)
        return FrameBatch(tuple(got))

    def close(self) -> None:
        """Stop the stream (the node is told) and the background thread."""
        self._done = True
        loop, client = self._loop, self._client
        if loop is not None and client is not None and not loop.is_closed():
            # RuntimeError: the loop has ended already.
            with contextlib.suppress(RuntimeError, TimeoutError):
                asyncio.run_coroutine_threadsafe(client.close(), loop).result(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=10)
