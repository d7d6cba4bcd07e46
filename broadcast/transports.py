"""What the client's transport ladder shares (WebSocket -> SSE -> long-poll).

The node's URLs from either form a user gives, the statuses and close codes that
retrying cannot fix, and the signals that move a client along the ladder.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "FATAL_CLOSE_CODES",
    "FATAL_STATUSES",
    "StreamRefused",
    "TryWebSocket",
    "UpgradeRefused",
    "node_urls",
]

#: HTTP statuses that retrying as is cannot fix (no or a bad token, out of scope).
FATAL_STATUSES = (401, 403)
#: Close codes that retrying as is cannot fix (docs/security.md).
FATAL_CLOSE_CODES = (4001, 4003, 4004)


class UpgradeRefused(Exception):
    """The node (or a proxy in front of it) refused the WebSocket upgrade."""


class TryWebSocket(Exception):
    """Time to try the WebSocket again from a lesser transport."""


class StreamRefused(Exception):
    """The event stream was refused, held back or cut before its first event."""


def node_urls(url: str) -> tuple[str, str]:
    """(HTTP base URL, WebSocket URL) of a node given either form."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    if scheme not in ("http", "https"):
        raise ValueError(f"expected an http(s):// or ws(s):// URL, got {url!r}")
    path = parts.path.rstrip("/")
    if path.endswith("/ws"):
        path = path[:-3]
    base = urlunsplit((scheme, parts.netloc, path, "", ""))
    ws = urlunsplit(("wss" if scheme == "https" else "ws", parts.netloc, path + "/ws", "", ""))
    return base, ws
