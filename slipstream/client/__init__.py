"""The Python client of a Slipstream broadcast node (docs/clients.md).

``async with Client(url) as c: async for item in c`` (asyncio), or
``for item in SyncClient(url)`` (scripts, notebooks).  Items are typed:
:class:`FrameItem` (one car at one tick, values in channel units),
:class:`EventItem`, :class:`NoticeItem`, :class:`StateItem`.  A batch of
frames becomes a pandas DataFrame with :meth:`FrameBatch.to_pandas`.

It needs the core (catalogue, codecs) and the wire protocol's pure modules,
not the node: ``websockets`` and ``aiohttp`` as clients only.
"""

from __future__ import annotations

from broadcast.decoder import EventItem, FrameItem, Item, NoticeItem, StateItem
from broadcast.protocol import Cursor
from slipstream.client.connection import Client, ClientError
from slipstream.client.sync import SyncClient
from slipstream.client.table import FrameBatch

__all__ = [
    "Client",
    "ClientError",
    "Cursor",
    "EventItem",
    "FrameBatch",
    "FrameItem",
    "Item",
    "NoticeItem",
    "StateItem",
    "SyncClient",
]
