"""TCP keepalive and ``TCP_USER_TIMEOUT`` on a socket, so dead peers are noticed.

Without them an idle connection to a host that vanished (power loss, partition) stays
"open" forever, and data sent into it is retransmitted for ~15 minutes before the kernel
gives up. With them the kernel drops such a connection within
``idle + interval * count`` seconds when idle, or ``user_timeout`` seconds once data is
unacknowledged; the comm then reads as broken.

Rules of this file:

* Options a platform lacks are skipped (``TCP_KEEPIDLE`` is Linux/BSD, ``TCP_KEEPALIVE``
  macOS, ``TCP_USER_TIMEOUT`` Linux only); setting one never fails the connection.
* Only TCP sockets (AF_INET, AF_INET6) are touched.
"""

from __future__ import annotations

import contextlib
import socket
import sys

from shoal.config import TCPKeepalive

_TCP_FAMILIES = (socket.AF_INET, socket.AF_INET6)


def set_keepalive(sock: socket.socket, settings: TCPKeepalive) -> None:
    """Turn keepalive on for ``sock`` with ``settings``; a no-op on non-TCP sockets."""
    if sock.family not in _TCP_FAMILIES:
        return
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    idle_option = getattr(socket, "TCP_KEEPIDLE", None)
    if idle_option is None and sys.platform == "darwin":
        idle_option = getattr(socket, "TCP_KEEPALIVE", None)
    if idle_option is not None:
        options.append((socket.IPPROTO_TCP, idle_option, _whole_seconds(settings.idle)))
    if hasattr(socket, "TCP_KEEPINTVL"):
        interval = _whole_seconds(settings.interval)
        options.append((socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval))
    if hasattr(socket, "TCP_KEEPCNT"):
        options.append((socket.IPPROTO_TCP, socket.TCP_KEEPCNT, max(1, settings.count)))
    user_timeout = getattr(socket, "TCP_USER_TIMEOUT", None)
    if user_timeout is not None and settings.user_timeout > 0:
        options.append((socket.IPPROTO_TCP, user_timeout, int(settings.user_timeout * 1000)))
    for level, option, value in options:
        with contextlib.suppress(OSError):
            sock.setsockopt(level, option, value)


def _whole_seconds(seconds: float) -> int:
    return max(1, round(seconds))
