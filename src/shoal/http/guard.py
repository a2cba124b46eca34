"""HTTP connections are capped in number and must send their headers in time.

aiohttp keeps an idle connection open for an hour and waits for headers forever, so a
few thousand idle or slowloris connections could take every file descriptor of a
scheduler. ``GuardedSite`` serves an aiohttp runner like ``web.TCPSite`` but wraps each
connection's protocol: at ``max_connections`` a new connection takes the place of the
oldest one still waiting for its first request headers (an idle or slowloris peer), or,
when every open connection has sent a request, is closed at once; and a connection
whose request headers have not all arrived within ``header_timeout`` seconds is closed.
So a flood of idle connections cannot keep a real request (``/health``) out.

Rules of this file:

* Only the first request's headers are timed (the end of headers, ``\\r\\n\\r\\n``, is
  looked for in the bytes as they arrive); afterwards aiohttp's keep-alive timeout
  applies. Streams (server-sent events) thus stay open as long as they are read.
* The wrapper only forwards asyncio callbacks; aiohttp's handler writes to the transport
  itself.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import Any

from aiohttp import web

#: seconds a new connection has to send its request headers
HEADER_TIMEOUT = 10.0
_END_OF_HEADERS = b"\r\n\r\n"


class ConnectionGuard:
    """Counts open connections and refuses those beyond ``max_connections``."""

    def __init__(self, max_connections: int, header_timeout: float = HEADER_TIMEOUT) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        #: connections accepted and not yet closed
        self.open = 0
        #: connections closed at once because ``max_connections`` were open
        self.refused = 0
        #: connections closed because their headers were late
        self.timed_out = 0
        #: connections closed to make room while they still had sent no request
        self.evicted = 0
        #: open connections still waiting for their first headers, oldest first
        self.waiting: dict[_GuardedProtocol, None] = {}

    def make_room(self) -> bool:
        """Whether a new connection may be accepted (closing the oldest waiting one when
        at the cap)."""
        if self.open < self.max_connections:
            return True
        if not self.waiting:
            return False
        oldest = next(iter(self.waiting))
        self.evicted += 1
        oldest.abort()
        return True

    def protocol(self, make_handler: Callable[[], Any]) -> asyncio.Protocol:
        return _GuardedProtocol(self, make_handler)


class _GuardedProtocol(asyncio.Protocol):
    def __init__(self, guard: ConnectionGuard, make_handler: Callable[[], Any]) -> None:
        self._guard = guard
        self._make_handler = make_handler
        self._inner: Any = None
        self._transport: asyncio.BaseTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guard = self._guard
        if not guard.make_room():
            guard.refused += 1
            transport.abort()  # type: ignore[attr-defined]
            return
        guard.open += 1
        guard.waiting[self] = None
        self._transport = transport
        self._inner = self._make_handler()
        self._inner.connection_made(transport)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(guard.header_timeout, self._headers_late)

    def _headers_late(self) -> None:
        self._guard.timed_out += 1
        self.abort()

    def abort(self) -> None:
        """Close at once, before its first request was read."""
        self._stop_waiting()
        if self._transport is not None:
            self._transport.abort()  # type: ignore[attr-defined]

    def _stop_waiting(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._guard.waiting.pop(self, None)

    def data_received(self, data: bytes) -> None:
        if self._timer is not None:  # still waiting for the end of the first headers
            window = self._tail + data
            if _END_OF_HEADERS in window:
                self._stop_waiting()
            self._tail = window[-(len(_END_OF_HEADERS) - 1) :]
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._inner is None:
            return None
        result: bool | None = self._inner.eof_received()
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        if self._inner is not None:
            self._guard.open -= 1
            inner, self._inner = self._inner, None
            inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


class GuardedSite(web.BaseSite):
    """``web.TCPSite`` with a ``ConnectionGuard`` around every connection."""

    __slots__ = ("_guard", "_host", "_port", "_sock")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        guard: ConnectionGuard,
        ssl_context: ssl.SSLContext | None = None,
        sock: socket.socket | None = None,
    ):
        """Serve on ``host:port``, or on ``sock`` (already bound and listening) if given."""
        super().__init__(runner, ssl_context=ssl_context)
        self._host = host
        self._port = port
        self._guard = guard
        self._sock = sock

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        guard = self._guard
        loop = asyncio.get_running_loop()
        if self._sock is not None:
            self._server = await loop.create_server(
                lambda: guard.protocol(server), sock=self._sock, ssl=self._ssl_context
            )
            return
        self._server = await loop.create_server(
            lambda: guard.protocol(server), self._host or None, self._port, ssl=self._ssl_context
        )
