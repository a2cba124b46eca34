"""File descriptors: raise the soft limit at server start, and keep a reserve for comm.

A scheduler's connections to its workers and clients are file descriptors, and so is
every HTTP connection to its dashboard. With the common soft limit of 1,024 a thousand
idle dashboard connections were enough to stop new workers and clients from connecting.
So servers raise the soft ``RLIMIT_NOFILE`` to the hard limit when they start, and the
HTTP servers accept at most ``http_connection_limit()`` connections at once: never more
than half of what is left after ``COMM_RESERVE`` descriptors kept for comm.

Rules of this file:

* Raising the limit never fails a start: where it cannot be raised it stays as it is.
* Pure arithmetic (``connection_limit_for``) is apart from the ``resource`` calls.
"""

from __future__ import annotations

import contextlib

try:
    import resource
except ImportError:  # pragma: no cover - not on Windows
    resource = None  # type: ignore[assignment]

#: descriptors always left for comm (workers, clients, peers, spill files)
COMM_RESERVE = 512
#: most HTTP connections a server accepts at once, whatever the limit
MAX_HTTP_CONNECTIONS = 256
#: fewest HTTP connections allowed even when descriptors are scarce
MIN_HTTP_CONNECTIONS = 8
#: used when the hard limit is "unlimited"
_UNLIMITED_TARGET = 1 << 20


def open_file_limit() -> int | None:
    """The current soft limit on open files (None where it cannot be known)."""
    if resource is None:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def raise_open_file_limit() -> int | None:
    """Raise the soft limit on open files to the hard limit; the soft limit after."""
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return open_file_limit()


def connection_limit_for(soft_limit: int | None) -> int:
    """HTTP connections to allow with ``soft_limit`` open files (None: unknown)."""
    if soft_limit is None:
        return MAX_HTTP_CONNECTIONS
    spare = (soft_limit - COMM_RESERVE) // 2
    return max(MIN_HTTP_CONNECTIONS, min(MAX_HTTP_CONNECTIONS, spare))


def http_connection_limit() -> int:
    """HTTP connections this process may accept at once, after raising its limit."""
    return connection_limit_for(raise_open_file_limit())
