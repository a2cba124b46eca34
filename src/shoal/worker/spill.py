"""The spill buffer: ``worker.data`` keeps recent values in memory and the rest on disk.

Rules of this file:

* A key lives in exactly one of three places: ``fast`` (in memory, least recently used
  first), ``pending`` (still in memory, queued to be written to disk) or ``slow`` (on disk
  only). ``data.memory`` (alias ``fast``) shows the first two, ``data.disk`` (alias
  ``slow``) the third.
* The event loop only moves references between those dicts: storing, deleting and
  evicting cost O(1) per key and never touch the disk. One writer thread pickles and
  writes pending values and unlinks the files of freed keys. Spilled keys are read by
  whichever thread asks (a task's thread for its inputs, a helper thread for ``get_data``).
* ``_lock`` guards the dicts and the weights; nobody holds it while pickling or doing IO.
* Past ``target`` bytes in fast the least recently used keys move from fast to pending; a
  value larger than ``target`` goes to pending at once. Pending values are on their way
  out: memory falls back under the target once the writer has caught up.
* Reading a spilled key does not bring it back into memory: the reader holds the value as
  long as it needs it, and no other key has to be evicted (and written) to make room.
* A value that cannot be written (unpicklable, disk full) goes back to fast, pinned: it is
  never evicted again and nothing is lost. Each cause is logged once.
* Pending values still take memory, so a task thread waits for the writer to catch up
  (``wait_for_writes``, bounded) before it runs: otherwise a task that started before the
  monitor paused the worker adds its result on top of values not yet written, and a
  worker near its limit is restarted by its nanny instead of spilling. The writer may be
  ``behind`` by the room between the target and the spill threshold, so that one task
  computes while the last result is written (2x faster persisting past the target).
  Once written, a value is dropped at once (the writer keeps no reference to it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import logging
import os
import queue
import shutil
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from typing import Any

from shoal._types import Key
from shoal.comm.buffers import receive_buffer
from shoal.config import WorkerConfig
from shoal.protocol.serialize import Serialized, deserialize, serialize
from shoal.sizes import format_bytes
from shoal.worker.execute import sizeof

logger = logging.getLogger("shoal.worker")

#: frames in a spill file start at multiples of this (numpy likes aligned buffers)
_ALIGN = 64
_U64 = struct.Struct("<Q")

#: return freed memory to the OS after this many bytes were spilled (glibc keeps it otherwise)
_TRIM_EVERY = 64 * 2**20


class _InMemory:
    """A value held in memory, with its sizeof weight and a unique id (its file name)."""

    __slots__ = ("ident", "pinned", "value", "weight")

    def __init__(self, value: object, weight: int, ident: int) -> None:
        self.value = value
        self.weight = weight
        self.ident = ident
        #: True once writing it failed: it stays in memory for good
        self.pinned = False


class _OnDisk:
    """A spilled value: its file, its sizeof weight and the file's size."""

    __slots__ = ("nbytes", "path", "weight")

    def __init__(self, path: str, weight: int, nbytes: int) -> None:
        self.path = path
        self.weight = weight
        self.nbytes = nbytes


