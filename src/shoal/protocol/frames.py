"""Frame sets on the wire, and an incremental decoder with hard limits.

Rules of this file:

* A frame set is ``count`` (u64 LE), then ``count`` lengths (u64 LE each), then the frames.
* A frame larger than ``max_frame_bytes`` travels as several pieces: every piece but the
  last has bit 63 of its length set (``CONTINUES``). The decoder checks each piece
  against the limit and hands the frame back whole, as one view of the payload (no copy,
  since a frame set's pieces arrive back to back in one buffer). The sender splits at its
  own limit, which is also what it accepts.
* Every number read off the wire is checked against ``FrameLimits`` *before* anything is
  allocated for it, so a peer that claims 2**63 bytes costs us 16 bytes of parsing.
* The decoder is sans-IO and speaks asyncio's ``BufferedProtocol`` shape
  (``get_buffer``/``buffer_updated``): small messages are parsed out of one reusable scratch
  buffer; once a large payload's size is known the transport reads straight into the
  payload's own buffer, so big frames are received without an extra copy.
* After a ``ProtocolError`` the decoder is broken for good: the connection must close.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn, TypeAlias

if TYPE_CHECKING:
    import mmap

from shoal.errors import ProtocolError

_U64 = struct.Struct("<Q")
_SCRATCH_BYTES = 64 * 1024
#: A payload this large is read straight into its own buffer instead of through scratch.
_DIRECT_READ_BYTES = 16 * 1024

Buffer = bytes | bytearray | memoryview
#: where a frame set's payload is received: a bytearray, or an anonymous mapping
Payload: TypeAlias = "bytearray | mmap.mmap"

#: default limit on one piece of a frame on the wire (a larger frame is cut into pieces)
MAX_FRAME_BYTES = 2**31
#: set in a piece's length: the frame goes on in the next piece
CONTINUES = 1 << 63
_SIZE_MASK = CONTINUES - 1


@dataclass(frozen=True, slots=True)
class FrameLimits:
    """Hard limits on what a peer may send in one frame set."""

    #: most frames in one frame set
    max_frames: int = 16_384
    #: most bytes in one frame
    max_frame_bytes: int = MAX_FRAME_BYTES
    #: most bytes in all frames of one frame set together
    max_message_bytes: int = 2**33


#: Before a peer is authenticated it may send only one small frame.
HANDSHAKE_LIMITS = FrameLimits(max_frames=1, max_frame_bytes=16 * 1024, max_message_bytes=16 * 1024)


def nbytes(frame: Buffer) -> int:
    """Length in bytes of a frame, whatever its item size."""
    return frame.nbytes if isinstance(frame, memoryview) else len(frame)


def encode_frames(frames: Sequence[Buffer], max_frame_bytes: int = MAX_FRAME_BYTES) -> list[Buffer]:
    """The wire form of a frame set: a header, then the frames themselves, not copied;
    frames over ``max_frame_bytes`` are cut into pieces of at most that size."""
    lengths: list[int] = []
    pieces: list[Buffer] = []
    for frame in frames:
        size = nbytes(frame)
        if size <= max_frame_bytes:
            lengths.append(size)
            pieces.append(frame)
            continue
        view = _byte_view(frame)
        for start in range(0, size, max_frame_bytes):
            piece = view[start : start + max_frame_bytes]
            more = start + max_frame_bytes < size
            lengths.append(piece.nbytes | CONTINUES if more else piece.nbytes)
            pieces.append(piece)
    header = struct.pack(f"<{len(lengths) + 1}Q", len(lengths), *lengths)
    return [header, *pieces]


def pieces_of(size: int, max_frame_bytes: int) -> int:
    """How many pieces a frame of ``size`` bytes travels as."""
    return max(1, -(-size // max_frame_bytes))


def _byte_view(frame: Buffer) -> memoryview:
    view = memoryview(frame)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


class FrameDecoder:
    """Turns bytes, arriving in any chunking, into frame sets (lists of memoryviews)."""

    def __init__(
        self,
        limits: FrameLimits = FrameLimits(),
        allocate: Callable[[int], Payload] = bytearray,
    ) -> None:
        self.limits = limits
        #: makes the buffer a payload of n bytes is received into (the transport may
        #: pre-fault large ones, see ``comm/buffers.py``)
        self._allocate = allocate
        self._scratch = bytearray(_SCRATCH_BYTES)
        #: unparsed bytes live in scratch[_start:_end]
        self._start = 0
        self._end = 0
        #: the payload being filled, once its header is parsed; None between messages
        self._payload: Payload | None = None
        self._lengths: tuple[int, ...] = ()
        self._filled = 0
        self._direct = False
        self._ready: deque[list[memoryview]] = deque()
        self._broken: ProtocolError | None = None

    # -- BufferedProtocol-shaped interface ------------------------------------------------
    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Where the transport should write the next bytes."""
        self._check_usable()
        payload = self._payload
        if payload is not None and self._start == self._end:
            missing = len(payload) - self._filled
            if missing >= _DIRECT_READ_BYTES:
                self._direct = True
                return memoryview(payload)[self._filled :]
        self._direct = False
        self._compact()
        return memoryview(self._scratch)[self._end :]

    def buffer_updated(self, count: int) -> None:
        """The transport wrote ``count`` bytes into the last buffer handed out."""
        if self._direct:
            self._filled += count
            self._direct = False
            if self._payload is not None and self._filled == len(self._payload):
                self._finish_message()
            return
        self._end += count
        self._parse()

    # -- convenience for streams and tests --------------------------------------------------
    def feed(self, data: Buffer) -> list[list[memoryview]]:
        """Push bytes in; return every frame set completed by them."""
        self._check_usable()
        view = memoryview(data).cast("B")
        while view.nbytes:
            target = self.get_buffer(view.nbytes)
            count = min(target.nbytes, view.nbytes)
            target[:count] = view[:count]
            self.buffer_updated(count)
            view = view[count:]
        return self.drain()

    def drain(self) -> list[list[memoryview]]:
        """Every complete frame set decoded so far, oldest first."""
        out = list(self._ready)
        self._ready.clear()
        return out

    @property
    def idle(self) -> bool:
        """No partial message is buffered (a clean place for the stream to end)."""
        return self._payload is None and self._start == self._end

    # -- internals ------------------------------------------------------------------------
    def _check_usable(self) -> None:
        if self._broken is not None:
            raise self._broken

    def _fail(self, reason: str) -> NoReturn:
        self._broken = ProtocolError(reason)
        raise self._broken

    def _compact(self) -> None:
        if self._start == self._end:
            self._start = self._end = 0
        elif len(self._scratch) - self._end < 4096:
            pending = self._end - self._start
            self._scratch[:pending] = self._scratch[self._start : self._end]
            self._start, self._end = 0, pending
        if self._end == len(self._scratch):
            # a header larger than scratch (many frames): grow, bounded by max_frames
            self._scratch.extend(bytes(len(self._scratch)))

    def _parse(self) -> None:
        while True:
            if self._payload is None and not self._parse_header():
                return
            assert self._payload is not None
            available = self._end - self._start
            missing = len(self._payload) - self._filled
            take = min(available, missing)
            if take:
                self._payload[self._filled : self._filled + take] = self._scratch[
                    self._start : self._start + take
                ]
                self._filled += take
                self._start += take
            if self._filled < len(self._payload):
                return
            self._finish_message()

    def _parse_header(self) -> bool:
        available = self._end - self._start
        if available < 8:
            return False
        (count,) = _U64.unpack_from(self._scratch, self._start)
        limits = self.limits
        if count == 0 or count > limits.max_frames:
            self._fail(f"frame set announces {count} frames (limit {limits.max_frames})")
        header_bytes = 8 * (count + 1)
        if available < header_bytes:
            if header_bytes > len(self._scratch):
                self._grow_scratch(header_bytes)
            return False
        lengths = struct.unpack_from(f"<{count}Q", self._scratch, self._start + 8)
        total = 0
        for length in lengths:
            size = length & _SIZE_MASK
            if size > limits.max_frame_bytes:
                self._fail(f"frame of {size} bytes (limit {limits.max_frame_bytes})")
            total += size
        if lengths[-1] & CONTINUES:
            self._fail("the last frame of a frame set claims to continue")
        if total > limits.max_message_bytes:
            self._fail(f"frame set of {total} bytes (limit {limits.max_message_bytes})")
        try:
            payload = self._allocate(total)
        except (MemoryError, OSError):
            self._fail(f"cannot allocate {total} bytes for a frame set")
        self._start += header_bytes
        self._lengths = lengths
        self._payload = payload
        self._filled = 0
        return True

    def _grow_scratch(self, needed: int) -> None:
        pending = bytes(self._scratch[self._start : self._end])
        self._scratch = bytearray(max(needed * 2, _SCRATCH_BYTES))
        self._scratch[: len(pending)] = pending
        self._start, self._end = 0, len(pending)

    def _finish_message(self) -> None:
        payload = self._payload
        assert payload is not None
        view = memoryview(payload)
        frames = []
        start = end = 0
        for length in self._lengths:
            end += length & _SIZE_MASK
            if not length & CONTINUES:  # a whole frame: its pieces, joined as one view
                frames.append(view[start:end])
                start = end
        self._ready.append(frames)
        self._payload = None
        self._lengths = ()
        self._filled = 0
