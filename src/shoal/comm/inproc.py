"""The in-process transport: two comms joined by deques, on one event loop.

Rules of this file:

* Messages still go through ``protocol.dumps`` and ``loads`` (frames, without byte
  framing), and the receiver checks each frame set against its limits, so code that works
  here behaves the same over TCP: same handshake, same errors, nothing unpickled.
* Frames are handed over without copying: a large buffer is shared with the sender, just
  as dask's in-process transport shares objects. Do not mutate a buffer after sending it.
* Writes never wait (there is no socket to fill).
* Addresses are ``inproc://PID/N``; listeners live in a per-process registry and belong to
  the event loop that created them.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections import deque
from collections.abc import Sequence

from shoal.comm.accept import Acceptor
from shoal.comm.core import Comm, Listener
from shoal.errors import CommBrokenError, CommClosedError, CommError, ProtocolError
from shoal.protocol.frames import HANDSHAKE_LIMITS, Buffer, FrameLimits, nbytes, pieces_of

_counter = itertools.count(1)
_listeners: dict[str, InprocListener] = {}


def _fresh_address() -> str:
    return f"inproc://{os.getpid()}/{next(_counter)}"


def _check_limits(frames: Sequence[memoryview], limits: FrameLimits) -> None:
    # the same limits as on TCP, where a frame over max_frame_bytes travels in pieces
    pieces = sum(pieces_of(frame.nbytes, limits.max_frame_bytes) for frame in frames)
    if not frames or pieces > limits.max_frames:
        raise ProtocolError(f"frame set of {pieces} frames (limit {limits.max_frames})")
    total = 0
    for frame in frames:
        total += frame.nbytes
    if total > limits.max_message_bytes:
        raise ProtocolError(f"frame set of {total} bytes (limit {limits.max_message_bytes})")


class InprocComm(Comm):
    """One end of an in-process connection."""

    def __init__(self, local_address: str, peer_address: str) -> None:
        super().__init__(local_address, peer_address)
        self.peer: InprocComm | None = None
        self._sets: deque[list[memoryview]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        #: why the connection ended; set once and never cleared
        self._error: CommError | None = None
        self._limits = HANDSHAKE_LIMITS

    async def read_frames(self) -> list[memoryview]:
        sets = self._sets
        while not sets:
            if self._error is not None:
                raise type(self._error)(*self._error.args)
            self._waiter = waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        frames = sets.popleft()
        try:
            _check_limits(frames, self._limits)
        except ProtocolError as exc:
            if self._limits is HANDSHAKE_LIMITS:
                self.abort()
                raise  # not a handshake at all: the handshake's caller reports it
            raise self.protocol_failure(exc) from None
        return frames

    async def write_frames(self, frames: Sequence[Buffer]) -> int:
        return self.write_frames_nowait(frames)

    def write_frames_nowait(self, frames: Sequence[Buffer]) -> int:
        peer = self.peer
        if self._error is not None:
            raise type(self._error)(*self._error.args)
        assert peer is not None
        views = [memoryview(f) for f in frames]
        peer._deliver(views)
        return 8 * (len(views) + 1) + sum(map(nbytes, views))

    def authenticated(self, limits: FrameLimits) -> None:
        self._limits = limits

    async def close(self) -> None:
        self._end(CommClosedError(f"connection to {self.peer_address} was closed by us"))

    def abort(self) -> None:
        self._sets.clear()
        self._end(CommClosedError(f"connection to {self.peer_address} was aborted by us"))

    @property
    def closed(self) -> bool:
        return self._error is not None

    def _end(self, error: CommError) -> None:
        if self._error is not None:
            return
        self._error = error
        self._wake()
        peer = self.peer
        if peer is not None:
            peer._peer_ended()

    def _peer_ended(self) -> None:
        # what the peer wrote before closing stays readable; the error comes after it
        if self._error is None:
            self._error = CommClosedError(f"{self.peer_address} closed the connection")
            self._wake()

    def _deliver(self, frames: list[memoryview]) -> None:
        if self._error is None:
            self._sets.append(frames)
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class InprocListener(Listener):
    """A registered in-process address handing connections to an ``Acceptor``."""

    def __init__(self, address: str, acceptor: Acceptor) -> None:
        self.address = address
        self.acceptor = acceptor
        self.loop = asyncio.get_running_loop()

    async def stop(self) -> None:
        if _listeners.get(self.address) is self:
            del _listeners[self.address]
        await self.acceptor.stop()


async def inproc_listen(loc: str, acceptor: Acceptor) -> InprocListener:
    """Listen on ``inproc://loc``, or on a fresh address when ``loc`` is empty."""
    address = f"inproc://{loc}" if loc else _fresh_address()
    if address in _listeners:
        raise CommBrokenError(f"{address} is already in use")
    listener = _listeners[address] = InprocListener(address, acceptor)
    return listener


async def inproc_connect(loc: str) -> InprocComm:
    """Join a listener on ``inproc://loc`` (not yet handshaken)."""
    address = f"inproc://{loc}"
    listener = _listeners.get(address)
    if listener is None or listener.acceptor.stopped:
        raise CommBrokenError(f"cannot connect to {address}: nothing listens there")
    if listener.loop is not asyncio.get_running_loop():
        raise CommBrokenError(f"cannot connect to {address}: it runs on another event loop")
    ours = InprocComm(_fresh_address(), address)
    theirs = InprocComm(address, ours.local_address)
    ours.peer, theirs.peer = theirs, ours
    listener.acceptor.accept(theirs)
    return ours