class SpillBuffer(MutableMapping[Key, Any]):
    """A mapping that spills least-recently-used values to ``directory`` past ``target`` bytes."""

    def __init__(
        self,
        directory: str,
        target: float,
        *,
        weight: Callable[[object], int] = sizeof,
    ) -> None:
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        #: bytes of values to keep in fast; past it the least recently used are queued for disk
        self.target = target
        self._weight = weight
        self._lock = threading.Lock()
        #: notified (under _lock) whenever pending_weight goes down
        self._drained = threading.Condition(self._lock)
        self._fast: OrderedDict[Key, _InMemory] = OrderedDict()  # oldest first
        self._pending: dict[Key, _InMemory] = {}
        self._slow: dict[Key, _OnDisk] = {}
        #: sum of weights in _fast / _pending / _slow; file bytes in _slow
        self.fast_weight = 0
        self.pending_weight = 0
        self.slow_weight = 0
        self.disk_bytes = 0
        self._ids = itertools.count()
        self._logged: set[str] = set()
        self._closed = False
        self.memory: Mapping[Key, Any] = _MemoryView(self)
        self.disk: Mapping[Key, Any] = _DiskView(self)
        self.fast = self.memory
        self.slow = self.disk
        self._writer = _Writer(self)

    # -- MutableMapping ---------------------------------------------------------------------
    def __setitem__(self, key: Key, value: object) -> None:
        weight = self._weight(value)
        with self._lock:
            self._discard(key)
            entry = _InMemory(value, weight, next(self._ids))
            if weight > self.target:
                self._queue_write(key, entry)
            else:
                self._fast[key] = entry
                self.fast_weight += weight
            self._evict_over_target()

    def __getitem__(self, key: Key) -> Any:
        """The value; a spilled one is read from disk here (blocking: not on the event loop)."""
        values, paths = self.peek((key,))
        if key in values:
            return values[key]
        if key in paths:
            return read_value(key, paths[key])
        raise KeyError(key)

    def __delitem__(self, key: Key) -> None:
        with self._lock:
            if not self._discard(key):
                raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._fast or key in self._pending or key in self._slow

    def __len__(self) -> int:
        with self._lock:
            return len(self._fast) + len(self._pending) + len(self._slow)

    def __iter__(self) -> Iterator[Key]:
        with self._lock:
            keys = [*self._fast, *self._pending, *self._slow]
        return iter(keys)

    # -- what the worker uses ---------------------------------------------------------------
    def peek(self, keys: Iterable[Key]) -> tuple[dict[Key, object], dict[Key, str]]:
        """In-memory values of ``keys`` (now most recently used) and files of spilled ones.

        Never blocks on IO; absent keys are in neither result.
        """
        values: dict[Key, object] = {}
        paths: dict[Key, str] = {}
        with self._lock:
            for key in keys:
                entry = self._fast.get(key) or self._pending.get(key)
                if entry is not None:
                    values[key] = entry.value
                    if key in self._fast:
                        self._fast.move_to_end(key)
                elif key in self._slow:
                    paths[key] = self._slow[key].path
        return values, paths

    def evict(self, nbytes: int) -> int:
        """Queue least-recently-used values of at least ``nbytes`` in all for disk; how many."""
        queued = 0
        with self._lock:
            while queued < nbytes:
                moved = self._evict_oldest()
                if moved == 0:
                    break
                queued += moved
        return queued

    @property
    def spillable_weight(self) -> int:
        """Bytes in fast that ``evict`` could still move to disk (pinned values excluded)."""
        with self._lock:
            return sum(e.weight for e in self._fast.values() if not e.pinned)

    def wait_for_writes(self, timeout: float, behind: int = 0) -> bool:
        """Block until at most ``behind`` bytes wait to be written; False if more still do
        after ``timeout``."""
        with self._drained:
            return self._drained.wait_for(lambda: self.pending_weight <= behind, timeout)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until all queued writes and unlinks are done; False on timeout."""
        return self._writer.flush(timeout)

    def close(self) -> None:
        """Stop the writer, forget everything, remove the spill files (blocking)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._fast.clear()
            self._pending.clear()
            self._slow.clear()
            self.fast_weight = self.pending_weight = self.slow_weight = self.disk_bytes = 0
            self._drained.notify_all()
        self._writer.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __repr__(self) -> str:
        return (
            f"<SpillBuffer memory={len(self._fast) + len(self._pending)} "
            f"disk={len(self._slow)} pending={len(self._pending)} dir={self.directory!r}>"
        )

    # -- under the lock ---------------------------------------------------------------------
    def _discard(self, key: Key) -> bool:
        entry = self._fast.pop(key, None)
        if entry is not None:
            self.fast_weight -= entry.weight
            return True
        entry = self._pending.pop(key, None)
        if entry is not None:  # the writer notices and drops (or unlinks) its write
            self.pending_weight -= entry.weight
            self._drained.notify_all()
            return True
        on_disk = self._slow.pop(key, None)
        if on_disk is not None:
            self.slow_weight -= on_disk.weight
            self.disk_bytes -= on_disk.nbytes
            self._writer.unlink(on_disk.path)
            return True
        return False

    def _evict_over_target(self) -> None:
        while self.fast_weight > self.target and self._evict_oldest():
            pass

    def _evict_oldest(self) -> int:
        for key, entry in self._fast.items():
            if not entry.pinned:
                del self._fast[key]
                self.fast_weight -= entry.weight
                self._queue_write(key, entry)
                return entry.weight
        return 0

    def _queue_write(self, key: Key, entry: _InMemory) -> None:
        self._pending[key] = entry
        self.pending_weight += entry.weight
        self._writer.write(key, entry)

    # -- called by the writer thread --------------------------------------------------------
    def _path(self, entry: _InMemory) -> str:
        return os.path.join(self.directory, f"{entry.ident}.spill")

    def _still_pending(self, key: Key, entry: _InMemory) -> bool:
        with self._lock:
            return self._pending.get(key) is entry

    def _written(self, key: Key, entry: _InMemory, path: str, nbytes: int) -> bool:
        """Move ``key`` from pending to slow, unless it was freed or replaced meanwhile."""
        with self._lock:
            if self._pending.get(key) is not entry:
                return False
            del self._pending[key]
            self.pending_weight -= entry.weight
            entry.value = None  # on disk now: its memory goes back at once
            self._slow[key] = _OnDisk(path, entry.weight, nbytes)
            self.slow_weight += entry.weight
            self.disk_bytes += nbytes
            self._drained.notify_all()
            return True

    def _write_failed(self, key: Key, entry: _InMemory, exc: Exception) -> None:
        """Keep ``key`` in memory for good; log the cause once."""
        with self._lock:
            if self._pending.get(key) is entry:
                del self._pending[key]
                self.pending_weight -= entry.weight
                entry.pinned = True
                self._fast[key] = entry
                self.fast_weight += entry.weight
                self._drained.notify_all()
        cause = type(exc).__name__
        if cause not in self._logged:
            self._logged.add(cause)
            logger.error(
                "could not spill %r to %s (%s: %s); keeping it, and any other value that "
                "fails this way, in memory",
                key,
                self.directory,
                cause,
                exc,
            )


