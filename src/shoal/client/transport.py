"""How the client core talks to the cluster: one stream to the scheduler, rpc to anyone.

The core sees only the small ``Transport`` interface, so tests replace the network with
a fake that records what is sent and answers rpcs from a table.

Rules of this file:

* ``open`` registers the client on a fresh connection, then turns it into a batched
  stream; every batch the scheduler sends is handed to ``on_batch`` in one call, in order.
* A stream that ends while we did not close it is reported once through ``on_lost``.
* ``call`` raises the remote exception (original type, remote traceback) on an error reply.
* ``local_address`` (the same scheduler's ``inproc://`` address, on its own loop) carries
  the stream and every rpc to the scheduler; ``scheduler_address`` stays what is shown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from shoal.comm import BatchedStream, Comm, ConnectionPool, Security, connect, raise_remote
from shoal.comm.batched import UnencodableHandler
from shoal.comm.pool import CONFIGURED
from shoal.config import CommConfig
from shoal.errors import CommError, ProtocolError
from shoal.protocol.rpc_base import Rpc
from shoal.protocol.rpc_scheduler import SchedulerRegisterClient

logger = logging.getLogger("shoal.client")

Msg = dict[str, Any]
BatchHandler = Callable[[Sequence[Msg]], None]
LostHandler = Callable[[str], None]
#: the reply an rpc struct declares
R = TypeVar("R")


class Transport(Protocol):
    """What the client core needs from the network."""

    #: where the scheduler listens
    scheduler_address: str
    #: told of each message that cannot be encoded (the core fails its futures)
    on_unencodable: UnencodableHandler | None

    async def open(
        self, client_id: str, on_batch: BatchHandler, on_lost: LostHandler
    ) -> dict[str, Any]:
        """Register with the scheduler and start delivering its messages; its reply."""
        ...

    def send(self, *msgs: Msg, apart: bool = False) -> None:
        """Queue messages on the scheduler stream (never blocks); ``apart``: each in a
        frame set of its own (the parts of a big submission)."""
        ...

    def coalescing_interval(self) -> float:
        """Seconds within which messages sent go out together in one frame set."""
        ...

    async def call(
        self, address: str, rpc: Rpc[R], /, *, reply_timeout: float | None = CONFIGURED
    ) -> R:
        """One rpc to ``address``; the result, or the remote exception raised here.
        ``reply_timeout``: as ``ConnectionPool.call`` (None: wait as long as it takes)."""
        ...

    async def close(self) -> None:
        """Flush the stream and close every connection."""
        ...


class CommTransport:
    """The real transport: a ``BatchedStream`` to the scheduler and a ``ConnectionPool``."""

    def __init__(
        self,
        scheduler_address: str,
        security: Security,
        name: str,
        config: CommConfig,
        local_address: str | None = None,
    ) -> None:
        self.scheduler_address = scheduler_address
        #: where the scheduler is reached in fact (its inproc address, when it has one here)
        self._scheduler_route = local_address or scheduler_address
        self.security = security
        self.name = name
        self.config = config
        self.pool = ConnectionPool(security=security, role="client", name=name, config=config)
        self.on_unencodable: UnencodableHandler | None = None
        self._stream: BatchedStream | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def scheduler_route(self) -> str:
        """The address the scheduler is reached at: its inproc one, or ``scheduler_address``."""
        return self._scheduler_route

    async def open(
        self, client_id: str, on_batch: BatchHandler, on_lost: LostHandler
    ) -> dict[str, Any]:
        if self._stream is not None:  # reconnecting: the old stream ended
            self._stream.abort()
            self._stream = None
        comm = await connect(
            self._scheduler_route,
            security=self.security,
            role="client",
            name=self.name,
            config=self.config,
        )
        try:
            await comm.write(SchedulerRegisterClient(client=client_id).to_msg())
            reply = await comm.read()
        except BaseException:
            comm.abort()
            raise
        if not isinstance(reply, dict) or reply.get("status") != "OK":
            comm.abort()
            if isinstance(reply, dict) and reply.get("status") == "error":
                raise_remote(reply)
            raise ProtocolError(f"the scheduler refused the client: {reply!r:.200}")
        self._stream = BatchedStream(
            comm, interval=self.config.batch_interval, on_unencodable=self.on_unencodable
        )
        self._reader = asyncio.create_task(
            self._read(comm, on_batch, on_lost), name=f"client-stream {client_id}"
        )
        return reply

    async def _read(self, comm: Comm, on_batch: BatchHandler, on_lost: LostHandler) -> None:
        # the one top-level guard of the stream: a handler bug is logged, not fatal
        reason = "the scheduler closed the connection"
        try:
            while True:
                batch = await comm.read()
                try:
                    on_batch(batch if isinstance(batch, list | tuple) else (batch,))
                except Exception:
                    logger.exception("client failed to handle a batch from the scheduler")
        except CommError as exc:
            reason = str(exc)
        except Exception as exc:
            logger.exception("client stream from %s failed", self.scheduler_address)
            reason = f"{type(exc).__name__}: {exc}"
        if not self._closing:
            on_lost(reason)

    def send(self, *msgs: Msg, apart: bool = False) -> None:
        if self._stream is None:
            raise RuntimeError("the transport is not open")
        self._stream.send(*msgs, apart=apart)

    def coalescing_interval(self) -> float:
        return self.config.batch_interval

    async def call(
        self, address: str, rpc: Rpc[R], /, *, reply_timeout: float | None = CONFIGURED
    ) -> R:
        if address == self.scheduler_address:
            address = self._scheduler_route
        return await self.pool.call(address, rpc, reply_timeout=reply_timeout)

    async def close(self) -> None:
        self._closing = True
        if self._stream is not None and not self._stream.closed:
            await self._stream.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.wait([self._reader])
        await self.pool.close()
