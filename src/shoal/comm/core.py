"""The ``Comm`` and ``Listener`` interfaces every transport implements.

Rules of this file:

* A ``Comm`` carries messages (msgpack values, with ``Serialized`` inside) both ways, in
  order. It never unpickles: ``protocol.loads`` hands ``Serialized`` values back opaque.
* Errors say who ended the connection: ``CommClosedError`` when it was closed on purpose
  (by us, or cleanly by the peer), ``CommBrokenError`` when it broke (reset, EOF in the
  middle of a message, or bytes from the peer that are not a valid message).
* Messages that arrived before the peer closed are still delivered; the error comes after.
* One reader at a time. Writers may interleave whole messages, never parts of them.
* A transport implements frame-level ``read_frames``/``write_frames`` and the handshake
  switch ``authenticated``; message encoding and the ProtocolError policy live here once.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from shoal.config import CommConfig, TCPKeepalive
from shoal.errors import CommBrokenError, ProtocolError
from shoal.protocol.frames import Buffer, FrameLimits
from shoal.protocol.messages import dumps, loads

logger = logging.getLogger("shoal.comm")

#: The default ``CommConfig`` (frozen, so one shared instance is safe).
DEFAULT_CONFIG = CommConfig()


class Comm(ABC):
    """One authenticated, message-oriented connection."""

    #: our end, e.g. ``tcp://127.0.0.1:40123``
    local_address: str
    #: the other end
    peer_address: str
    #: what the peer said about itself in the handshake: role, name, shoal version, protocol
    peer_info: dict[str, Any]
    #: the peer's verified TLS certificate (``SSLSocket.getpeercert()``); None without TLS
    peer_certificate: dict[str, Any] | None

    def __init__(self, local_address: str, peer_address: str) -> None:
        self.local_address = local_address
        self.peer_address = peer_address
        self.peer_info = {}
        self.peer_certificate = None

    # -- messages ---------------------------------------------------------------------------
    async def read(self) -> Any:
        """The next message. ``CommClosedError`` once closed, ``CommBrokenError`` if broken."""
        frames = await self.read_frames()
        try:
            return loads(frames)
        except ProtocolError as exc:
            raise self.protocol_failure(exc) from None

    async def write(self, msg: Any) -> int:
        """Send one message; returns the bytes written (frame headers included)."""
        return await self.write_frames(dumps(msg))

    def protocol_failure(self, exc: ProtocolError) -> CommBrokenError:
        """The peer sent something that is not a message: log why, abort, and say so."""
        logger.warning("closing connection from %s: %s", self.peer_address, exc)
        self.abort()
        return CommBrokenError(f"{self.peer_address} sent an invalid message: {exc}")

    # -- transport interface ----------------------------------------------------------------
    @abstractmethod
    async def read_frames(self) -> list[memoryview]:
        """The next frame set, undecoded."""

    @abstractmethod
    async def write_frames(self, frames: Sequence[Buffer]) -> int:
        """Send one frame set; waits only while the transport applies back pressure."""

    @abstractmethod
    def write_frames_nowait(self, frames: Sequence[Buffer]) -> int:
        """Hand one frame set to the connection now, ignoring back pressure: for small
        messages that must be on their way before the caller's next step."""

    @abstractmethod
    def authenticated(self, limits: FrameLimits) -> None:
        """The handshake passed: from now on accept frame sets within ``limits``."""

    @abstractmethod
    async def close(self) -> None:
        """Flush what was written, then close. Idempotent."""

    @abstractmethod
    def abort(self) -> None:
        """Close now, dropping anything unsent. Idempotent."""

    @property
    @abstractmethod
    def closed(self) -> bool:
        """True once closed by either side or broken."""

    def set_keepalive(self, settings: TCPKeepalive) -> None:
        """Have the kernel notice a dead peer (TCP only; other transports ignore it)."""
        return None

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        role = self.peer_info.get("role", "?")
        return (
            f"<{type(self).__name__} {self.local_address} -> {self.peer_address} ({role}) {state}>"
        )


class Listener(ABC):
    """Accepts connections, authenticates them, and hands each to a handler task."""

    #: the real bound address, e.g. ``tcp://127.0.0.1:40123``
    address: str

    @abstractmethod
    async def stop(self) -> None:
        """Stop accepting; peers still in the handshake are dropped."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.address}>"
