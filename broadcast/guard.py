"""Tokens and abuse limits on a node's two servers: the adapter of :mod:`slipstream.gate`.

The decisions are the pure gate's; this module only reads them off requests
and turns them into responses, close frames and metrics (docs/security.md):

* WebSocket: :meth:`Guard.process_request` refuses the upgrade (HTTP 403
  origin, 429 too many connections from the address); after the handshake
  :meth:`Guard.open_session` checks the token (close 4001 / 4004); the
  :class:`SessionGuard` then checks each message (1009, 4029), each
  subscription (4030, 4003, 4004) and closes the session when its token
  expires (4004).  :meth:`Guard.release` gives back the address slot.
* HTTP telemetry (long-poll ``/v1/poll``, event streams ``/v1/stream`` and their
  control ``POST /v1/stream/{id}/subscribe``): :meth:`Guard.install` adds a
  middleware that checks origin, address, request rate and token (403, 429,
  401); the handlers call :func:`scope_request` on the parsed subscription (403
  outside the token's scope).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from broadcast.protocol import Subscribe
from slipstream.auth import CLOSE_TOKEN_EXPIRED, AuthError, Grant
from slipstream.gate import Entry, Gate, Refusal, SessionGate, close_reason
from slipstream.limits import Breach
from slipstream.metrics import Registry

__all__ = [
    "GUARD_KEY",
    "Close",
    "Guard",
    "SessionGuard",
    "is_telemetry_path",
    "request_grant",
    "scope_request",
]

logger = logging.getLogger(__name__)

_GRANT = web.RequestKey("slipstream.grant", Grant)
Close = Callable[[int, str], None]


def is_telemetry_path(path: str) -> bool:
    """Whether an HTTP path serves telemetry (needs a token, counts against the limits)."""
    return path in ("/v1/poll", "/v1/stream") or path.startswith("/v1/stream/")


def _json_response(status: int, code: str, message: str) -> web.Response:
    body = json.dumps({"code": code, "message": message})
    return web.Response(status=status, text=body, content_type="application/json")


class Guard:
    """The gate of one node, wired to websockets and aiohttp.

    Args:
        gate: The decisions (an open gate lets everything through).
        registry: Where the refusal counters go.
    """

    def __init__(self, gate: Gate, registry: Registry) -> None:
        self.gate = gate
        self._entries: dict[ServerConnection, Entry] = {}
        self.m_refused = registry.counter(
            "slipstream_refused_total",
            "Connections, polls and sessions refused or closed by auth and limits, by code",
        )

    # -- WebSocket ----------------------------------------------------------------

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """websockets' ``process_request``: refuse the upgrade by origin or address."""
        address = _peer(connection.remote_address)
        answer = self.gate.check_request(
            address, request.headers.get("Origin"), asyncio.get_running_loop().time()
        )
        if isinstance(answer, Refusal):
            self.m_refused.inc(code=answer.code)
            return connection.respond(answer.http_status, f"{answer.code}: {answer.message}\n")
        self._entries[connection] = answer
        return None

    def release(self, connection: ServerConnection) -> None:
        """The connection ended (call for every connection, refused or not)."""
        entry = self._entries.pop(connection, None)
        if entry is not None:
            self.gate.leave(entry)

    async def open_session(self, connection: ServerConnection) -> SessionGuard | None:
        """Check the token of an open connection; None (and closed) when refused."""
        request = connection.request
        assert request is not None
        query = dict(parse_qsl(request.path.partition("?")[2]))
        try:
            grant = self.gate.authenticate(query, request.headers.get("Authorization"))
        except AuthError as exc:
            self.m_refused.inc(code=exc.code)
            await connection.close(exc.close_code, close_reason(exc.message))
            return None
        loop = asyncio.get_running_loop()
        return SessionGuard(self.gate.session(grant, loop.time()), self.m_refused.inc)

    # -- HTTP (long-poll, event streams) -------------------------------------------------

    def install(self, app: web.Application) -> None:
        """Guard ``app``'s telemetry paths (before the app is started)."""
        app[GUARD_KEY] = self
        app.middlewares.append(self.middleware)

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """aiohttp middleware: origin, address, rate and token checks around telemetry paths."""
        if not is_telemetry_path(request.path):
            return await handler(request)
        answer = self.gate.check_request(
            request.remote or "",
            request.headers.get("Origin"),
            asyncio.get_running_loop().time(),
            poll=True,
        )
        if isinstance(answer, Refusal):
            self.m_refused.inc(code=answer.code)
            return _json_response(answer.http_status, answer.code, answer.message)
        try:
            try:
                grant = self.gate.authenticate(request.query, request.headers.get("Authorization"))
            except AuthError as exc:
                self.m_refused.inc(code=exc.code)
                return _json_response(exc.http_status, exc.code, exc.message)
            if grant is not None:
                request[_GRANT] = grant
            return await handler(request)
        finally:
            self.gate.leave(answer)

    def scope_poll(self, request: web.Request, sub: Subscribe) -> Subscribe:
        """``sub`` within the poll's token.

        Raises:
            web.HTTPForbidden: It names cars or groups the token does not grant.
        """
        grant = request.get(_GRANT)
        try:
            cars, groups = self.gate.scope(grant, sub.cars, sub.groups)
        except AuthError as exc:
            self.m_refused.inc(code=exc.code)
            raise web.HTTPForbidden(
                text=json.dumps({"code": exc.code, "message": exc.message}),
                content_type="application/json",
            ) from None
        return dataclasses.replace(sub, cars=cars, groups=groups)


