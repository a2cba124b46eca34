"""The TCP transport: an asyncio ``BufferedProtocol`` feeding a ``FrameDecoder``.

Rules of this file:

* Bytes go from the socket straight into the decoder's buffers (``get_buffer``), so a large
  payload is received into its final buffer with no extra copy.
* Complete frame sets wait in a deque; one waiter future wakes the single reader. No task,
  queue or callback per message.
* A small message is one ``transport.write`` (one send() call). A large frame is never
  concatenated with anything. Over plain TCP it is written straight from its own memory
  to the socket's fd whenever the transport has nothing queued, so no byte
  of it is copied in user space; only a 64 KiB nudge per socket-full goes through the
  transport (which copies it) so that the transport watches for writability and resumes
  us. Under TLS it goes to the transport a chunk at a time as the socket drains
  (``_Outbox``). ``write`` awaits only while the transport is paused.
* Before authentication the socket is read exactly one handshake frame set at a time: first
  its 16-byte header (checked against ``HANDSHAKE_LIMITS``), then exactly its payload; then
  reading pauses until the handshake asks for more. So no byte that follows the handshake
  is ever parsed under the wrong limits, and an unauthenticated peer can make us hold at
  most one 16 KiB frame.
* Too many unread frame sets pause reading (back pressure reaches the sender through TCP).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, cast

from shoal.comm.accept import Acceptor
from shoal.comm.addressing import parse_host_port, unparse_address, unparse_host_port
from shoal.comm.buffers import receive_buffer
from shoal.comm.core import Comm, Listener, logger
from shoal.comm.keepalive import set_keepalive as set_socket_keepalive
from shoal.config import TCPKeepalive
from shoal.errors import CommBrokenError, CommClosedError, CommError, ProtocolError
from shoal.protocol.frames import (
    HANDSHAKE_LIMITS,
    MAX_FRAME_BYTES,
    Buffer,
    FrameDecoder,
    FrameLimits,
    nbytes,
)
from shoal.protocol.frames import encode_frames as _encode
from shoal.protocol.messages import dumps, loads

#: pieces smaller than this are joined into one write (one send() call)
_JOIN_BYTES = 64 * 1024
#: a large frame goes to the transport this many bytes at a time (TLS)
_CHUNK_BYTES = 1024 * 1024
#: when the socket is full, this much of a large frame goes through the transport: more
#: than its high-water mark, so that it pauses us until the socket has drained
_NUDGE_BYTES = 64 * 1024
_HIGH_WATER = _NUDGE_BYTES // 2
#: unread frame sets at which reading pauses; it resumes below half of it
_PAUSE_READING_AT = 1024
#: seconds ``close()`` waits for unsent bytes to drain before aborting
_CLOSE_FLUSH_TIMEOUT = 10.0
_HS_HEADER = 16  # a one-frame set's header: count + one length, u64 each
_U64 = struct.Struct("<Q")


def _sockaddr(sockname: object, scheme: str = "tcp") -> str:
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        return unparse_address(scheme, unparse_host_port(str(sockname[0]), int(sockname[1])))
    return unparse_address(scheme, str(sockname))


class _Outbox:
    """Hands frames to the socket in pieces that are not copied whole.

    asyncio copies whatever the socket does not take at once into its own buffer (and, on
    Python < 3.12, ``writelines`` joins its list first). With ``fileno`` (of a plain TCP
    socket) a large frame is written from its own memory while the transport holds
    nothing; without it (TLS) it is fed in chunks, each once the transport has drained,
    which keeps asyncio's copies to a chunk at a time.
    """

    def __init__(self, transport: asyncio.WriteTransport, fileno: int | None) -> None:
        self.transport = transport
        #: the socket's fd: open for as long as the transport is not closing
        self.fileno = fileno
        if fileno is not None:  # resume only once the transport's buffer is empty
            transport.set_write_buffer_limits(high=_HIGH_WATER, low=0)
        #: what is not yet handed to the transport, in order
        self.queue: deque[memoryview] = deque()
        #: the transport asked us to stop (its buffer is above the high-water mark)
        self.paused = False
        #: bytes of large frames sent with our own send() calls (tests count copies by it)
        self.sent_direct = 0

    @property
    def busy(self) -> bool:
        """True while something written is not yet with the transport, or it is paused."""
        return self.paused or bool(self.queue)

    def write(self, buffers: list[Buffer], total: int) -> None:
        if total <= _JOIN_BYTES and not self.queue:
            self.transport.write(b"".join(buffers))  # one small write: one send() call
            return
        self.queue.extend(_byte_view(b) for b in buffers)
        self.pump()

    def pump(self) -> None:
        queue, transport = self.queue, self.transport
        while queue and not self.paused:
            small: list[memoryview] = []
            size = 0
            while queue and size + queue[0].nbytes <= _JOIN_BYTES:
                small.append(queue.popleft())
                size += small[-1].nbytes
            if small:
                transport.write(b"".join(small))
                continue
            if self.fileno is not None and self._send_direct():
                continue
            head = queue[0]
            limit = _CHUNK_BYTES if self.fileno is None else _NUDGE_BYTES
            if head.nbytes > limit:
                queue[0] = head[limit:]
                head = head[:limit]
            else:
                queue.popleft()
            transport.write(head)  # may call pause_writing(), which ends this loop

    def _send_direct(self) -> bool:
        """Write the head of the queue to the socket ourselves; False when the socket is
        full or the transport still holds bytes (they must go first). A transport that is
        not closing has not closed its fd, so ``fileno`` is still this socket."""
        assert self.fileno is not None
        if self.transport.get_write_buffer_size() or self.transport.is_closing():
            return False
        head = self.queue[0]
        try:
            sent = os.write(self.fileno, head)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return False  # the transport's own write meets the error and reports it
        self.sent_direct += sent
        if sent == head.nbytes:
            self.queue.popleft()
            return True
        self.queue[0] = head[sent:]
        return False

    def close(self) -> None:
        self.fileno = None  # the transport closes the socket; never write to the number again


def _direct_fileno(sock: object) -> int | None:
    """The fd of the transport's TCP socket, for sends from our own buffers, or None."""
    fileno = getattr(sock, "fileno", None)
    if fileno is None or getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
        return None
    fd = fileno()
    return fd if isinstance(fd, int) and fd >= 0 else None


