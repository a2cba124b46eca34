"""Same-host transfers without the socket: the socket carries only the message and where
to find its large buffers; the bytes go straight from the sender's memory to the receiver's.

How it works: the receiver asks ``get_data`` with ``shm=<its host identity>#<mode>``. When
the sender is on the same host (same boot, same pid namespace, same user) and shared
memory is on, every out-of-band buffer of at least ``SHM_MIN_BYTES`` stays where it is and
the reply says where, per key, in one of two modes:

* ``read`` (the default): the reply carries the buffer's address in the sender and a
  *ticket*. The receiver copies the bytes with ``process_vm_readv`` (cross-memory attach:
  one kernel copy, sender pages to receiver pages) into a fresh receive buffer
  (``comm/buffers.py``: 2 MiB pages, so 100 faults for 200 MB), then reads the ticket
  back. The sender keeps the buffer alive while the ticket is set and clears the ticket
  *before* letting go, so a ticket still set after the copy proves the copy was of the
  right bytes; anything else is ``ShmUnavailable``. Having checked it, the receiver
  clears the ticket (``process_vm_writev``, best effort) to hand the buffer back, and the
  sender, which looks every ``RETURN_POLL`` seconds while it lends anything, lets go of it
  then instead of after ``hold``. Nothing is created anywhere: no fd, no mapping, no name.
* ``memfd``: each buffer is written into an anonymous ``memfd`` named ``shoal-<pid>-<n>``;
  the reply carries its fd number and size. The receiver opens
  ``/proc/<sender pid>/fd/<fd>``, checks the name, maps it, and the pickle's buffers are
  views of that mapping: the bytes are copied once, by the sender. Used when the receiver
  may not read the sender's memory (``process_vm_readv`` refused: Yama ptrace scope,
  seccomp) and with peers that predate ``read``. Slower where tmpfs pages come 4 KiB at a
  time (measured on the CI VM: 2.4 GB/s for the copy into a fresh memfd, 11-15 GB/s for
  a ``read`` into a huge-page buffer).

Rules of this file:

* Lifetime is the kernel's: a memfd has no name in ``/dev/shm`` or anywhere else, and its
  memory is freed when the last fd and the last mapping are gone; ``read`` makes nothing
  at all. The sender lets go of what it lent (closes the fd, clears the ticket) once the
  receiver had time to take it (``hold`` seconds, or at close). A worker killed at any
  moment leaves nothing behind, because the kernel closes its fds and frees its memory.
* An fd number can be reused after the sender closes it, so the receiver checks the name
  of what it opened (``/proc/self/fd``) before trusting it; an address can be reused after
  the sender lets go, so the receiver checks the ticket after copying.
* Anything that goes wrong on the receiving side raises ``ShmUnavailable``; the caller
  asks again without ``shm`` and asks that peer in the next mode from then on (``read``,
  then ``memfd``, then plain TCP for good), so a host where one way cannot work costs one
  failed try per peer and way.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import mmap
import os
import secrets
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from functools import cache
from typing import Any

import msgspec

from shoal.comm.buffers import receive_buffer
from shoal.comm.core import logger
from shoal.protocol.rpc_workers import WorkerGetData
from shoal.protocol.serialize import Serialized

#: buffers at least this large travel outside the socket
SHM_MIN_BYTES = 1024 * 1024
#: the name prefix of every memfd shoal makes (seen as ``/memfd:shoal-<pid>-<n>``)
SHM_PREFIX = "shoal-"
#: seconds a sender keeps what it lent for the receiver to take it
DEFAULT_HOLD = 10.0
#: seconds between a lending sender's looks for buffers handed back
RETURN_POLL = 0.2
#: buffers a sender lends at most at once (per mode); past it, replies go over TCP
MAX_HELD = 1024
#: the receiver copies from the sender's memory (``process_vm_readv``)
READ = "read"
#: the sender copies into a memfd the receiver maps
MEMFD = "memfd"
#: the modes a receiver tries, best first
MODES = (READ, MEMFD)
_WRITE_CHUNK = 1 << 30  # os.write takes at most ~2 GiB at once


class ShmUnavailable(Exception):
    """The buffers of a reply could not be taken here; fetch them over the socket."""


@cache
def host_identity() -> str:
    """Who can open our fds and read our memory: same boot, pid namespace and user.
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


