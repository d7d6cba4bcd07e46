"""Tokens and abuse limits on a node's two servers: the adapter of :mod:`slipstream.gate`.

The decisions are the pure gate's; this module only reads them off requests
and turns them into responses, close frames and metrics (docs/security.md):

* WebSocket (``broadcast/ws.py``): :meth:`Guard.admit` refuses the upgrade
  (HTTP 403 origin, 429 too many connections from the address); after the
  handshake :meth:`Guard.authenticate` checks the token (close 4001 / 4004).
  The fan core then checks each message (1009, 4029) and subscription (4030,
  4003, 4004) with the session's :class:`~slipstream.gate.SessionGate`, and the
  node closes it when its token expires (4004).
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
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from aiohttp import web
from websockets.http11 import Request

from broadcast.protocol import Subscribe
from slipstream.auth import AuthError, Grant
from slipstream.gate import Entry, Gate, Refusal
from slipstream.metrics import Registry
from slipstream.proxies import TrustedProxies

__all__ = [
    "COSTLY_PATHS",
    "GUARD_KEY",
    "Guard",
    "client_address",
    "is_operator_path",
    "is_telemetry_path",
    "request_grant",
    "scope_request",
]

logger = logging.getLogger(__name__)

_GRANT = web.RequestKey("slipstream.grant", Grant)
_CLIENT = web.RequestKey("slipstream.client", str)
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
        self.m_refused = registry.counter(
            "slipstream_refused_total",
            "Connections, polls and sessions refused or closed by auth and limits, by code",
        )

    # -- WebSocket ----------------------------------------------------------------

    def admit(self, peer: str, request: Request, now: float) -> tuple[str, Entry | Refusal]:
        """Check a WebSocket upgrade by origin and address (the fan's, behind a trusted proxy).

        Returns:
            The client's address, and its :class:`Entry` (give it back with
            ``gate.leave`` when the connection ends) or the :class:`Refusal`.
        """
        headers = request.headers
        address = self.proxies.client(
            peer,
            _joined(headers.get_all("Forwarded")),
            _joined(headers.get_all("X-Forwarded-For")),
        )
        answer = self.gate.check_request(address, headers.get("Origin"), now)
        if isinstance(answer, Refusal):
            self._refused(answer, address, request.path)
        return address, answer

    def authenticate(self, request: Request) -> Grant | None:
        """The token of an opened WebSocket (query ``token`` or ``Authorization``).

        Raises:
            AuthError: No valid token where one is needed (counted).
        """
        query = dict(parse_qsl(request.path.partition("?")[2]))
        try:
            return self.gate.authenticate(query, request.headers.get("Authorization"))
        except AuthError as exc:
            self.m_refused.inc(code=exc.code)
            raise

    def _refused(self, refusal: Refusal, address: str, path: str) -> None:
        self.m_refused.inc(code=refusal.code)
        logger.debug("refused %s from %s: %s", path, address, refusal.code)

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


def _joined(values: list[str]) -> str | None:
    return ", ".join(values) if values else None


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
