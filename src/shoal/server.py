"""``Server``: the base of every shoal process that listens (scheduler, worker, nanny).

Rules of this file:

* Requests are ``{"op": name, **kwargs}``; the handler ``handlers[name](comm=comm, **kwargs)``
  (sync or async) answers with ``ok_reply(result)``, or ``error_reply(exc)`` if it raised.
  ``"reply": False`` in a request means no answer is sent. A handler's exception is data for
  the caller, never the server's end.
* A peer that sends something that is not a request (not a map, no ``op``) is logged and
  its connection closed; every other connection is untouched.
* A handler that returns ``Server.TOOK_COMM`` owns the comm from then on: the server stops
  reading it and will not close it. One that returns ``Server.REPLIED`` has written its
  answer itself (``Server._reply``), e.g. to hold a resource until it is sent; the server
  reads on.
* Streams (``handle_stream``) carry batches of ``{"op": ...}`` messages with no replies;
  ``on_batch_end`` runs once per batch so a shell can feed its state machine once per batch.
* Every background task runs under one guard (``background``): an unexpected exception is
  logged and then closes the server cleanly. Nothing fails silently, nothing half-runs.
* ``close`` is graceful and idempotent: stop listening, stop background tasks, close the
  pool and every connection still served, then end the handler tasks.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, ClassVar, Literal, TypeVar

from shoal.comm.core import DEFAULT_CONFIG, Comm, Listener
from shoal.comm.hostaddr import contact_address
from shoal.comm.pool import ConnectionPool
from shoal.comm.rpc import error_reply, ok_reply
from shoal.comm.security import Security
from shoal.comm.transports import listen
from shoal.config import CommConfig
from shoal.errors import CommBrokenError, CommClosedError, CommError
from shoal.fd_limit import raise_open_file_limit

logger = logging.getLogger("shoal.server")

_S = TypeVar("_S", bound="Server")
ServerStatus = Literal["init", "running", "closing", "closed"]


class _TookComm:
    def __repr__(self) -> str:
        return "Server.TOOK_COMM"


class _Replied:
    def __repr__(self) -> str:
        return "Server.REPLIED"


def _describe(msg: object) -> str:
    text = repr(msg)
    return text if len(text) <= 120 else text[:117] + "..."


class Server:
    """Listens, answers rpc requests by op name, and runs guarded background tasks."""

    #: returned by a handler that keeps the comm for itself
    TOOK_COMM: ClassVar[object] = _TookComm()
    #: returned by a handler that has written its reply itself
    REPLIED: ClassVar[object] = _Replied()

    def __init__(
        self,
        *,
        handlers: dict[str, Callable[..., Any]],
        security: Security,
        role: str,
        name: str = "",
        config: CommConfig = DEFAULT_CONFIG,
    ) -> None:
        #: op name -> handler(comm=..., **kwargs)
        self.handlers: dict[str, Callable[..., Any]] = dict(handlers)
        self.security = security
        self.role = role
        self.name = name
        self.comm_config = config
        #: outgoing rpc, with our security and role
        self.pool = ConnectionPool(security=security, role=role, name=name, config=config)
        #: the first listener's address; "" until ``listen`` was called
        self.address = ""
        self.listeners: list[Listener] = []
        self.status: ServerStatus = "init"
        #: incoming comms being served by handle_comm (not those a handler took)
        self._comms: set[Comm] = set()
        #: tasks running handle_comm, and tasks started by ``background``
        self._handler_tasks: set[asyncio.Task[Any]] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._closed: asyncio.Event | None = None

    def __repr__(self) -> str:
        where = self.address or "not listening"
        return f"<{type(self).__name__} {self.role} {self.name!r} {where} {self.status}>"

    # -- lifecycle ---------------------------------------------------------------------------
    async def listen_any(self, addresses: Sequence[str], contact: str | None = None) -> None:
        """Listen on the first of ``addresses`` that is free (a port range); give out
        ``contact`` as our address if set (behind NAT), else the listener's own."""
        error: Exception | None = None
        for address in addresses:
            try:
                await self.listen(address, contact)
                return
            except CommBrokenError as exc:  # this port is taken: try the next one
                error = exc
        raise CommBrokenError(f"{self!r}: no free address among {list(addresses)}: {error}")

    async def listen(self, address: str, contact: str | None = None) -> None:
        """Accept connections on ``address`` too (may be called more than once)."""
        if self.status in ("closing", "closed"):
            raise CommClosedError(f"{self!r} is closed; it cannot listen")
        raise_open_file_limit()  # connections are file descriptors: take what we may
        listener = await listen(
            address,
            self.handle_comm,
            security=self.security,
            role=self.role,
            name=self.name,
            config=self.comm_config,
        )
        self.listeners.append(listener)
        if not self.address:
            # a wildcard bind gives out a routable address of this host, never 0.0.0.0
            self.address = contact or contact_address(listener.address)

    async def start(self) -> None:
        """Mark the server running; subclasses listen and start their tasks here."""
        if self.status == "init":
            self.status = "running"

    async def close(self) -> None:
        """Close gracefully; a second call waits for the first to finish."""
        if self._closed is None:
            self._closed = asyncio.Event()
        elif self.status in ("closing", "closed"):
            await self._closed.wait()
            return
        self.status = "closing"
        try:
            await self._shutdown()
        finally:
            self.status = "closed"
            self._closed.set()

    async def wait_closed(self) -> None:
        """Return once the server has closed (by ``close()`` or from inside)."""
        if self._closed is None:
            self._closed = asyncio.Event()
        await self._closed.wait()

    async def _shutdown(self) -> None:
        for listener in self.listeners:
            await listener.stop()
        await _cancel_all(self._background)
        await self.pool.close()
        comms = list(self._comms)
        await asyncio.gather(*(comm.close() for comm in comms), return_exceptions=True)
        await _cancel_all(self._handler_tasks)

    async def __aenter__(self: _S) -> _S:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- requests ----------------------------------------------------------------------------
    async def handle_comm(self, comm: Comm) -> None:
        """Answer requests on ``comm`` until it closes (or a handler takes it)."""
        task = asyncio.current_task()
        if task is not None:
            self._handler_tasks.add(task)
        self._comms.add(comm)
        took = False
        try:
            took = await self._serve(comm)
        finally:
            self._comms.discard(comm)
            if task is not None:
                self._handler_tasks.discard(task)
            if not took:
                comm.abort()  # the loop ended: the peer left, misbehaved, or we are closing

    async def _serve(self, comm: Comm) -> bool:
        """The request loop; True when a handler took the comm."""
        handlers = self.handlers
        while True:
            try:
                msg = await comm.read()
            except CommError:
                return False
            if not isinstance(msg, dict) or not isinstance(msg.get("op"), str):
                logger.warning(
                    "%r: closing %r: it sent %s, not a request", self, comm, _describe(msg)
                )
                return False
            op = msg.pop("op")
            wants_reply = msg.pop("reply", True)
            handler = handlers.get(op)
            try:
                if handler is None:
                    raise ValueError(f"unknown operation {op!r} for this {self.role}")
                result = handler(comm=comm, **msg)
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                logger.info("%r: request %r failed: %s: %s", self, op, type(exc).__name__, exc)
                reply = error_reply(exc)
            else:
                if result is Server.TOOK_COMM:
                    return True
                if result is Server.REPLIED:
                    continue
                reply = ok_reply(result)
            if wants_reply and not await self._reply(comm, reply):
                return False

    @staticmethod
    async def _reply(comm: Comm, reply: dict[str, Any]) -> bool:
        """Send a reply; False if the comm is gone."""
        try:
            try:
                await comm.write(reply)
            except TypeError as exc:  # the result cannot be encoded; nothing was written yet
                await comm.write(error_reply(exc))
        except CommError:
            return False
        return True

    # -- streams -----------------------------------------------------------------------------
    async def handle_stream(
        self,
        comm: Comm,
        handlers: Mapping[str, Callable[..., None]],
        on_batch_end: Callable[[], None] | None = None,
    ) -> None:
        """Dispatch batches of ``{"op": ...}`` messages from ``comm`` until it closes."""
        while True:
            try:
                batch = await comm.read()
            except CommError:
                return
            if isinstance(batch, dict):
                batch = (batch,)
            elif not isinstance(batch, tuple | list):
                logger.warning("%r: closing stream %r: it sent %s", self, comm, _describe(batch))
                comm.abort()
                return
            for msg in batch:
                self._dispatch_stream(comm, handlers, msg)
            if on_batch_end is not None:
                on_batch_end()
            # let what this batch queued (e.g. the scheduler's flush) run before the next
            # batch: a frame set already buffered is otherwise read without yielding, and a
            # big graph sent in many batches would be handled in one long step
            await asyncio.sleep(0)

    def _dispatch_stream(
        self, comm: Comm, handlers: Mapping[str, Callable[..., None]], msg: Any
    ) -> None:
        op = msg.get("op") if isinstance(msg, dict) else None
        handler = handlers.get(op) if isinstance(op, str) else None
        if handler is None:
            logger.error("%r: stream %r sent an unknown message %s", self, comm, _describe(msg))
            return
        kwargs = {k: v for k, v in msg.items() if k != "op"}
        try:
            handler(**kwargs)
        except Exception:
            logger.exception("%r: stream handler %r failed on %s", self, op, _describe(msg))

    # -- background tasks ----------------------------------------------------------------------
    def background(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` under the guard: an unexpected exception is logged and closes us."""
        task = asyncio.get_running_loop().create_task(self._guard(coro, name), name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        # a task cancelled before its first step never awaits ``coro``: close it, or Python
        # warns "coroutine was never awaited" (a no-op for one that ran)
        task.add_done_callback(lambda _: coro.close())
        return task

    async def _guard(self, coro: Awaitable[Any], name: str) -> Any:
        try:
            return await coro
        except Exception:
            if self.status in ("closing", "closed"):
                logger.info(
                    "%r: background task %r failed while closing", self, name, exc_info=True
                )
                return None
            logger.exception("%r: background task %r failed; closing", self, name)
            # close from a task of its own: close() cancels background tasks, this one included
            closer = asyncio.get_running_loop().create_task(self.close(), name=f"close {self!r}")
            self._handler_tasks.add(closer)
            closer.add_done_callback(self._handler_tasks.discard)
            return None

    def periodic(self, callback: Callable[[], Any], interval: float, name: str) -> None:
        """Call ``callback`` (sync or async) every ``interval`` seconds until close."""
        self.background(self._every(callback, interval), name)

    async def _every(self, callback: Callable[[], Any], interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            result = callback()
            if inspect.isawaitable(result):
                await result


async def _cancel_all(tasks: set[asyncio.Task[Any]]) -> None:
    """Cancel every task but the current one, and wait until they have finished."""
    current = asyncio.current_task()
    pending = [t for t in tasks if t is not current and not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
