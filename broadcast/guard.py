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
* Operator paths (per-fan details: ``/v1/sessions``): an operator token (401
  without a token, 403 with a fan token; loopback only when auth is off).
  Costly public paths (``/metrics``, ``/v1/race``) and operator paths are
  rate-limited per address (429).

Addresses: the peer's, or behind a trusted proxy (``--trusted-proxy``) the
fan's from ``Forwarded`` / ``X-Forwarded-For`` (:mod:`slipstream.proxies`);
the limits, the refusal log and :func:`client_address` all use it.
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
from slipstream.proxies import TrustedProxies

__all__ = [
    "COSTLY_PATHS",
    "GUARD_KEY",
    "Close",
    "Guard",
    "SessionGuard",
    "client_address",
    "is_operator_path",
    "is_telemetry_path",
    "scope_request",
]

logger = logging.getLogger(__name__)

_GRANT = web.RequestKey("slipstream.grant", Grant)
_CLIENT = web.RequestKey("slipstream.client", str)
Close = Callable[[int, str], None]
#: Public paths whose answer costs the node work per request (rate-limited per address).
COSTLY_PATHS = frozenset({"/metrics", "/v1/race"})


def is_telemetry_path(path: str) -> bool:
    """Whether an HTTP path serves telemetry (needs a token, counts against the limits)."""
    return path in ("/v1/poll", "/v1/stream") or path.startswith("/v1/stream/")


def is_operator_path(path: str) -> bool:
    """Whether an HTTP path shows per-fan details (needs an operator token)."""
    return path == "/v1/sessions" or path.startswith(("/v1/sessions/", "/v1/admin/"))


def client_address(request: web.Request) -> str:
    """The client's address of a request on a guarded app (the fan's, behind trusted proxies)."""
    return request.get(_CLIENT) or request.remote or ""


def _json_response(status: int, code: str, message: str) -> web.Response:
    body = json.dumps({"code": code, "message": message})
    return web.Response(status=status, text=body, content_type="application/json")


class Guard:
    """The gate of one node, wired to websockets and aiohttp.

    Args:
        gate: The decisions (an open gate lets everything through).
        registry: Where the refusal counters go.
        proxies: Peers whose ``Forwarded`` / ``X-Forwarded-For`` are believed.
    """

    def __init__(
        self, gate: Gate, registry: Registry, proxies: TrustedProxies | None = None
    ) -> None:
        self.gate = gate
        self.proxies = proxies or TrustedProxies()
        self._entries: dict[ServerConnection, Entry] = {}
        #: The client address of each WebSocket connection (the fan's behind a trusted proxy).
        self.addresses: dict[ServerConnection, str] = {}
        self.m_refused = registry.counter(
            "slipstream_refused_total",
            "Connections, polls and sessions refused or closed by auth and limits, by code",
        )

    # -- WebSocket ----------------------------------------------------------------

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """websockets' ``process_request``: refuse the upgrade by origin or address."""
        headers = request.headers
        address = self.proxies.client(
            _peer(connection.remote_address),
            _joined(headers.get_all("Forwarded")),
            _joined(headers.get_all("X-Forwarded-For")),
        )
        self.addresses[connection] = address
        answer = self.gate.check_request(
            address, headers.get("Origin"), asyncio.get_running_loop().time()
        )
        if isinstance(answer, Refusal):
            self._refused(answer, address, request.path)
            return connection.respond(answer.http_status, f"{answer.code}: {answer.message}\n")
        self._entries[connection] = answer
        return None

    def _refused(self, refusal: Refusal, address: str, path: str) -> None:
        self.m_refused.inc(code=refusal.code)
        logger.debug("refused %s from %s: %s", path, address, refusal.code)

    def release(self, connection: ServerConnection) -> None:
        """The connection ended (call for every connection, refused or not)."""
        self.addresses.pop(connection, None)
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
        """aiohttp middleware: origin, address, rate and token checks around guarded paths."""
        headers = request.headers
        address = self.proxies.client(
            request.remote or "",
            _joined(headers.getall("Forwarded", [])),
            _joined(headers.getall("X-Forwarded-For", [])),
        )
        request[_CLIENT] = address
        path = request.path
        now = asyncio.get_running_loop().time()
        operator = is_operator_path(path)
        if operator or path in COSTLY_PATHS:
            refusal = self.gate.check_costly(address, now)
            if refusal is None and operator:
                refusal = self.gate.check_operator(
                    address, request.query, headers.get("Authorization")
                )
                if refusal is not None:
                    logger.info("refused %s from %s: %s", path, address, refusal.code)
            if refusal is not None:
                self._refused(refusal, address, path)
                return _json_response(refusal.http_status, refusal.code, refusal.message)
            return await handler(request)
        if not is_telemetry_path(path):
            return await handler(request)
        answer = self.gate.check_request(address, headers.get("Origin"), now, poll=True)
        if isinstance(answer, Refusal):
            self._refused(answer, address, path)
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


def _joined(values: list[str]) -> str | None:
    return ", ".join(values) if values else None


def _peer(address: Any) -> str:
    if isinstance(address, tuple) and address:
        return str(address[0])
    return str(address or "")


GUARD_KEY = web.AppKey("slipstream.guard", Guard)


def scope_request(request: web.Request, sub: Subscribe) -> Subscribe:
    """``sub`` within the token of an HTTP request (unchanged on an unguarded app).

    Raises:
        web.HTTPForbidden: It names cars or groups the token does not grant.
    """
    guard = request.app.get(GUARD_KEY)
    return sub if guard is None else guard.scope_poll(request, sub)
