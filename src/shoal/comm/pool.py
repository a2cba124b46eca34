"""A pool of outgoing connections, reused per address, with a limit on how many are open.

Rules of this file:

* Every comm ``connect`` hands out counts against ``config.pool_limit`` until it is given
  back with ``reuse`` (closed ones are dropped then). Forgetting ``reuse`` leaks a slot.
* At the limit, an idle comm to another address is closed to make room; if there is none,
  ``connect`` waits for a comm to come back, first come first served.
* ``call`` is one rpc: a comm that saw an error, a cancellation or its deadline mid-call is
  aborted, never reused, since it may still carry half a conversation.
* Every call has a deadline: ``config.call_timeout`` unless the caller passes
  ``reply_timeout`` (None: wait forever, for calls that run user code of any length).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from typing import Any, TypeVar, cast

from shoal.comm.core import DEFAULT_CONFIG, Comm
from shoal.comm.rpc import exchange, unwrap_reply
from shoal.comm.security import Security
from shoal.comm.transports import connect
from shoal.config import CommConfig
from shoal.errors import CommClosedError
from shoal.protocol.rpc_base import Rpc

#: ``reply_timeout`` not given: the pool's ``config.call_timeout`` applies
CONFIGURED: Any = object()
#: the reply an rpc struct declares
R = TypeVar("R")


class ConnectionPool:
    """Outgoing connections for rpc, reused per address."""

    def __init__(
        self,
        *,
        security: Security,
        role: str,
        name: str = "",
        config: CommConfig = DEFAULT_CONFIG,
        deserialize_errors: bool = True,
    ) -> None:
        self.security = security
        self.role = role
        self.name = name
        self.config = config
        #: whether remote exceptions are unpickled (False: RemoteError from their text)
        self.deserialize_errors = deserialize_errors
        #: idle comms per address; addresses in least-recently-used order
        self._idle: OrderedDict[str, deque[Comm]] = OrderedDict()
        #: how many comms _idle holds in all
        self._n_idle = 0
        #: comms handed out and not yet given back
        self._busy: set[Comm] = set()
        #: connections being opened right now (they hold a slot)
        self._opening = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    @property
    def open(self) -> int:
        """Comms that count against the limit: idle, handed out, or being opened."""
        return self._n_idle + len(self._busy) + self._opening

    async def connect(self, address: str) -> Comm:
        """An idle comm to ``address``, or a new one; waits while the pool is full."""
        while True:
            self._check_open()
            comm = self._take_idle(address)
            if comm is not None:
                return comm
            if self.open < self.config.pool_limit or self._evict_idle():
                return await self._open_new(address)
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def reuse(self, address: str, comm: Comm) -> None:
        """Give a comm back; it stays open for the next ``connect`` unless it is closed."""
        self._busy.discard(comm)
        if self._closed:
            comm.abort()
        elif not comm.closed:
            self._idle.setdefault(address, deque()).append(comm)
            self._idle.move_to_end(address)
            self._n_idle += 1
        self._wake_one()

    async def call(
        self, address: str, rpc: Rpc[R], /, *, reply_timeout: float | None = CONFIGURED
    ) -> R:
        """One rpc: send the struct ``rpc``; return the result or raise the remote error.

        No reply within ``reply_timeout`` seconds (default ``config.call_timeout``) raises
        ``ShoalTimeoutError`` naming the peer and the op."""
        timeout = self.config.call_timeout if reply_timeout is CONFIGURED else reply_timeout
        comm = None if self._closed else self._take_idle(address)
        if comm is None:
            comm = await self.connect(address)
        try:
            reply = await exchange(comm, rpc.to_msg(), timeout)
        except BaseException:
            comm.abort()
            self.reuse(address, comm)
            raise
        self.reuse(address, comm)
        return cast(R, unwrap_reply(reply, deserialize=self.deserialize_errors))

    async def close(self) -> None:
        """Close every idle comm, abort those handed out, and refuse new connects."""
        self._closed = True
        idle = [comm for comms in self._idle.values() for comm in comms]
        self._idle.clear()
        self._n_idle = 0
        for comm in list(self._busy):
            comm.abort()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        await asyncio.gather(*(comm.close() for comm in idle), return_exceptions=True)

    # -- internals -------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise CommClosedError("the connection pool is closed")

    def _take_idle(self, address: str) -> Comm | None:
        comms = self._idle.get(address)
        while comms:
            comm = comms.pop()  # the most recently used is the most likely still alive
            self._n_idle -= 1
            if not comms:
                del self._idle[address]
            if not comm.closed:
                self._busy.add(comm)
                return comm
        return None

    def _evict_idle(self) -> bool:
        # the least recently used address gives up its oldest idle comm
        for address, comms in self._idle.items():
            comm = comms.popleft()
            self._n_idle -= 1
            if not comms:
                del self._idle[address]
            comm.abort()
            return True
        return False

    async def _open_new(self, address: str) -> Comm:
        self._opening += 1
        try:
            comm = await connect(
                address, security=self.security, role=self.role, name=self.name, config=self.config
            )
        except BaseException:
            self._opening -= 1
            self._wake_one()  # the slot we held is free again
            raise
        self._opening -= 1
        if self._closed:
            comm.abort()
            self._check_open()
        self._busy.add(comm)
        return comm

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
