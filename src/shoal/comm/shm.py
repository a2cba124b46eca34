"""Same-host transfers through shared memory: large buffers go in a memfd, the socket
carries only the message and where to find them.

How it works: the receiver asks ``get_data`` with ``shm=<its host identity>``. When the
sender is on the same host (same boot, same pid namespace, same user) and shared memory
is on, every out-of-band buffer of at least ``SHM_MIN_BYTES`` is written into an
anonymous ``memfd`` named ``shoal-<pid>-<n>``; the reply carries, per key, the index,
name, fd number and size of each such buffer instead of its bytes. The receiver opens
``/proc/<sender pid>/fd/<fd>``, checks the name, maps it, and the pickle's buffers are
views of that mapping (numpy arrays included): the bytes are copied once, by the sender.

Rules of this file:

* Lifetime is the kernel's: a memfd has no name in ``/dev/shm`` or anywhere else, and its
  memory is freed when the last fd and the last mapping are gone. The sender closes its fd
  once the receiver had time to open it (``hold`` seconds, or at close); the receiver's
  mapping lives as long as the values it backs. A worker killed at any moment leaves
  nothing behind, because the kernel closes its fds and unmaps its mappings.
* An fd number can be reused after the sender closes it, so the receiver checks the name
  of what it opened (``/proc/self/fd``) before trusting it.
* Anything that goes wrong on the receiving side raises ``ShmUnavailable``; the caller
  asks again without ``shm`` and stops asking that peer (``refuse``), so a host where
  ``/proc/<pid>/fd`` cannot be opened falls back to TCP for good after one try.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import itertools
import mmap
import os
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from functools import cache
from typing import Any

from shoal.comm.core import logger
from shoal.protocol.rpc_workers import WorkerGetData
from shoal.protocol.serialize import Serialized

#: buffers at least this large travel through shared memory
SHM_MIN_BYTES = 1024 * 1024
#: the name prefix of every memfd shoal makes (seen as ``/memfd:shoal-<pid>-<n>``)
SHM_PREFIX = "shoal-"
#: seconds a sender keeps a memfd open for the receiver to open it
DEFAULT_HOLD = 10.0
#: memfds a sender holds open at most; past it, replies go over TCP (fds are finite)
MAX_HELD = 1024
_WRITE_CHUNK = 1 << 30  # os.write takes at most ~2 GiB at once


class ShmUnavailable(Exception):
    """The buffers of a reply could not be mapped here; fetch them over the socket."""


@cache
def host_identity() -> str:
    """Who can open our fds through ``/proc``: same boot, pid namespace and user.
    Empty where that cannot be told (not Linux), which turns shared memory off."""
    if not hasattr(os, "memfd_create"):
        return ""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        pid_ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""
    return f"{boot}/{pid_ns}/{os.getuid()}"


class SharedMemoryTransfers:
    """One worker's side of same-host transfers, as sender and as receiver."""

    def __init__(self, enabled: bool = True, hold: float = DEFAULT_HOLD) -> None:
        self.identity = host_identity() if enabled else ""
        self.hold = hold
        #: memfds handed out and not yet closed: fd -> when to close it
        self._held: dict[int, float] = {}
        #: peers whose buffers could not be mapped here: ask them over the socket
        self._refused: set[str] = set()
        self._names = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def held(self) -> int:
        """How many memfds this worker holds open for receivers."""
        return len(self._held)

    # -- receiver ------------------------------------------------------------------------
    async def get_data(
        self,
        call: Callable[..., Awaitable[Any]],
        peer: str,
        request: WorkerGetData,
        **options: Any,
    ) -> Mapping[str, Any]:
        """``call(peer, request, **options)`` (options: the pool's, e.g. ``reply_timeout``),
        through shared memory where it can be."""
        extra = self.request_kwargs(peer)
        reply: Mapping[str, Any] = await call(
            peer, dataclasses.replace(request, **extra), **options
        )
        if not extra:
            return reply
        try:
            return self.receive(reply)
        except ShmUnavailable as exc:
            logger.info("shared memory with %s does not work, using TCP: %s", peer, exc)
            self.refuse(peer)
            reply = await call(peer, request, **options)
            return reply

    def request_kwargs(self, peer: str) -> dict[str, Any]:
        """Extra ``get_data`` arguments for ``peer``: our identity, if it may use shm."""
        if not self.identity or peer in self._refused:
            return {}
        return {"shm": self.identity}

    def refuse(self, peer: str) -> None:
        self._refused.add(peer)

    def receive(self, reply: Mapping[str, Any]) -> Mapping[str, Any]:
        """``reply`` with the buffers it names in shared memory mapped into its values."""
        placed = reply.get("shm")
        if not placed:
            return reply
        pid = int(reply["shm_pid"])
        data = dict(reply["data"])
        for key, entries in placed.items():
            value: Serialized = data[key]
            buffers = list(value.buffers)
            for index, name, fd, nbytes in entries:
                buffers[index] = _map_remote(pid, int(fd), str(name), int(nbytes))
            data[key] = Serialized(value.header, tuple(buffers))
        return {**reply, "data": data}

    # -- sender --------------------------------------------------------------------------
    def wants(self, requester_identity: object) -> bool:
        """True when the requester can map our memfds (same host identity, shm on)."""
        same_host = bool(self.identity) and requester_identity == self.identity
        return same_host and len(self._held) < MAX_HELD

    def place(self, reply: dict[str, Any]) -> None:
        """Move the large buffers of ``reply["data"]`` into memfds (in place)."""
        data: dict[Any, Serialized] = reply["data"]
        placed: dict[Any, list[list[Any]]] = {}
        for key, value in list(data.items()):
            if not any(b.nbytes >= SHM_MIN_BYTES for b in value.buffers):
                continue
            entries: list[list[Any]] = []
            buffers = list(value.buffers)
            for index, buf in enumerate(buffers):
                if buf.nbytes >= SHM_MIN_BYTES:
                    name, fd = self._export(buf)
                    entries.append([index, name, fd, buf.nbytes])
                    buffers[index] = memoryview(b"")
            data[key] = Serialized(value.header, tuple(buffers))
            placed[key] = entries
        if placed:
            reply["shm"] = placed
            reply["shm_pid"] = os.getpid()

    async def place_soon(self, reply: dict[str, Any]) -> None:
        """``place`` in a helper thread (the copies would hold the loop), then make sure
        the fds it opened are closed after ``hold`` seconds."""
        if any(b.nbytes >= SHM_MIN_BYTES for v in reply["data"].values() for b in v.buffers):
            await asyncio.to_thread(self.place, reply)
            self.schedule_expiry()

    def _export(self, buf: memoryview) -> tuple[str, int]:
        name = f"{SHM_PREFIX}{os.getpid()}-{next(self._names)}"
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
        try:
            view = buf.cast("B") if buf.format != "B" or buf.ndim != 1 else buf
            done = 0
            while done < view.nbytes:
                done += os.write(fd, view[done : done + _WRITE_CHUNK])
        except BaseException:
            os.close(fd)
            raise
        self._held[fd] = time.monotonic() + self.hold
        return name, fd

    def schedule_expiry(self) -> None:
        """Close held fds once their ``hold`` is over (call on the event loop)."""
        if self._timer is None and self._held:
            self._timer = asyncio.get_running_loop().call_later(self.hold, self._expire)

    def _expire(self) -> None:
        self._timer = None
        now = time.monotonic()
        for fd, deadline in list(self._held.items()):
            if deadline <= now:
                self._close_fd(fd)
        self.schedule_expiry()

    def _close_fd(self, fd: int) -> None:
        del self._held[fd]
        os.close(fd)

    def close(self) -> None:
        """Close every memfd still held (receivers that mapped one keep their mapping)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for fd in list(self._held):
            self._close_fd(fd)


def _map_remote(pid: int, fd: int, name: str, nbytes: int) -> memoryview:
    """A writable view of the sender's memfd ``fd``, after checking it is ``name``."""
    try:
        local = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise ShmUnavailable(f"cannot open {name} of process {pid}: {exc}") from exc
    try:
        target = os.readlink(f"/proc/self/fd/{local}")
        if target != f"/memfd:{name} (deleted)" or os.fstat(local).st_size != nbytes:
            raise ShmUnavailable(f"fd {fd} of process {pid} is no longer {name}")
        return _map_fd(local, nbytes)
    except OSError as exc:
        raise ShmUnavailable(f"cannot map {name} of process {pid}: {exc}") from exc
    finally:
        os.close(local)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long
]  # fmt: skip
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value


def _map_fd(fd: int, nbytes: int) -> memoryview:
    """Map ``fd`` shared and writable, keeping no fd: Python's ``mmap`` would keep a dup
    of it for as long as the mapping lives (one fd per received buffer). The mapping is
    unmapped when the last view of it is gone."""
    if nbytes == 0:
        return memoryview(bytearray())
    prot, flags = mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED
    address = _libc.mmap(None, nbytes, prot, flags, fd, 0)
    if address in (None, _MAP_FAILED):
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    region = (ctypes.c_ubyte * nbytes).from_address(address)
    weakref.finalize(region, _libc.munmap, address, nbytes)
    return memoryview(region).cast("B")
