"""The task record of a WorkerState, and the lazy heap its queues are built from.

Pure: no IO, no clock. See ``state.py`` for the rules of the machine.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from shoal._types import Address, Key
from shoal.worker.events import ErrorInfo

#: lower runs (or is fetched) first; compared as tuples
Priority = tuple[float, ...]
#: the priority of a key nobody here has asked for yet (e.g. a replica): after everything
LOWEST_PRIORITY: Priority = (float("inf"),)
#: the size assumed for a dependency whose size we were not told
DEFAULT_NBYTES = 1024
#: shared default for mappings a task usually leaves empty (replaced, never mutated)
_NOTHING: Mapping[str, Any] = MappingProxyType({})


class WorkerTask:
    """One key as this worker sees it: something to compute, to fetch, or to hold.

    A task stays in ``WorkerState.tasks`` while it is *wanted*: assigned here by the
    scheduler, requested here as a replica, or an input of another task here. A task
    nobody wants is forgotten, unless a thread or a transfer is still busy with it: then it
    is ``cancelled`` until that activity reports back.
    """

    __slots__ = (
        "_uid",
        "annotations",
        "assigned",
        "coming_from",
        "dependencies",
        "dependents",
        "error",
        "exec_run_id",
        "inline_result",
        "key",
        "nbytes",
        "prefix",
        "previous",
        "priority",
        "replica",
        "reported",
        "resource_restrictions",
        "run_id",
        "run_spec",
        "start",
        "state",
        "stop",
        "type_name",
        "waiting_for_data",
        "who_has",
    )

    def __init__(self, key: Key, uid: int = 0) -> None:
        #: the task's key
        self.key: Key = key
        #: unique within its WorkerState; the hash, so sets of tasks iterate reproducibly
        self._uid = uid
        #: one of the state names in ``shoal._types.WorkerTaskStateName``
        self.state: str = "released"
        #: opaque serialized run spec; only the executor reads it (None: a pure input here)
        self.run_spec: object = None
        #: the scheduler's latest attempt id for computing this key here (None: never asked)
        self.run_id: int | None = None
        #: run id of the Execute busy in a thread (None if none); a completion must match it
        self.exec_run_id: int | None = None
        #: the scheduler wants it computed (or kept) here; cleared by KeysFreed and stealing
        self.assigned: bool = False
        #: the latest assignment asked for a small result's copy (a client waits for it)
        self.inline_result: bool = False
        #: the scheduler asked for a copy of this key here (ReplicasRequested)
        self.replica: bool = False
        #: the scheduler knows we hold it (and has not freed it): a drop is announced
        self.reported: bool = False
        #: lower runs first; an input inherits the best priority of its dependents
        self.priority: Priority = LOWEST_PRIORITY
        #: inputs of this task (only linked for tasks assigned here)
        self.dependencies: set[WorkerTask] = set()
        #: tasks here that take this one as an input
        self.dependents: set[WorkerTask] = set()
        #: while ``waiting``: the dependencies not yet in memory; empty in every other state
        self.waiting_for_data: set[WorkerTask] = set()
        #: peers we believe hold this key (never our own address)
        self.who_has: set[Address] = set()
        #: bytes: measured in memory, else the scheduler's figure; frozen while in flight
        self.nbytes: int | None = None
        #: abstract resources held while running, e.g. {"GPU": 1}
        self.resource_restrictions: Mapping[str, float] = _NOTHING
        #: the scheduler's annotations, passed through for the shell
        self.annotations: Mapping[str, object] = _NOTHING
        #: in ``error``: what went wrong
        self.error: ErrorInfo | None = None
        #: in ``flight`` (or cancelled out of it): the peer the transfer is reading from
        self.coming_from: Address | None = None
        #: in ``cancelled``: the activity still busy (executing, long-running, flight); there
        #: is no ``next``: nobody wants it, and if wanted again it returns to ``previous``
        self.previous: str | None = None
        #: in memory: the value's type name (for TaskFinishedMsg)
        self.type_name: str = ""
        #: in memory: when computing it started and stopped (arrival time if fetched)
        self.start = self.stop = 0.0
        #: ``key_split(key)`` once asked for (``state_run_ahead.prefix_of``)
        self.prefix: str | None = None

    def __hash__(self) -> int:
        return self._uid

    def fetch_nbytes(self) -> int:
        """The bytes a transfer of this key is counted for."""
        return self.nbytes if self.nbytes is not None else DEFAULT_NBYTES

    def __repr__(self) -> str:
        return f"<WorkerTask {self.key!r} {self.state}>"


class KeyHeap:
    """Keys ordered by (priority, arrival); each key is in it at most once.

    ``discard`` is O(1) and lazy: the key's heap entry stays behind and is skipped when it
    reaches the top. Pushing compacts the heap when stale entries outnumber live ones, so
    memory stays bounded at about twice the live size. Arrival numbers come from a counter
    shared by all heaps of one WorkerState, so entries of different heaps compare in FIFO
    order when their priorities tie, and keys themselves are never compared.
    """

    __slots__ = ("_counter", "_heap", "_live")

    def __init__(self, counter: Iterator[int]) -> None:
        #: the owner's arrival counter
        self._counter = counter
        #: (priority, arrival, key); may hold stale entries
        self._heap: list[tuple[Priority, int, Key]] = []
        #: key -> arrival number of its one live entry
        self._live: dict[Key, int] = {}

    def push(self, key: Key, priority: Priority) -> None:
        """Add ``key``, or move it to ``priority`` if it is already in."""
        seq = next(self._counter)
        live = self._live
        live[key] = seq
        heap = self._heap
        heapq.heappush(heap, (priority, seq, key))
        if len(heap) > 2 * len(live) + 32:
            self._heap = [entry for entry in heap if live.get(entry[2]) == entry[1]]
            heapq.heapify(self._heap)

    def discard(self, key: Key) -> None:
        self._live.pop(key, None)

    def peek_entry(self) -> tuple[Priority, int, Key] | None:
        """The live (priority, arrival, key) at the top, or None if empty."""
        heap = self._heap
        live = self._live
        while heap:
            entry = heap[0]
            if live.get(entry[2]) == entry[1]:
                return entry
            heapq.heappop(heap)
        return None

    def peek(self) -> Key | None:
        entry = self.peek_entry()
        return None if entry is None else entry[2]

    def pop(self) -> Key:
        entry = self.peek_entry()
        if entry is None:
            raise IndexError("pop from an empty KeyHeap")
        heapq.heappop(self._heap)
        del self._live[entry[2]]
        return entry[2]

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: object) -> bool:
        return key in self._live

    def __iter__(self) -> Iterator[Key]:
        """Live keys, first out first (O(n log n): for inspection, not the hot path)."""
        return iter([entry[2] for entry in self.live_entries()])

    def entries(self) -> list[tuple[Priority, Key]]:
        """Live (priority, key) pairs, first out first (for inspection)."""
        return [(entry[0], entry[2]) for entry in self.live_entries()]

    def live_entries(self) -> list[tuple[Priority, int, Key]]:
        """Live (priority, arrival, key) entries, first out first (for inspection)."""
        live = self._live
        return sorted(entry for entry in self._heap if live.get(entry[2]) == entry[1])

    def __repr__(self) -> str:
        return f"KeyHeap({list(self)!r})"


def drop_has_what(has_what: dict[Address, set[Key]], worker: Address, key: Key) -> None:
    """``worker`` no longer counts as a holder of ``key``; drop empty entries."""
    keys = has_what.get(worker)
    if keys is not None:
        keys.discard(key)
        if not keys:
            del has_what[worker]
