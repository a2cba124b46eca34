"""``connect`` and ``listen``: pick the transport by scheme, then run the handshake.

Rules of this file:

* A comm is handed out only after the handshake passed; the deadline
  (``config.connect_timeout``) covers opening the connection and the handshake together.
* Errors name the address: ``CommBrokenError`` when it cannot be reached,
  ``ShoalTimeoutError`` after the deadline, ``HandshakeError`` when the peer is not ours.
* Running without authentication is allowed, never the default, and always logged loudly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from shoal.comm.accept import Acceptor
from shoal.comm.addressing import parse_address
from shoal.comm.core import DEFAULT_CONFIG, Comm, Listener
from shoal.comm.handshake import client_handshake
from shoal.comm.inproc import inproc_connect, inproc_listen
from shoal.comm.security import Security, warn_no_auth
from shoal.comm.tcp import tcp_connect, tcp_listen
from shoal.comm.tls import tls_connect, tls_listen
from shoal.config import CommConfig
from shoal.errors import CommBrokenError, HandshakeError, ProtocolError, ShoalTimeoutError

Opener = Callable[[str, Security, str], Awaitable[Comm]]


async def _plain_tcp(loc: str, security: Security, role: str) -> Comm:
    return await tcp_connect(loc)


async def _inproc(loc: str, security: Security, role: str) -> Comm:
    return await inproc_connect(loc)


_CONNECTORS: dict[str, Opener] = {"tcp": _plain_tcp, "tls": tls_connect, "inproc": _inproc}
_LISTENERS = {"tcp": tcp_listen, "tls": tls_listen, "inproc": inproc_listen}
#: schemes that leave the process unencrypted (refused under ``require_encryption``)
_PLAIN = frozenset({"tcp"})
_warned_no_auth_client = False


def _scheme(address: str, table: Mapping[str, object]) -> tuple[str, str]:
    scheme, loc = parse_address(address)
    if scheme not in table:
        raise ValueError(f"unknown transport {scheme!r} in {address!r} (known: {sorted(table)})")
    return scheme, loc


def _check_security(security: Security, scheme: str, address: str) -> None:
    if security.require_encryption and scheme in _PLAIN:
        raise ValueError(
            f"{address!r} is a plain {scheme}:// address, but this Security requires "
            f"encryption: use tls://{parse_address(address)[1]}"
        )


async def connect(
    address: str,
    *,
    security: Security,
    role: str,
    name: str = "",
    config: CommConfig = DEFAULT_CONFIG,
) -> Comm:
    """An authenticated comm to ``address``."""
    global _warned_no_auth_client
    scheme, loc = _scheme(address, _CONNECTORS)
    _check_security(security, scheme, address)
    if not security.require_auth and not _warned_no_auth_client:
        _warned_no_auth_client = True
        warn_no_auth(f"this {role or 'client'}'s connection to {address}")
    timeout = config.connect_timeout
    try:
        return await asyncio.wait_for(
            _connect(_CONNECTORS[scheme], loc, security, role, name, config), timeout
        )
    except asyncio.TimeoutError:
        # a TLS server waits for a TLS hello, a plain client for the shoal hello: both wait
        hint = " (if it serves TLS, use its tls:// address)" if scheme == "tcp" else ""
        raise ShoalTimeoutError(
            f"timed out connecting to {address} after {timeout}s{hint}"
        ) from None


async def _connect(
    opener: Opener,
    loc: str,
    security: Security,
    role: str,
    name: str,
    config: CommConfig,
) -> Comm:
    comm = await opener(loc, security, role)
    comm.set_keepalive(config.keepalive)
    try:
        await client_handshake(comm, security=security, role=role, name=name, config=config)
    except ProtocolError as exc:
        comm.abort()
        raise HandshakeError(f"{comm.peer_address} does not speak shoal: {exc}") from None
    except BaseException:
        comm.abort()
        raise
    return comm


async def listen(
    address: str,
    handler: Callable[[Comm], Awaitable[None]],
    *,
    security: Security,
    role: str,
    name: str = "",
    config: CommConfig = DEFAULT_CONFIG,
) -> Listener:
    """Accept connections on ``address``; run ``handler`` on each authenticated one."""
    scheme, loc = _scheme(address, _LISTENERS)
    _check_security(security, scheme, address)
    acceptor = Acceptor(handler, security=security, role=role, name=name, config=config)
    try:
        listener = await _LISTENERS[scheme](loc, acceptor)
    except OSError as exc:
        raise CommBrokenError(f"cannot listen on {address}: {exc}") from exc
    if not security.require_auth:
        warn_no_auth(f"{role or 'listener'} {listener.address}")
    return listener
