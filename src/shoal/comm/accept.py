"""What a listener does with each new connection: handshake under a deadline, then the handler.

Rules of this file:

* One task per accepted connection (not per message). It runs the server handshake under
  ``config.handshake_timeout``; a peer that fails it is logged with its address and reason
  and aborted. Nothing it sent was unpickled, and it never reaches the handler.
* A peer that hangs up during the handshake is logged at INFO, not WARNING: that is what
  port probes and health checks do (connect, close), and a log full of warnings for them
  hides the ones that matter (bad bytes, a wrong token, a deadline missed).
* The handler runs in the same task, only for authenticated peers; its exceptions are
  logged here (a ``CommError`` quietly: the peer left) and never reach the event loop's
  default handler.
* ``stop()`` drops peers still in the handshake; authenticated connections belong to
  their handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from shoal.comm.core import Comm
from shoal.comm.handshake import reject_peer, server_handshake
from shoal.comm.security import Security
from shoal.config import CommConfig
from shoal.errors import CommError, HandshakeError, ProtocolError

logger = logging.getLogger("shoal.comm")

Handler = Callable[[Comm], Awaitable[None]]


class Acceptor:
    """Turns accepted comms into authenticated ones and runs the handler on each."""

    def __init__(
        self, handler: Handler, *, security: Security, role: str, name: str, config: CommConfig
    ) -> None:
        self.handler = handler
        self.security = security
        self.role = role
        self.name = name
        self.config = config
        #: connections still in the handshake, and the task driving each
        self._handshaking: dict[asyncio.Task[None], Comm] = {}
        #: every task we started that has not finished (a strong reference keeps it alive)
        self._tasks: set[asyncio.Task[None]] = set()
        self.stopped = False

    def accept(self, comm: Comm) -> None:
        """Take a freshly accepted connection (called from the transport's callback)."""
        if self.stopped:
            comm.abort()
            return
        comm.set_keepalive(self.config.keepalive)
        task = asyncio.get_running_loop().create_task(self._serve(comm))
        self._handshaking[task] = comm
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, comm: Comm) -> None:
        task = asyncio.current_task()
        try:
            ok = await self._handshake(comm)
        finally:
            self._handshaking.pop(task, None)  # type: ignore[arg-type]
        if not ok:
            return
        try:
            await self.handler(comm)
        except asyncio.CancelledError:
            comm.abort()
            raise
        except CommError as exc:  # the peer went away under the handler: not a bug
            logger.info("connection %r ended in its handler: %s", comm, exc)
            comm.abort()
        except Exception:
            logger.exception("connection handler failed for %r; closing it", comm)
            comm.abort()

    async def _handshake(self, comm: Comm) -> bool:
        timeout = self.config.handshake_timeout
        handshake = server_handshake(
            comm, security=self.security, role=self.role, name=self.name, config=self.config
        )
        try:
            await asyncio.wait_for(handshake, timeout)
        except asyncio.TimeoutError:
            reason = f"did not finish the handshake within {timeout}s"
        except HandshakeError as exc:  # one of ours in all but this: tell it why
            logger.warning("rejected connection from %s: %s", comm.peer_address, exc)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(reject_peer(comm, str(exc)), timeout)
            comm.abort()
            return False
        except ProtocolError as exc:
            reason = str(exc)
        except CommError as exc:  # it hung up: a port probe, or a peer that gave up
            logger.info("connection from %s ended during the handshake: %s", comm.peer_address, exc)
            comm.abort()
            return False
        else:
            return True
        logger.warning("rejected connection from %s: %s", comm.peer_address, reason)
        comm.abort()
        return False

    async def stop(self) -> None:
        """Stop accepting, and drop every peer still in the handshake."""
        self.stopped = True
        tasks = list(self._handshaking)
        for task, comm in list(self._handshaking.items()):
            comm.abort()
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