class _Writer:
    """The thread that writes pending values and removes freed files, in queue order."""

    def __init__(self, buffer: SpillBuffer) -> None:
        self._buffer = buffer
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._since_trim = 0
        self._thread = threading.Thread(target=self._run, name="shoal-spill", daemon=True)
        self._thread.start()

    def write(self, key: Key, entry: _InMemory) -> None:
        self._queue.put(("write", key, entry))

    def unlink(self, path: str) -> None:
        self._queue.put(("unlink", path))

    def flush(self, timeout: float | None) -> bool:
        done = threading.Event()
        self._queue.put(("flush", done))
        return done.wait(timeout)

    def stop(self) -> None:
        self._queue.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _run(self) -> None:
        while (op := self._queue.get()) is not None:
            if op[0] == "write":
                self._write(op[1], op[2])
            elif op[0] == "unlink":
                _unlink(op[1])
            else:
                op[1].set()
            del op  # not held while waiting for the next: it may be a freed 1 GB value
            if self._since_trim >= _TRIM_EVERY and self._queue.empty():
                self._since_trim = 0
                trim_memory()

    def _write(self, key: Key, entry: _InMemory) -> None:
        buffer = self._buffer
        if not buffer._still_pending(key, entry):
            return
        path = buffer._path(entry)
        try:
            nbytes = write_serialized(path, serialize(entry.value))
        except Exception as exc:  # unpicklable, disk full, ...: the value stays in memory
            _unlink(path)
            buffer._write_failed(key, entry, exc)
            return
        if buffer._written(key, entry, path, nbytes):
            self._since_trim += nbytes
        else:
            _unlink(path)  # freed or replaced while it was being written


