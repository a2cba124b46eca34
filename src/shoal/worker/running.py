"""The keys a worker's threads are running, in a small shared file its nanny reads after a death.

Rules of this file:

* The worker writes; its nanny (same host: it started the process) maps the file read-only
  once the worker says it is ready, and reads it only after the process died. That tells
  the scheduler exactly which tasks were running when a task killed the process, without a
  ``task-started`` message (a write) per task.
* The file is ``SLOTS`` fixed-size slots. A task thread takes a slot the first time it runs
  a task and keeps it; a slot is a 4-byte little-endian length (0: idle) then the msgpack
  of ``(key, run_id)``. Writing is a memory store, no system call: the payload first, the
  length last; clearing sets the length to 0.
* A key too long for a slot, one msgpack cannot encode, or a thread beyond ``SLOTS - 1``
  (the last slot is kept for them) writes ``UNKNOWN`` as its length: the reader then says
  it does not know (None) and the scheduler falls back to its own guess. A torn slot (the
  process died mid-write) reads as unknown too.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
from typing import Any

import msgpack

from shoal._types import Key

#: task threads that get a slot (more than this: UNKNOWN is recorded for them)
SLOTS = 64
#: bytes per slot, the length prefix included
SLOT_BYTES = 256
#: a slot's length when a running task could not be recorded
UNKNOWN = 0xFFFFFFFF
_LENGTH = struct.Struct("<I")
FILE_NAME = "running-tasks"


class RunningFile:
    """The worker's side: one slot per task thread, set while that thread runs a task."""

    def __init__(self, path: str) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, SLOTS * SLOT_BYTES)
            self._map = mmap.mmap(fd, SLOTS * SLOT_BYTES)
        finally:
            os.close(fd)
        self._slots: dict[int, int] = {}  # thread ident -> slot
        self._lock = threading.Lock()

    def _slot(self) -> int | None:
        ident = threading.get_ident()
        slot = self._slots.get(ident)
        if slot is None:
            with self._lock:
                if len(self._slots) >= SLOTS - 1:  # the last slot flags threads beyond
                    return None
                slot = self._slots[ident] = len(self._slots)
        return slot

    def started(self, key: Key, run_id: int) -> None:
        """The calling thread runs ``key`` (attempt ``run_id``) from now on."""
        slot = self._slot()
        if slot is None:  # no slot of its own: the last one says "unknown" for good
            _LENGTH.pack_into(self._map, (SLOTS - 1) * SLOT_BYTES, UNKNOWN)
            return
        offset = slot * SLOT_BYTES
        try:
            # a buffer of the slot's size: msgpack's default (256 KiB) is past glibc's mmap
            # threshold in workers, and cost an mmap and a munmap per task (~40 us)
            payload = msgpack.packb((key, run_id), use_bin_type=True, buf_size=SLOT_BYTES)
        except (TypeError, ValueError, OverflowError):
            payload = None
        if payload is None or len(payload) > SLOT_BYTES - _LENGTH.size:
            _LENGTH.pack_into(self._map, offset, UNKNOWN)
            return
        start = offset + _LENGTH.size
        self._map[start : start + len(payload)] = payload
        _LENGTH.pack_into(self._map, offset, len(payload))

    def finished(self) -> None:
        """The calling thread runs nothing any more."""
        slot = self._slots.get(threading.get_ident())
        if slot is not None:
            _LENGTH.pack_into(self._map, slot * SLOT_BYTES, 0)

    def close(self) -> None:
        self._map.close()


class RunningReader:
    """The nanny's side: the file mapped read-only while the worker lives (it stays readable
    after the worker's folder is removed)."""

    def __init__(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            self._map = mmap.mmap(fd, SLOTS * SLOT_BYTES, prot=mmap.PROT_READ)
        finally:
            os.close(fd)

    def running(self) -> list[tuple[Key, int]] | None:
        """The (key, run_id) of every task running now; None if one could not be told."""
        out: list[tuple[Key, int]] = []
        for slot in range(SLOTS):
            offset = slot * SLOT_BYTES
            (length,) = _LENGTH.unpack_from(self._map, offset)
            if length == 0:
                continue
            if length > SLOT_BYTES - _LENGTH.size:
                return None
            start = offset + _LENGTH.size
            entry = _decode(self._map[start : start + length])
            if entry is None:
                return None
            out.append(entry)
        return out

    def close(self) -> None:
        self._map.close()


def _decode(payload: bytes) -> tuple[Key, int] | None:
    try:
        value: Any = msgpack.unpackb(payload, use_list=False, raw=False)
    except Exception:
        return None
    if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int)):
        return None
    key, run_id = value
    return key, run_id