def _split_request(requester: object) -> tuple[str, str]:
    """(identity, mode) of a ``shm`` argument; a bare identity is an older peer: memfd."""
    if not isinstance(requester, str):
        return "", ""
    identity, sep, mode = requester.rpartition("#")
    return (identity, mode) if sep else (requester, MEMFD)


class SharedMemoryTransfers:
    """One worker's side of same-host transfers, as sender and as receiver."""

    def __init__(
        self, enabled: bool = True, hold: float = DEFAULT_HOLD, modes: tuple[str, ...] = MODES
    ) -> None:
        self.identity = host_identity() if enabled else ""
        self.hold = hold
        #: the modes this worker asks for, best first (tests narrow it)
        self.modes = modes
        #: memfds handed out and not yet closed: fd -> when to close it
        self._held: dict[int, float] = {}
        #: buffers lent by address: ticket slot -> (the buffer, when to let go)
        self._lent: dict[int, tuple[memoryview, float]] = {}
        self._tickets = (ctypes.c_uint64 * MAX_HELD)()
        self._next_ticket = itertools.count(secrets.randbits(62) + 1)
        #: peers that failed in a mode: peer -> how many of ``modes`` to skip
        self._demoted: dict[str, int] = {}
        self._names = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        #: buffers lent out since start, in either mode
        self.lent_total = 0

    @property
    def held(self) -> int:
        """How many buffers this worker holds lent out for receivers."""
        return len(self._held) + len(self._lent)

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
            peer, msgspec.structs.replace(request, **extra), **options
        )
        if not extra or not reply.get("shm"):
            return reply
        try:
            # a ``read`` copies 200 MB in ~30 ms: not on the event loop
            return await asyncio.to_thread(self.receive, reply)
        except ShmUnavailable as exc:
            logger.info("shared memory with %s does not work, using TCP: %s", peer, exc)
            self.refuse(peer)
            reply = await call(peer, request, **options)
            return reply

    def request_kwargs(self, peer: str) -> dict[str, Any]:
        """Extra ``get_data`` arguments for ``peer``: our identity and mode, if any."""
        skip = self._demoted.get(peer, 0)
        if not self.identity or skip >= len(self.modes):
            return {}
        return {"shm": f"{self.identity}#{self.modes[skip]}"}

    def refuse(self, peer: str) -> None:
        """The mode we asked ``peer`` in did not work: ask in the next one from now on."""
        self._demoted[peer] = self._demoted.get(peer, 0) + 1

    def receive(self, reply: Mapping[str, Any]) -> Mapping[str, Any]:
        """``reply`` with the buffers it names outside the socket put into its values."""
        placed = reply.get("shm")
        if not placed:
            return reply
        pid = int(reply["shm_pid"])
        mode = reply.get("shm_mode", MEMFD)
        data = dict(reply["data"])
        for key, entries in placed.items():
            value: Serialized = data[key]
            buffers = list(value.buffers)
            for entry in entries:
                if mode == READ:
                    index, address, nbytes, ticket_at, ticket = map(int, entry)
                    buffers[index] = _read_remote(pid, address, nbytes, ticket_at, ticket)
                elif mode == MEMFD:
                    index, name, fd, nbytes = entry
                    buffers[index] = _map_remote(pid, int(fd), str(name), int(nbytes))
                else:
                    raise ShmUnavailable(f"unknown shared memory mode {mode!r}")
            data[key] = Serialized(value.header, tuple(buffers))
        return {**reply, "data": data}

    # -- sender --------------------------------------------------------------------------
    def wants(self, requester: object) -> bool:
        """True when the requester can take our buffers (same host identity, shm on)."""
        identity, mode = _split_request(requester)
        same_host = bool(self.identity) and identity == self.identity
        if not same_host or mode not in MODES:
            return False
        return len(self._lent if mode == READ else self._held) < MAX_HELD

    def place(self, reply: dict[str, Any], requester: object = None) -> None:
        """Take the large buffers of ``reply["data"]`` out of it (in place), lent in the
        mode ``requester`` asked for (memfd when it names none)."""
        mode = _split_request(requester)[1] if requester is not None else MEMFD
        data: dict[Any, Serialized] = reply["data"]
        placed: dict[Any, list[list[Any]]] = {}
        for key, value in list(data.items()):
            if not any(b.nbytes >= SHM_MIN_BYTES for b in value.buffers):
                continue
            entries: list[list[Any]] = []
            buffers = list(value.buffers)
            for index, buf in enumerate(buffers):
                if buf.nbytes < SHM_MIN_BYTES:
                    continue
                self.lent_total += 1
                if mode == READ:
                    entries.append([index, *self._lend(buf)])
                else:
                    name, fd = self._export(buf)
                    entries.append([index, name, fd, buf.nbytes])
                buffers[index] = memoryview(b"")
            data[key] = Serialized(value.header, tuple(buffers))
            placed[key] = entries
        if placed:
            reply["shm"] = placed
            reply["shm_pid"] = os.getpid()
            reply["shm_mode"] = mode

    async def place_soon(self, reply: dict[str, Any], requester: object = None) -> None:
        """``place``, then make sure what it lent is let go after ``hold`` seconds. A memfd
        copy runs in a helper thread (it would hold the loop); lending by address is
        instant."""
        if any(b.nbytes >= SHM_MIN_BYTES for v in reply["data"].values() for b in v.buffers):
            if _split_request(requester)[1] == READ:
                self.place(reply, requester)
            else:
                await asyncio.to_thread(self.place, reply, requester)
            self.schedule_expiry()

    def _lend(self, buf: memoryview) -> tuple[int, int, int, int]:
        """(address, nbytes, ticket address, ticket) of ``buf``, kept alive until let go."""
        slot = next(s for s in range(MAX_HELD) if s not in self._lent)  # wants() left one
        ticket = next(self._next_ticket)
        self._tickets[slot] = ticket
        self._lent[slot] = (buf, time.monotonic() + self.hold)
        ticket_at = ctypes.addressof(self._tickets) + slot * ctypes.sizeof(ctypes.c_uint64)
        return _address_of(buf), buf.nbytes, ticket_at, ticket

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
        """Let go of lent buffers once handed back or their ``hold`` is over (call on the
        event loop)."""
        if self._timer is None and (self._held or self._lent):
            delay = min(self.hold, RETURN_POLL) if self._lent else self.hold
            self._timer = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        self._timer = None
        now = time.monotonic()
        for fd, deadline in list(self._held.items()):
            if deadline <= now:
                self._close_fd(fd)
        for slot, (_, deadline) in list(self._lent.items()):
            if deadline <= now or self._tickets[slot] == 0:  # over, or handed back
                self._let_go(slot)
        self.schedule_expiry()

    def _close_fd(self, fd: int) -> None:
        del self._held[fd]
        os.close(fd)

    def _let_go(self, slot: int) -> None:
        self._tickets[slot] = 0  # first: a reader that copies from now on sees it gone
        del self._lent[slot]

    def close(self) -> None:
        """Let go of everything still lent (receivers that mapped a memfd keep their
        mapping; a ``read`` not finished by now fails its ticket check)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for fd in list(self._held):
            self._close_fd(fd)
        for slot in list(self._lent):
            self._let_go(slot)


# -- read: process_vm_readv ----------------------------------------------------------------
class _PyBuffer(ctypes.Structure):
    _fields_ = [
        ("buf", ctypes.c_void_p), ("obj", ctypes.c_void_p), ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t), ("readonly", ctypes.c_int), ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p), ("shape", ctypes.c_void_p), ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p), ("internal", ctypes.c_void_p),
    ]  # fmt: skip


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_api = ctypes.pythonapi
_api.PyObject_GetBuffer.argtypes = [ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int]
_api.PyBuffer_Release.argtypes = [ctypes.POINTER(_PyBuffer)]
_PyBUF_C_CONTIGUOUS = 0x0038  # C-contiguous, with strides; readonly is fine


def _address_of(buf: object) -> int:
    """Where the bytes of a C-contiguous buffer start (the caller keeps ``buf`` alive)."""
    view = _PyBuffer()
    _api.PyObject_GetBuffer(buf, ctypes.byref(view), _PyBUF_C_CONTIGUOUS)  # raises if not
    try:
        return int(view.buf or 0)
    finally:
        _api.PyBuffer_Release(ctypes.byref(view))


_libc = ctypes.CDLL(None, use_errno=True)
_process_vm_readv = getattr(_libc, "process_vm_readv", None)
_process_vm_writev = getattr(_libc, "process_vm_writev", None)
for _call in (_process_vm_readv, _process_vm_writev):
    if _call is not None:
        _call.restype = ctypes.c_ssize_t
        _call.argtypes = [
            ctypes.c_int, ctypes.POINTER(_IoVec), ctypes.c_ulong,
            ctypes.POINTER(_IoVec), ctypes.c_ulong, ctypes.c_ulong,
        ]  # fmt: skip


def _read_into(pid: int, local: int, remote: int, nbytes: int, what: str) -> None:
    if _process_vm_readv is None:
        raise ShmUnavailable("process_vm_readv is not available here")
    done = 0
    while done < nbytes:
        mine, theirs = _IoVec(local + done, nbytes - done), _IoVec(remote + done, nbytes - done)
        count = _process_vm_readv(pid, ctypes.byref(mine), 1, ctypes.byref(theirs), 1, 0)
        if count <= 0:
            err = ctypes.get_errno()
            reason = os.strerror(err) if count < 0 else "nothing read"
            raise ShmUnavailable(f"cannot read {what} of process {pid}: {reason}")
        done += count


def _read_remote(pid: int, address: int, nbytes: int, ticket_at: int, ticket: int) -> memoryview:
    """A copy of ``nbytes`` at ``address`` in process ``pid``, after checking it was lent."""
    try:
        payload = receive_buffer(nbytes)
    except MemoryError as exc:
        raise ShmUnavailable(f"cannot allocate {nbytes} bytes") from exc
    view = memoryview(payload)
    if nbytes:
        _read_into(pid, _address_of(view), address, nbytes, "a buffer")
    seen = ctypes.c_uint64(0)
    _read_into(pid, ctypes.addressof(seen), ticket_at, ctypes.sizeof(seen), "a ticket")
    if seen.value != ticket:
        raise ShmUnavailable(f"process {pid} no longer lends that buffer")
    _hand_back(pid, ticket_at)
    return view


def _hand_back(pid: int, ticket_at: int) -> None:
    """Clear the ticket in the sender so that it lets go now (best effort: else at hold).
    Should the sender have let go and lent the slot anew in between, the new reader's
    check fails and it falls back: never wrong bytes."""
    if _process_vm_writev is None:
        return
    zero = ctypes.c_uint64(0)
    size = ctypes.sizeof(zero)
    mine, theirs = _IoVec(ctypes.addressof(zero), size), _IoVec(ticket_at, size)
    _process_vm_writev(pid, ctypes.byref(mine), 1, ctypes.byref(theirs), 1, 0)


# -- memfd -------------------------------------------------------------------------------
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
