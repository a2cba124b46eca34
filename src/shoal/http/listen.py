"""A listening socket for an HTTP service, made before aiohttp is imported.

A worker reports its HTTP port when it registers, but importing aiohttp and building the
application costs more than the rest of its start. So the port is bound (and listening)
first and served once the worker is registered; a request that arrives in between waits
in the socket's backlog and is answered then. A ``LocalCluster``'s scheduler does the
same: its dashboard (~0.3 s of aiohttp import on a cold start) is imported while the
worker processes start.

Rules of this file:

* No aiohttp here (importing this module must stay cheap).
* The socket is bound as asyncio's ``create_server`` would bind it (``SO_REUSEADDR``,
  IPv6 only for IPv6), and handed to it with ``sock=``.
"""

from __future__ import annotations

import logging
import socket

logger = logging.getLogger("shoal.http")

#: connections the kernel queues before the service accepts them
BACKLOG = 128


def split_address(address: str, default_host: str) -> tuple[str, int]:
    """``"127.0.0.1:8787"``, ``":8787"`` or ``"8787"`` -> (host, port); no host: default."""
    text = address.strip()
    if text.startswith(("http://", "https://")):
        text = text.split("://", 1)[1]
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or default_host
    try:
        return host, int(port)
    except ValueError:
        raise ValueError(f"not a host:port address for the dashboard: {address!r}") from None


def dashboard_socket(address: str, default_host: str) -> socket.socket:
    """The dashboard's listening socket at ``address``; a free port instead (with a
    warning) when the one asked for is taken."""
    host, port = split_address(address, default_host)
    try:
        return listening_socket(host, port)
    except OSError as exc:
        if port == 0:
            raise
        logger.warning("dashboard port %d is taken (%s); using a free port instead", port, exc)
        return listening_socket(host, 0)


def service_url(host: str, port: int, tls: bool) -> str:
    """``http(s)://host:port`` (a wildcard host shows as this machine's name)."""
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"


def listening_socket(host: str, port: int) -> socket.socket:
    """A non-blocking TCP socket bound to ``host:port`` (0: a free port), listening."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


__all__ = ["BACKLOG", "dashboard_socket", "listening_socket", "service_url", "split_address"]
