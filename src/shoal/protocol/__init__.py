"""The wire protocol: pure, no IO. Messages, frame sets, serialization, the handshake."""

from shoal.protocol.frames import HANDSHAKE_LIMITS, FrameDecoder, FrameLimits, encode_frames
from shoal.protocol.messages import dumps, loads
from shoal.protocol.serialize import Serialized, deserialize, serialize

__all__ = [
    "HANDSHAKE_LIMITS",
    "FrameDecoder",
    "FrameLimits",
    "Serialized",
    "deserialize",
    "dumps",
    "encode_frames",
    "loads",
    "serialize",
]
