"""Messages <-> frames.

A message is a msgpack value (normally a map with an ``"op"``); ``Serialized`` values
inside it become msgpack extension objects whose pickle streams and buffers travel as
frames of their own when large. Frame 0 is always the msgpack header.

Rules of this file:

* ``loads`` never unpickles: ``Serialized`` values come back as ``Serialized``.
* Arrays decode as tuples, so keys that were tuples come back hashable.
* Anything malformed raises ``ProtocolError`` and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack

from shoal.errors import ProtocolError
from shoal.protocol.frames import Buffer
from shoal.protocol.serialize import OUT_OF_BAND_BYTES, Serialized

_EXT_SERIALIZED = 1
#: the encoder's first buffer (it grows as needed). msgpack's default, 256 KiB, is above
#: glibc's mmap threshold, which stays at 128 KiB in workers (the nanny's
#: ``MALLOC_TRIM_THRESHOLD_`` freezes it): every message then cost an mmap, a munmap and
#: page faults, ~10 us instead of ~1.5 us for a small one.
_FIRST_BUFFER_BYTES = 16 * 1024


def dumps(msg: object) -> list[Buffer]:
    """The frames of ``msg``: the msgpack header, then large pickles and buffers."""
    frames: list[Buffer] = [b""]

    def default(obj: object) -> object:
        if isinstance(obj, Serialized):
            return msgpack.ExtType(_EXT_SERIALIZED, _pack_serialized(obj, frames))
        if isinstance(obj, set | frozenset):
            return list(obj)
        raise TypeError(f"{type(obj).__name__} cannot go in a message as is; serialize() it first")

    frames[0] = msgpack.packb(msg, default=default, use_bin_type=True, buf_size=_FIRST_BUFFER_BYTES)
    return frames


def _pack_serialized(value: Serialized, frames: list[Buffer]) -> bytes:
    header: object
    inline = 0
    if len(value.header) >= OUT_OF_BAND_BYTES:
        frames.append(value.header)
        header = len(frames) - 1
    else:
        header = bytes(value.header)
        inline = len(header)
    first = len(frames)
    frames.extend(value.buffers)
    packed: bytes = msgpack.packb(
        (header, first, len(value.buffers)), use_bin_type=True, buf_size=inline + 64
    )
    return packed


def loads(frames: Sequence[memoryview | bytes]) -> Any:
    """The message in ``frames``; ``ProtocolError`` if they are not one."""
    if not frames:
        raise ProtocolError("empty frame set")

    def ext_hook(code: int, data: bytes) -> Serialized:
        if code != _EXT_SERIALIZED:
            raise ProtocolError(f"unknown msgpack extension type {code}")
        return _unpack_serialized(data, frames)

    try:
        return msgpack.unpackb(
            frames[0],
            ext_hook=ext_hook,
            use_list=False,
            raw=False,
            strict_map_key=False,
        )
    except ProtocolError:
        raise
    except Exception as exc:
        raise ProtocolError(f"malformed message header: {type(exc).__name__}: {exc}") from None


def _unpack_serialized(data: bytes, frames: Sequence[memoryview | bytes]) -> Serialized:
    try:
        header, first, count = msgpack.unpackb(data, use_list=False, raw=False)
    except Exception as exc:
        raise ProtocolError(f"malformed serialized value: {exc}") from None
    if not (isinstance(first, int) and isinstance(count, int)):
        raise ProtocolError("malformed serialized value: bad frame indices")
    if first < 1 or count < 0 or first + count > len(frames):
        raise ProtocolError("serialized value points at frames that are not there")
    if isinstance(header, int):
        if not 1 <= header < len(frames):
            raise ProtocolError("serialized value points at a frame that is not there")
        header = frames[header]
    elif not isinstance(header, bytes):
        raise ProtocolError("malformed serialized value: bad header")
    buffers = tuple(memoryview(frames[i]) for i in range(first, first + count))
    return Serialized(header, buffers)


def wire_safe(value: object) -> object:
    """``value`` with everything a message cannot carry replaced by its ``repr`` (for
    logs and stories, whose entries may hold arbitrary objects)."""
    if value is None or isinstance(value, str | bytes | int | float | bool):
        return value
    if isinstance(value, tuple | list):
        return tuple(wire_safe(v) for v in value)
    if isinstance(value, set | frozenset):
        return tuple(wire_safe(v) for v in value)
    if isinstance(value, dict):
        return {wire_safe(k): wire_safe(v) for k, v in value.items()}
    return repr(value)
