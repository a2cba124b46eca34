"""Driving the handshake over a fresh ``Comm`` (the pure messages are in protocol.handshake).

Rules of this file:

* Handshake frames are read while the comm still applies ``HANDSHAKE_LIMITS`` (one small
  frame) and are parsed as plain msgpack: a pickle here is a protocol error, never decoded.
* Only after the peer is verified does the comm switch to ``config.limits``.
* The server speaks first, so a silent peer costs nothing but the handshake deadline.
* Over TLS, the role a peer claims must be one its certificate allows (``check_peer_role``).
* Failures raise ``HandshakeError`` (not one of ours) or ``ProtocolError`` (not a
  handshake); the caller logs and aborts.
"""

from __future__ import annotations

import secrets
from typing import Any

from shoal._version import __version__
from shoal.comm.core import Comm
from shoal.comm.security import Security, check_peer_role
from shoal.config import CommConfig
from shoal.errors import ProtocolError
from shoal.protocol import handshake as hs

#: sent in every greeting (a constant: no ``importlib.metadata`` on a worker's start)
SHOAL_VERSION = __version__


def _greeting(role: str, name: str) -> hs.Greeting:
    return hs.Greeting(
        hs.PROTOCOL_VERSION, SHOAL_VERSION, role, name, secrets.token_bytes(hs.NONCE_BYTES)
    )


async def _read_message(comm: Comm) -> dict[str, Any]:
    frames = await comm.read_frames()
    if len(frames) != 1:  # the decoder's limits already ensure this; belt and braces
        raise ProtocolError(f"handshake frame set has {len(frames)} frames")
    return hs.decode(frames[0])


async def _write_message(comm: Comm, msg: dict[str, Any]) -> None:
    await comm.write_frames([hs.encode(msg)])


def _peer_info(greeting: hs.Greeting, cert_roles: frozenset[str] | None) -> dict[str, Any]:
    return {
        "role": greeting.role,
        "name": greeting.name,
        "version": greeting.shoal,
        "protocol": greeting.protocol,
        # the roles its TLS certificate allows; None: no TLS, or a certificate without roles
        "cert_roles": None if cert_roles is None else sorted(cert_roles),
    }


async def client_handshake(
    comm: Comm, *, security: Security, role: str, name: str, config: CommConfig
) -> None:
    """Answer the server's hello; return once it welcomed (and, with a token, proved) us."""
    who = f"the server at {comm.peer_address}"
    hello = hs.parse_hello(await _read_message(comm), who)
    hs.check_hello_auth(hello, security.token, who)
    cert_roles = check_peer_role(comm.peer_certificate, hello.greeting.role, who)
    ours = _greeting(role, name)
    await _write_message(comm, hs.make_auth(ours, hello, security.token))
    hs.check_welcome(await _read_message(comm), hello, ours, security.token, who)
    comm.peer_info = _peer_info(hello.greeting, cert_roles)
    comm.authenticated(config.limits)


async def server_handshake(
    comm: Comm, *, security: Security, role: str, name: str, config: CommConfig
) -> None:
    """Greet a new peer and verify its answer; ``HandshakeError`` if it is not ours (the
    caller logs it, then tells the peer with ``reject_peer``)."""
    ours = _greeting(role, name)
    await _write_message(comm, hs.make_hello(ours, auth=security.require_auth))
    who = f"the client at {comm.peer_address}"
    auth = hs.parse_auth(await _read_message(comm), who)
    hs.verify_auth(auth, ours, security.token)
    cert_roles = check_peer_role(comm.peer_certificate, auth.greeting.role, who)
    comm.peer_info = _peer_info(auth.greeting, cert_roles)
    # switch limits before the welcome leaves: the client may write as soon as it has it
    comm.authenticated(config.limits)
    await _write_message(comm, hs.make_welcome(ours, auth, security.token))


async def reject_peer(comm: Comm, reason: str) -> None:
    """Tell a peer that failed ``server_handshake`` why, and close (best effort: the peer
    may already be gone)."""
    try:
        await _write_message(comm, hs.make_reject(reason))
        await comm.close()
    except Exception:
        comm.abort()
