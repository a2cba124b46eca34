"""A one-way stream that coalesces messages: many ``send``s, one frame set per interval.

Rules of this file:

* ``send`` never blocks and never fails because of the network: it appends to a buffer and
  wakes the flusher. It raises ``CommClosedError`` only once the stream is closed.
* One background flusher task per stream writes everything buffered as ONE message (a
  list). Coalescing is for load: a ``send`` on an idle stream (nothing buffered, no write
  in flight, none within ``interval``) is written by ``send`` itself, with no loop turn
  in between; what is sent after it goes out on the next loop turn (everything sent in
  the current turn joins it), unless more messages keep coming, so no hop of a round trip
  waits for a timer or for a loop turn. "Keep coming" is probed with public asyncio only
  (any loop, uvloop too): the flusher yields one loop turn, and only if this stream got
  more messages during it does it wait out ``interval`` since its last write; whatever is
  sent while a write is in flight (the connection backed up) joins the next.
* The receiver does ``batch = await comm.read()`` and gets a tuple of messages, in order.
* ``send(*msgs, apart=True)`` puts each of ``msgs`` in a frame set of its own (order kept):
  the receiver then handles a big submission (many ``update-graph`` parts) one part per
  read, answering others in between, and no single frame set is huge to encode or decode.
* A message that cannot be encoded is never dropped silently: it is handed, with the error,
  to ``on_unencodable`` (the client fails the futures it concerns; the default logs it),
  and the rest of its batch still goes out. A broken comm ends the stream (logged); it is
  never silently reopened.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from shoal.comm.core import Comm
from shoal.errors import CommClosedError, CommError
from shoal.protocol.frames import Buffer
from shoal.protocol.messages import dumps

logger = logging.getLogger("shoal.comm")

#: told about each message that could not be encoded, with the reason
UnencodableHandler = Callable[[Any, Exception], None]


class BatchedStream:
    """Coalesces outgoing messages on ``comm``: at once when idle, per ``interval`` when busy."""

    def __init__(
        self,
        comm: Comm,
        interval: float = 0.002,
        on_unencodable: UnencodableHandler | None = None,
    ) -> None:
        self.comm = comm
        self.interval = interval
        #: who hears of a message that cannot be encoded (None: it is logged as an error)
        self.on_unencodable = on_unencodable
        #: messages waiting for the next flush, oldest first
        self._buffer: list[Any] = []
        #: positions in ``_buffer`` where a new frame set starts (``send(apart=True)``)
        self._cuts: list[int] = []
        #: what the flusher sleeps on; resolved by close(), and by send() if _wakes_on_send
        self._wakeup: asyncio.Future[None] | None = None
        self._wakes_on_send = False
        self._closing = False
        #: loop time before which the next flush must not happen
        self._next_flush = 0.0
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(
            self._flusher(), name=f"batched-stream {comm.peer_address}"
        )

    @property
    def closed(self) -> bool:
        """True once ``close`` was called or the comm ended."""
        return self._closing or self.comm.closed

    def send(self, *msgs: Any, apart: bool = False) -> None:
        """Queue messages for the next flush. Never blocks. ``apart``: each message goes
        in a frame set of its own, joined by nothing sent before or after it."""
        if self.closed:
            raise CommClosedError(f"batched stream to {self.comm.peer_address} is closed")
        if self._wakes_on_send and not apart and self._loop.time() >= self._next_flush:
            # idle (the flusher waits for a send, so nothing is buffered or in flight):
            # write now, and let what follows within the interval coalesce
            self._buffer.extend(msgs)
            self._next_flush = self._loop.time() + self.interval
            self.flush_now()
            return
        if apart:
            for msg in msgs:
                if self._buffer and (not self._cuts or self._cuts[-1] != len(self._buffer)):
                    self._cuts.append(len(self._buffer))
                self._buffer.append(msg)
                self._cuts.append(len(self._buffer))
        else:
            self._buffer.extend(msgs)
        if self._wakes_on_send:
            self._wake_flusher()

    def flush_now(self) -> None:
        """Hand everything buffered to the connection at once, without the coalescing wait.

        Synchronous: once it returns the bytes are with the transport (with the kernel,
        unless the socket is backed up), so they leave even if this process dies next. A
        worker does this with ``task-started`` before a task runs. Order is kept: the
        flusher also hands each batch over synchronously when it takes it."""
        while not self.closed and self._buffer:
            frames = self._frames_of(self._take_batch())
            if frames is None:
                continue
            try:
                self.comm.write_frames_nowait(frames)
            except CommError as exc:
                logger.info("batched stream to %s ended: %s", self.comm.peer_address, exc)
                self.abort()

    async def close(self) -> None:
        """Flush what is buffered, then close the comm."""
        if not self._closing:
            self._closing = True
            self._wake_flusher()
        await asyncio.wait([self._task])  # never raises, even if the flusher was cancelled
        await self.comm.close()

    def abort(self) -> None:
        """Drop what is buffered and abort the comm."""
        self._closing = True
        self._buffer.clear()
        self._cuts.clear()
        self._task.cancel()
        self.comm.abort()

    # -- the flusher ---------------------------------------------------------------------------
    async def _flusher(self) -> None:
        # the one top-level guard of this task: comm errors end the stream, bugs are logged
        try:
            while await self._wait_for_batch():
                batch = self._take_batch()
                self._next_flush = self._loop.time() + self.interval
                await self._write(batch)
        except CommError as exc:
            logger.info("batched stream to %s ended: %s", self.comm.peer_address, exc)
        except Exception:
            logger.exception("batched stream to %s failed; closing it", self.comm.peer_address)
            self.comm.abort()
        finally:
            self._closing = True

    def _take_batch(self) -> list[Any]:
        """The messages of the next frame set: all buffered, or up to the first cut."""
        if not self._cuts:
            batch, self._buffer = self._buffer, []
            return batch
        end = self._cuts[0]
        batch, self._buffer = self._buffer[:end], self._buffer[end:]
        self._cuts = [cut - end for cut in self._cuts[1:]]
        return batch

    async def _wait_for_batch(self) -> bool:
        """Wait until a flush is due; False once closing with nothing left to send."""
        while not self._buffer:
            if self._closing:
                return False
            await self._wait(None)
        if self._next_flush > self._loop.time() and not self._closing and await self._more_coming():
            delay = self._next_flush - self._loop.time()
            if delay > 0:
                await self._wait(delay)  # under load: more messages join the batch meanwhile
        return True

    async def _more_coming(self) -> bool:
        """Whether this stream got more messages during one more loop turn (a loop with work
        queued for us); on an idle loop this costs one turn, microseconds."""
        before = len(self._buffer)
        await asyncio.sleep(0)
        return len(self._buffer) > before

    async def _wait(self, delay: float | None) -> None:
        """Sleep until send() (delay None) or until the delay passed; close() ends either."""
        self._wakeup = wakeup = self._loop.create_future()
        self._wakes_on_send = delay is None
        timer = None if delay is None else self._loop.call_later(delay, _resolve, wakeup)
        try:
            await wakeup
        finally:
            self._wakeup = None
            self._wakes_on_send = False
            if timer is not None:
                timer.cancel()

    def _wake_flusher(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None:
            _resolve(wakeup)

    async def _write(self, batch: list[Any]) -> None:
        frames = self._frames_of(batch)
        if frames is not None:
            await self.comm.write_frames(frames)

    def _frames_of(self, batch: list[Any]) -> list[Buffer] | None:
        """The frames of ``batch``, leaving out (and logging) messages that cannot go."""
        try:
            return dumps(batch)
        except (TypeError, ValueError, OverflowError):
            batch = self._encodable(batch)
            return dumps(batch) if batch else None

    def _encodable(self, batch: list[Any]) -> list[Any]:
        keep = []
        for msg in batch:
            try:
                dumps(msg)
            except (TypeError, ValueError, OverflowError) as exc:
                self._report_unencodable(msg, exc)
            else:
                keep.append(msg)
        return keep

    def _report_unencodable(self, msg: Any, exc: Exception) -> None:
        handler = self.on_unencodable
        if handler is None:
            op = msg.get("op") if isinstance(msg, dict) else None
            logger.error("a %r message to %s cannot be sent: %s", op, self.comm.peer_address, exc)
            return
        try:
            handler(msg, exc)
        except Exception:
            logger.exception("handling an unsendable message to %s failed", self.comm.peer_address)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