class SessionGuard:
    """Limits and token of one WebSocket session.

    Args:
        gate: The session's pure gate.
        count: Counts a refusal by code (``Counter.inc``).
    """

    def __init__(self, gate: SessionGate, count: Callable[..., None]) -> None:
        self.gate = gate
        self._count = count
        self._timer: asyncio.TimerHandle | None = None
        self.closing = False

    def _breach(self, breach: Breach, close: Close) -> None:
        if not self.closing:
            self.closing = True
            self._count(code=str(breach.close_code))
            close(breach.close_code, close_reason(breach.reason))

    def start(self, close: Close) -> None:
        """Close the session with 4004 when its token expires."""
        left = self.gate.expires_in(time.time())
        if left is not None:
            expired = Breach(
                CLOSE_TOKEN_EXPIRED, "token expired; reconnect with a fresh token and your cursor"
            )
            self._timer = asyncio.get_running_loop().call_later(
                max(0.0, left), self._breach, expired, close
            )

    def stop(self) -> None:
        """The session ended: forget the expiry timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def message(self, data: str | bytes, close: Close) -> bool:
        """Whether a client message may be handled (else the session is being closed)."""
        if self.closing:
            return False
        breach = self.gate.on_message(len(data), asyncio.get_running_loop().time())
        if breach is None:
            return True
        self._breach(breach, close)
        return False

    def subscribe(self, sub: Subscribe, close: Close) -> Subscribe | None:
        """``sub`` within the token, or None (and the session is being closed)."""
        if self.closing:
            return None
        scoped = self.gate.on_subscribe(
            sub.cars, sub.groups, asyncio.get_running_loop().time(), time.time()
        )
        if isinstance(scoped, Breach):
            self._breach(scoped, close)
            return None
        return dataclasses.replace(sub, cars=scoped[0], groups=scoped[1])


def _peer(address: Any) -> str:
    if isinstance(address, tuple) and address:
        return str(address[0])
    return str(address or "")


GUARD_KEY = web.AppKey("slipstream.guard", Guard)


def request_grant(request: web.Request) -> Grant | None:
    """The token grant the middleware found on a telemetry request (None: no token)."""
    return request.get(_GRANT)


def scope_request(request: web.Request, sub: Subscribe) -> Subscribe:
    """``sub`` within the token of an HTTP request (unchanged on an unguarded app).

    Raises:
        web.HTTPForbidden: It names cars or groups the token does not grant.
    """
    guard = request.app.get(GUARD_KEY)
    return sub if guard is None else guard.scope_poll(request, sub)
