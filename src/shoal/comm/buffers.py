"""Receive buffers for large frame sets, faulted in by the kernel in one call.

Rules of this file:

* A fresh ``bytearray`` of n bytes is zeroed by ``memset`` in user space, one page fault
  per 4 KiB page (51,200 traps for 200 MB), before the socket writes a byte into it. A
  buffer of at least ``PREFAULT_BYTES`` is instead an anonymous private mapping made with
  ``MAP_POPULATE``: the kernel allocates and zeroes all its pages inside the one ``mmap``
  call, so receiving into it takes no traps.
* The mapping is the frames' final home: pickle-5 buffers (numpy arrays) are views of it,
  and it is unmapped when the last of them is dropped. Nothing here is shared with any
  other process.
* Where ``MAP_POPULATE`` is missing (not Linux) or the mapping fails, a plain
  ``bytearray`` does: slower, never wrong.
"""

from __future__ import annotations

import mmap

from shoal.protocol.frames import Payload

#: payloads at least this large are pre-faulted mappings; smaller ones are bytearrays
PREFAULT_BYTES = 1024 * 1024
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)


def receive_buffer(nbytes: int) -> Payload:
    """A zeroed, writable buffer of exactly ``nbytes`` bytes, its pages already mapped."""
    if nbytes < PREFAULT_BYTES or not _POPULATE:
        return bytearray(nbytes)
    try:
        return mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _POPULATE)
    except OSError:
        return bytearray(nbytes)
