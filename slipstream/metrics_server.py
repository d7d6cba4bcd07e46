"""``/metrics`` on a port of its own, for stages that serve nothing else (the downsampler)."""

from __future__ import annotations

from aiohttp import web

from slipstream.errors import ConfigError
from slipstream.metrics import Registry

__all__ = ["MetricsServer"]


class MetricsServer:
    """Serves ``registry`` at ``http://host:port/metrics`` (port 0 picks one).

    Args:
        registry: What to render.
        host: Address to bind.
        port: Port to bind.
    """

    def __init__(self, registry: Registry, host: str = "127.0.0.1", port: int = 0) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Bind and serve.

        Raises:
            ConfigError: The address cannot be bound.
        """
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self.stop()
            raise ConfigError(
                f"cannot serve metrics on {self.host}:{self.port}: {exc.strerror or exc}; "
                "pick another --metrics-port"
            ) from None
        sockets = getattr(site._server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self.registry.render(), content_type="text/plain", charset="utf-8")
