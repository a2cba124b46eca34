"""Helpers the comm tests share."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from shoal.comm import Comm, Listener, Security, connect, listen
from shoal.comm.core import DEFAULT_CONFIG
from shoal.config import CommConfig


@contextlib.asynccontextmanager
async def comm_pair(
    address: str,
    *,
    server_security: Security,
    client_security: Security | None = None,
    config: CommConfig = DEFAULT_CONFIG,
) -> AsyncIterator[tuple[Comm, Comm, Listener]]:
    """(client end, server end, listener) of one connection to a fresh listener at
    ``address``; all closed afterwards."""
    accepted: asyncio.Queue[Comm] = asyncio.Queue()
    listener = await listen(
        address, accepted.put, security=server_security, role="server", name="srv", config=config
    )
    try:
        client = await connect(
            listener.address,
            security=client_security or server_security,
            role="client",
            name="cli",
            config=config,
        )
        server = await accepted.get()
        try:
            yield client, server, listener
        finally:
            client.abort()
            server.abort()
    finally:
        await listener.stop()