# -- spill files --------------------------------------------------------------------------------
# Layout: frame count n (u64), n frame lengths (u64), then the frames, each starting at a
# multiple of _ALIGN. Frame 0 is the pickle stream, the others its out-of-band buffers.


def _aligned(offset: int) -> int:
    return -(-offset // _ALIGN) * _ALIGN


def write_serialized(path: str, blob: Serialized) -> int:
    """Write ``blob`` to ``path``; the file's size in bytes."""
    frames = [memoryview(blob.header).cast("B"), *(b.cast("B") for b in blob.buffers)]
    table = struct.pack(f"<{len(frames) + 1}Q", len(frames), *(f.nbytes for f in frames))
    offset = len(table)
    with open(path, "wb") as f:
        f.write(table)
        for frame in frames:
            start = _aligned(offset)
            f.write(b"\0" * (start - offset))
            f.write(frame)
            offset = start + frame.nbytes
    return offset


def read_serialized(path: str) -> Serialized:
    """Read a spill file back; the buffers are views into one writable buffer.

    The buffer is a ``receive_buffer``: workers give freed memory back to the system
    (``MALLOC_TRIM_THRESHOLD_``), so a fresh ``bytearray`` takes a page fault per 4 KiB
    (3x slower reads of 10 MB values measured on the CI VM); huge pages fault in 2 MiB
    at a time."""
    with open(path, "rb") as f:
        data = receive_buffer(os.fstat(f.fileno()).st_size)
        view = memoryview(data)
        done = 0
        while done < len(data):
            n = f.readinto(view[done:])
            if not n:
                raise OSError(f"spill file {path} is shorter than expected")
            done += n
    (count,) = _U64.unpack_from(view, 0)
    lengths = struct.unpack_from(f"<{count}Q", view, _U64.size)
    offset = _U64.size * (count + 1)
    frames = []
    for length in lengths:
        start = _aligned(offset)
        frames.append(view[start : start + length])
        offset = start + length
    return Serialized(frames[0], tuple(frames[1:]))


def read_value(key: Key, path: str) -> Any:
    """The value spilled to ``path``; KeyError if it was freed meanwhile."""
    try:
        blob = read_serialized(path)
    except FileNotFoundError:
        raise KeyError(key) from None
    return deserialize(blob)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _load_malloc_trim() -> Callable[[int], int] | None:
    # the C library this process already has (``find_library`` would fork ``ldconfig``)
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc
        return None
    return trim


_MALLOC_TRIM = _load_malloc_trim()


def trim_memory() -> None:
    """Hand freed heap memory back to the OS (glibc keeps it otherwise; no-op elsewhere)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


# -- views and task inputs ----------------------------------------------------------------------


class _MemoryView(Mapping[Key, Any]):
    """``data.memory`` / ``data.fast``: the values held in memory (read-only)."""

    def __init__(self, buffer: SpillBuffer) -> None:
        self._b = buffer

    def __getitem__(self, key: Key) -> Any:
        with self._b._lock:
            entry = self._b._fast.get(key) or self._b._pending.get(key)
        if entry is None:
            raise KeyError(key)
        return entry.value

    def __contains__(self, key: object) -> bool:
        with self._b._lock:
            return key in self._b._fast or key in self._b._pending

    def __iter__(self) -> Iterator[Key]:
        with self._b._lock:
            keys = [*self._b._fast, *self._b._pending]
        return iter(keys)

    def __len__(self) -> int:
        with self._b._lock:
            return len(self._b._fast) + len(self._b._pending)


class _DiskView(Mapping[Key, Any]):
    """``data.disk`` / ``data.slow``: the spilled values (reading one blocks on the disk)."""

    def __init__(self, buffer: SpillBuffer) -> None:
        self._b = buffer

    def __getitem__(self, key: Key) -> Any:
        on_disk = self._b._slow.get(key)
        if on_disk is None:
            raise KeyError(key)
        return read_value(key, on_disk.path)

    def __contains__(self, key: object) -> bool:
        return key in self._b._slow

    def __iter__(self) -> Iterator[Key]:
        with self._b._lock:
            keys = list(self._b._slow)
        return iter(keys)

    def __len__(self) -> int:
        return len(self._b._slow)


class TaskInputs(Mapping[Key, Any]):
    """A task's inputs: in-memory values taken on the loop, spilled ones read on first use.

    Made on the event loop, read in the task's thread, so disk reads never block the loop.
    """

    def __init__(self, values: dict[Key, object], paths: Mapping[Key, str]) -> None:
        self._values = values
        self._paths = dict(paths)

    def __getitem__(self, key: Key) -> Any:
        if key not in self._values and key in self._paths:
            self._values[key] = read_value(key, self._paths.pop(key))
        return self._values[key]

    def __iter__(self) -> Iterator[Key]:
        return iter([*self._values, *self._paths])

    def __len__(self) -> int:
        return len(self._values) + len(self._paths)


def make_data(
    data: MutableMapping[Key, Any] | Callable[[], MutableMapping[Key, Any]] | None,
    directory: str,
    config: WorkerConfig,
) -> MutableMapping[Key, Any]:
    """``worker.data``: the given mapping (or what the factory makes), else a SpillBuffer
    when there is a memory limit and a target or spill fraction, else a plain dict."""
    if data is not None:
        return data() if callable(data) else data
    limit = config.memory_limit
    target = config.memory_target_fraction or config.memory_spill_fraction
    if not limit or not target:
        return {}
    if not config.memory_target_fraction:  # only the monitor spills
        return SpillBuffer(directory, float("inf"))
    return SpillBuffer(directory, limit * target)


def wait_for_spill_writes(
    data: object, timeout: float, behind: int = 0
) -> Callable[[], None] | None:
    """What a task thread calls before it runs: wait (at most ``timeout`` seconds) until at
    most ``behind`` bytes of values queued for disk are still unwritten, so results do not
    pile up on memory that is still in use. None when ``data`` does not spill in the
    background."""
    if not isinstance(data, SpillBuffer):
        return None
    buffer = data

    def wait() -> None:
        if buffer.pending_weight > behind and not buffer.wait_for_writes(timeout, behind):
            logger.warning(
                "the spill writer is %s behind after %.0fs; running the task anyway",
                format_bytes(buffer.pending_weight),
                timeout,
            )

    return wait


def task_inputs(data: MutableMapping[Key, Any], keys: Iterable[Key]) -> Mapping[Key, Any]:
    """The values of ``keys`` for a task, without reading the disk on the calling thread.

    Any other mapping (a custom ``data=``) is read right away, as before.
    """
    if isinstance(data, SpillBuffer):
        values, paths = data.peek(keys)
        return TaskInputs(values, paths)
    return {key: data[key] for key in keys}


async def serialized_values(
    data: MutableMapping[Key, Any], keys: Iterable[Key]
) -> dict[Key, Serialized]:
    """``keys`` present in ``data``, pickled; spill files are read in a helper thread."""
    if not isinstance(data, SpillBuffer):
        return {k: serialize(data[k]) for k in keys if k in data}
    values, paths = data.peek(keys)
    out = {k: serialize(v) for k, v in values.items()}
    if paths:
        out.update(await asyncio.to_thread(_read_files, paths))
    return out


def _read_files(paths: Mapping[Key, str]) -> dict[Key, Serialized]:
    out: dict[Key, Serialized] = {}
    for key, path in paths.items():
        with contextlib.suppress(FileNotFoundError):  # freed meanwhile: the peer asks elsewhere
            out[key] = read_serialized(path)
    return out


__all__ = [
    "SpillBuffer",
    "TaskInputs",
    "make_data",
    "serialized_values",
    "task_inputs",
    "trim_memory",
    "wait_for_spill_writes",
]