def _byte_view(buf: Buffer) -> memoryview:
    view = memoryview(buf)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


class TCPComm(Comm, asyncio.BufferedProtocol):
    """One TCP connection (``scheme="tls"``: inside asyncio's TLS); its own asyncio protocol."""

    def __init__(
        self, on_connect: Callable[[TCPComm], None] | None = None, scheme: str = "tcp"
    ) -> None:
        super().__init__(f"{scheme}://", f"{scheme}://")
        self._scheme = scheme
        self._on_connect = on_connect
        self._transport: asyncio.Transport | None = None
        self._decoder = FrameDecoder(HANDSHAKE_LIMITS, receive_buffer)
        #: complete frame sets not yet read, oldest first
        self._sets: deque[list[memoryview]] = deque()
        #: the one reader waiting for a frame set (or for the end)
        self._waiter: asyncio.Future[None] | None = None
        #: why the connection ended; set once and never cleared
        self._error: CommError | None = None
        #: the peer's bytes were not valid frames (the reason, once)
        self._invalid: ProtocolError | None = None
        self._lost: asyncio.Future[None] | None = None
        self._outbox: _Outbox | None = None
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._read_paused = False
        #: handshake mode: read exactly one small frame set at a time into _hs_buf
        self._handshaking = True
        self._hs_buf = bytearray(_HS_HEADER + HANDSHAKE_LIMITS.max_message_bytes)
        self._hs_have = 0
        self._hs_need = _HS_HEADER
        #: frames over this many bytes go out in pieces (frames.encode_frames)
        self._split_bytes = MAX_FRAME_BYTES

    # -- asyncio protocol callbacks ----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport; uvloop's is one without subclassing asyncio.Transport
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        self._outbox = _Outbox(transport, _direct_fileno(sock) if self._scheme == "tcp" else None)
        self._lost = asyncio.get_running_loop().create_future()
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.local_address = _sockaddr(transport.get_extra_info("sockname"), self._scheme)
        self.peer_address = _sockaddr(transport.get_extra_info("peername"), self._scheme)
        # a TLS peer's verified certificate (getpeercert()); None over plain TCP
        self.peer_certificate = transport.get_extra_info("peercert")
        if self._on_connect is not None:
            self._on_connect(self)

    def set_keepalive(self, settings: TCPKeepalive) -> None:
        sock = self._transport.get_extra_info("socket") if self._transport else None
        if sock is not None:
            set_socket_keepalive(sock, settings)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._error is not None:
            return memoryview(bytearray(4096))  # aborted: whatever is still read is dropped
        if self._handshaking:
            return memoryview(self._hs_buf)[self._hs_have : self._hs_need]
        try:
            return self._decoder.get_buffer(sizehint)
        except ProtocolError as exc:
            self._fail_protocol(exc)
            return memoryview(bytearray(4096))

    def buffer_updated(self, nbytes: int) -> None:
        if self._error is not None:
            return
        try:
            if self._handshaking:
                self._handshake_bytes(nbytes)
                return
            self._decoder.buffer_updated(nbytes)
        except ProtocolError as exc:
            self._fail_protocol(exc)
            return
        sets = self._decoder.drain()
        if sets:
            self._sets.extend(sets)
            if len(self._sets) >= _PAUSE_READING_AT:
                self._pause_reading()
            self._wake()

    def _handshake_bytes(self, count: int) -> None:
        self._hs_have += count
        if self._hs_have < self._hs_need:
            return
        view = memoryview(self._hs_buf)
        if self._hs_need == _HS_HEADER:
            # the decoder checks count and length against HANDSHAKE_LIMITS first
            sets = self._decoder.feed(view[:_HS_HEADER])
            if not sets:
                (length,) = _U64.unpack_from(self._hs_buf, 8)
                self._hs_need = _HS_HEADER + length
                return
        else:
            sets = self._decoder.feed(view[_HS_HEADER : self._hs_need])
        self._hs_have, self._hs_need = 0, _HS_HEADER
        self._sets.extend(sets)
        self._pause_reading()  # until the handshake asks for the next message
        self._wake()

    def eof_received(self) -> bool:
        partial = self._hs_have > 0 if self._handshaking else not self._decoder.idle
        if partial:
            self._set_error(
                CommBrokenError(f"{self.peer_address} hung up in the middle of a message")
            )
        else:
            self._set_error(CommClosedError(f"{self.peer_address} closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self._set_error(CommBrokenError(f"connection to {self.peer_address} broke: {exc}"))
        else:
            self._set_error(CommClosedError(f"connection to {self.peer_address} was closed"))
        self._wake()
        self._wake_drainers()
        if self._outbox is not None:
            self._outbox.close()
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    def pause_writing(self) -> None:
        assert self._outbox is not None
        self._outbox.paused = True

    def resume_writing(self) -> None:
        assert self._outbox is not None
        self._outbox.paused = False
        self._outbox.pump()
        if not self._outbox.busy:
            self._wake_drainers()

    # -- Comm ----------------------------------------------------------------------------------
    # read/write repeat read_frames/write_frames instead of calling them: one coroutine
    # fewer per message on the hot path
    async def read(self) -> Any:
        while (frames := self._take()) is None:
            await self._arm_waiter()
        try:
            return loads(frames)
        except ProtocolError as exc:
            raise self.protocol_failure(exc) from None

    async def read_frames(self) -> list[memoryview]:
        while (frames := self._take()) is None:
            await self._arm_waiter()
        return frames

    async def write(self, msg: Any) -> int:
        total = self._send(dumps(msg))
        if self._outbox is not None and self._outbox.busy:
            await self._drained()
        return total

    def write_frames_nowait(self, frames: Sequence[Buffer]) -> int:
        return self._send(frames)

    async def write_frames(self, frames: Sequence[Buffer]) -> int:
        total = self._send(frames)
        if self._outbox is not None and self._outbox.busy:
            await self._drained()
        return total

    def _take(self) -> list[memoryview] | None:
        """The next frame set, if one is waiting."""
        sets = self._sets
        if not sets:
            return None
        frames = sets.popleft()
        if self._read_paused and not self._handshaking and len(sets) < _PAUSE_READING_AT // 2:
            self._resume_reading()
        return frames

    def _arm_waiter(self) -> asyncio.Future[None]:
        """A future the next frame set (or the end) resolves; raises if already ended."""
        if self._error is not None:
            self._raise_error()
        if self._read_paused and self._transport is not None:
            self._resume_reading()
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        return waiter

    def _send(self, frames: Sequence[Buffer]) -> int:
        if self._error is not None:
            self._raise_error()
        outbox = self._outbox
        assert outbox is not None
        buffers = _encode(frames, self._split_bytes)
        total = sum(map(nbytes, buffers))
        outbox.write(buffers, total)
        return total

    def authenticated(self, limits: FrameLimits) -> None:
        self._decoder.limits = limits
        self._split_bytes = limits.max_frame_bytes  # we send pieces no larger than we accept
        self._handshaking = False
        self._hs_buf = bytearray()
        if self._read_paused and self._error is None:
            self._resume_reading()

    async def close(self) -> None:
        transport, lost = self._transport, self._lost
        if transport is None or lost is None:
            return
        self._set_error(CommClosedError(f"connection to {self.peer_address} was closed by us"))
        self._wake()
        timer = asyncio.get_running_loop().call_later(_CLOSE_FLUSH_TIMEOUT, self.abort)
        try:
            if not transport.is_closing():
                with contextlib.suppress(CommError):
                    await self._drained()  # our outbox first; transport.close() flushes the rest
                transport.close()
            await asyncio.shield(lost)
        finally:
            timer.cancel()

    def abort(self) -> None:
        if self._transport is None:
            return
        self._set_error(CommClosedError(f"connection to {self.peer_address} was aborted by us"))
        self._transport.abort()
        self._wake()

    @property
    def closed(self) -> bool:
        return self._error is not None

    # -- internals -------------------------------------------------------------------------------
    def _raise_error(self) -> NoReturn:
        error = self._error
        assert error is not None
        if self._handshaking and self._invalid is not None:
            # not a handshake at all: the handshake's caller reports that, not a broken comm
            raise ProtocolError(*self._invalid.args)
        raise type(error)(*error.args)

    def _set_error(self, error: CommError) -> None:
        if self._error is None:
            self._error = error

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():  # a cancelled reader leaves a cancelled waiter behind
                waiter.set_result(None)

    def _wake_drainers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _drained(self) -> None:
        """Wait until everything written is with the transport and it is not paused."""
        while self._outbox is not None and self._outbox.busy:
            if self._lost is None or self._lost.done():
                self._raise_error()  # what was not yet sent is lost with the connection
            waiter = asyncio.get_running_loop().create_future()
            self._drain_waiters.append(waiter)
            await waiter

    def _pause_reading(self) -> None:
        if not self._read_paused and self._transport is not None:
            self._read_paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        assert self._transport is not None
        self._read_paused = False
        if not self._transport.is_closing():
            self._transport.resume_reading()

    def _fail_protocol(self, exc: ProtocolError) -> None:
        if not self._handshaking:  # during the handshake the listener logs the reason
            logger.warning("closing connection from %s: %s", self.peer_address, exc)
        self._invalid = exc
        self._set_error(CommBrokenError(f"{self.peer_address} sent invalid frames: {exc}"))
        if self._transport is not None:
            self._transport.abort()
        self._wake()


class TCPListener(Listener):
    """A listening TCP socket handing connections to an ``Acceptor``."""

    def __init__(self, server: asyncio.Server, acceptor: Acceptor, scheme: str = "tcp") -> None:
        self._server = server
        self._acceptor = acceptor
        self.address = _sockaddr(server.sockets[0].getsockname(), scheme)

    async def stop(self) -> None:
        self._server.close()
        await self._acceptor.stop()


async def tcp_listen(loc: str, acceptor: Acceptor) -> TCPListener:
    """Listen on ``host:port`` (port 0 picks a free one; an empty host means all)."""
    host, port = parse_host_port(loc, default_port=0)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: TCPComm(acceptor.accept), host or None, port)
    return TCPListener(server, acceptor)


async def tcp_connect(loc: str) -> TCPComm:
    """Open a TCP connection to ``host:port`` (not yet handshaken)."""
    host, port = parse_host_port(loc)
    loop = asyncio.get_running_loop()
    try:
        _, comm = await loop.create_connection(TCPComm, host, port)
    except OSError as exc:
        raise CommBrokenError(f"cannot connect to tcp://{loc}: {exc}") from exc
    return comm
