"""``HttpService``: an aiohttp application served on the server's own event loop.

Rules of this file:

* One service per server (scheduler or worker), started in the server's ``start`` and
  stopped in its shutdown; it shares the event loop, never a thread of its own.
* Port 0 means a free port, read back once bound (``port``, ``url``).
* A ``LoopLagMonitor`` runs beside it: how late the loop wakes up is the loop-blocked signal.
* Connections are capped and must send their headers in time (``shoal.http.guard``); the
  cap leaves file descriptors for comm (``shoal.fd_limit``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl

from aiohttp import web

from shoal.fd_limit import http_connection_limit
from shoal.http.guard import HEADER_TIMEOUT, ConnectionGuard, GuardedSite
from shoal.http.listen import service_url

logger = logging.getLogger("shoal.http")

#: seconds open connections (live streams) get to finish when the service stops
SHUTDOWN_TIMEOUT = 1.0
#: seconds an idle keep-alive connection stays open between requests
KEEPALIVE_TIMEOUT = 15.0


class LoopLagMonitor:
    """How late the event loop wakes up from a short sleep (0 when it is idle)."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        #: the latest measured lag (seconds)
        self.last = 0.0
        #: the largest lag since ``take_maximum`` was last called
        self.maximum = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.interval)
            lag = max(loop.time() - start - self.interval, 0.0)
            self.last = lag
            self.maximum = max(self.maximum, lag)

    def take_maximum(self) -> float:
        """The largest lag since the previous call; starts a new window."""
        value, self.maximum = self.maximum, self.last
        return value


class HttpService:
    """Serves an aiohttp application on ``host:port`` (0: a free port) on the running loop."""

    def __init__(
        self,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int | None = None,
        header_timeout: float = HEADER_TIMEOUT,
    ) -> None:
        self.host = host
        #: serve HTTPS with this context (a tls:// cluster serves no plain HTTP port)
        self.ssl_context = ssl_context
        #: caps open connections and times out slow headers
        self.guard = ConnectionGuard(
            max_connections if max_connections is not None else http_connection_limit(),
            header_timeout,
        )
        #: the bound port once started (the requested one before)
        self.port = port
        self.lag = LoopLagMonitor()
        #: the application served (once started)
        self.app: web.Application | None = None
        self._runner: web.AppRunner | None = None
        self._lag_task: asyncio.Task[None] | None = None

    async def start(self, app: web.Application, sock: socket.socket | None = None) -> None:
        """Serve ``app`` (on ``sock`` if given: bound and listening, see
        ``shoal.http.listen``); ``port`` holds the bound port afterwards."""
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            keepalive_timeout=KEEPALIVE_TIMEOUT,
        )
        await runner.setup()
        site = GuardedSite(runner, self.host, self.port, self.guard, self.ssl_context, sock)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.app = app
        self.port = int(runner.addresses[0][1])
        self._lag_task = asyncio.get_running_loop().create_task(self.lag.run(), name="loop-lag")

    async def stop(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag_task
            self._lag_task = None
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    @property
    def url(self) -> str:
        """``http(s)://host:port`` (a wildcard host shows as this machine's name)."""
        return service_url(self.host, self.port, self.ssl_context is not None)

    def __repr__(self) -> str:
        state = "serving" if self._runner is not None else "stopped"
        return f"<HttpService {self.url} {state}>"


__all__ = ["HttpService", "LoopLagMonitor"]
