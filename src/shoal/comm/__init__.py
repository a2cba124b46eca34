"""Connections between shoal processes: transports, the handshake, pooling, rpc, batching.

Rules of this package: nothing is unpickled here, ever (``Serialized`` values travel opaque);
no peer is handed to user code before it passed the handshake; every error names its peer.
"""

from shoal.comm.addressing import (
    get_address_host,
    parse_address,
    parse_host_port,
    unparse_address,
    unparse_host_port,
)
from shoal.comm.batched import BatchedStream
from shoal.comm.core import Comm, Listener
from shoal.comm.pool import ConnectionPool
from shoal.comm.rpc import error_reply, exception_from_reply, ok_reply, raise_remote
from shoal.comm.security import Security
from shoal.comm.transports import connect, listen

__all__ = [
    "BatchedStream",
    "Comm",
    "ConnectionPool",
    "Listener",
    "Security",
    "connect",
    "error_reply",
    "exception_from_reply",
    "get_address_host",
    "listen",
    "ok_reply",
    "parse_address",
    "parse_host_port",
    "raise_remote",
    "unparse_address",
    "unparse_host_port",
]
