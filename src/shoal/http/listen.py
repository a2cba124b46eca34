"""A listening socket for an HTTP service, made before aiohttp is imported.

A worker reports its HTTP port when it registers, but importing aiohttp and building the
application costs more than the rest of its start. So the port is bound (and listening)
first and served once the worker is registered; a request that arrives in between waits
in the socket's backlog and is answered then.

Rules of this file:

* No aiohttp here (importing this module must stay cheap).
* The socket is bound as asyncio's ``create_server`` would bind it (``SO_REUSEADDR``,
  IPv6 only for IPv6), and handed to it with ``sock=``.
"""

from __future__ import annotations

import socket

#: connections the kernel queues before the service accepts them
BACKLOG = 128


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


__all__ = ["BACKLOG", "listening_socket"]
