"""The scheduler's records (tasks, workers, clients, prefixes) and its two indexes.

Slotted dataclasses compared by identity, with the invariants written beside the fields;
``state_transitions`` keeps them.
Containers that are ever iterated to make a decision or emit an instruction are dicts used
as insertion-ordered sets (``dict[X, None]``), so that one event sequence always produces
the same instructions: sets of objects or strings iterate in an order that changes from
run to run.

Memory (a million tasks must fit in ~2 KB each): most of a task's containers stay empty
for its whole life (a map task has no dependencies, dependents or waiters), and an empty
dict is 64 bytes, an empty set 216. So every record starts with the shared, insert-refusing
``EMPTY_DICT`` / ``EMPTY_SET``, and code that inserts first gives the record a container of
its own (``if ts.x is EMPTY_DICT: ts.x = {}``); a missed site raises instead of sharing.
``who_wants`` is a tuple of client ids: nearly always one, or none.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from shoal._types import Address, Key, SchedulerTaskStateName
from shoal.scheduler.policy import DEFAULT_DURATION, RestrictionSig, fill

if TYPE_CHECKING:
    from typing import TypeAlias

    #: an entry of a lazy heap: (sort key, sequence number, record)
    _QueueEntry: TypeAlias = "tuple[tuple[float, ...], int, SchedulerTask]"
    _FillEntry: TypeAlias = "tuple[float, int, WorkerInfo]"


class _SharedEmptyDict(dict):  # type: ignore[type-arg]
    """The one empty dict that records share until they need their own: reads work,
    inserting raises (``pop(k, default)`` and ``clear()`` are harmless no-ops)."""

    __slots__ = ()

    def _refuse(self, *_: object, **__: object) -> NoReturn:
        raise TypeError("the shared empty dict of a record: give the record its own first")

    __setitem__ = setdefault = update = __ior__ = _refuse

    def __hash__(self) -> int:  # type: ignore[override]  # immutable: a plain default
        return 0


class _SharedEmptySet(set):  # type: ignore[type-arg]
    """The one empty set that records share until they need their own (see above)."""

    __slots__ = ()

    def _refuse(self, *_: object, **__: object) -> NoReturn:
        raise TypeError("the shared empty set of a record: give the record its own first")

    add = update = __ior__ = _refuse

    def __hash__(self) -> int:  # type: ignore[override]
        return 0


#: the empty containers every record starts with (compare with ``is``, never insert)
EMPTY_DICT: dict[Any, Any] = _SharedEmptyDict()
EMPTY_SET: set[Any] = _SharedEmptySet()


#: the pseudo-client that wants ``fire_and_forget`` keys until they finish (no connection:
#: nothing is sent to it, so its keys' results are not copied for it)
FIRE_AND_FORGET_CLIENT = "fire-and-forget"


class TaskPrefix:
    """Statistics shared by every task whose key has the same prefix (``inc`` of ``inc-1``)."""

    __slots__ = ("duration", "n_measured", "name")

    def __init__(self, name: str) -> None:
        #: the prefix, as ``graph.keys.key_split`` gives it
        self.name = name
        #: exponential average of measured compute times (seconds); a default until measured
        self.duration = DEFAULT_DURATION
        #: how many measurements went into ``duration``
        self.n_measured = 0

    def add_duration(self, seconds: float) -> None:
        """Fold in one measured compute time (new = half sample + half old)."""
        if seconds < 0:
            return
        if self.n_measured == 0:
            self.duration = seconds
        else:
            self.duration = 0.5 * seconds + 0.5 * self.duration
        self.n_measured += 1

    def __repr__(self) -> str:
        return f"<TaskPrefix {self.name!r} duration={self.duration:.6f}s n={self.n_measured}>"


@dataclass(slots=True, eq=False, repr=False)
class SchedulerTask:
    """The scheduler's record of one task (one key). Compared and hashed by identity."""

    #: the task's key (immutable)
    key: Key
    #: shared per-prefix statistics; ``prefix.name`` is the group name
    prefix: TaskPrefix
    #: current state; "forgotten" once dropped from ``SchedulerState.tasks``
    state: SchedulerTaskStateName = "released"
    #: opaque serialized run spec; None: cannot be computed (scattered or only referred to)
    run_spec: object = None
    #: digest of the definition, to refuse a different task under this key; None: unknown
    token: str | None = None
    #: tasks whose outputs this one needs; mirrored by their ``dependents``
    dependencies: dict[SchedulerTask, None] = EMPTY_DICT
    #: tasks that need this one's output; mirrored by their ``dependencies``
    dependents: dict[SchedulerTask, None] = EMPTY_DICT
    #: dependencies not in memory yet; non-empty exactly in state "waiting", and in a
    #: speculative "processing" task (its one input, computed on the same worker)
    waiting_on: set[SchedulerTask] = EMPTY_SET
    #: exactly the dependents in waiting/queued/no-worker/processing: they need this data
    waiters: dict[SchedulerTask, None] = EMPTY_DICT
    #: ids of clients holding futures for this key, in arrival order, no repeats; mirrored
    #: by ``ClientInfo.wants_what``
    who_wants: tuple[str, ...] = ()
    #: workers holding the result; non-empty exactly in state "memory"
    who_has: dict[WorkerInfo, None] = EMPTY_DICT
    #: the worker running the current attempt; set exactly in state "processing"
    processing_on: WorkerInfo | None = None
    #: id of the current (or last) attempt; reports about another attempt are stale
    run_id: int = 0
    #: lower runs first
    priority: tuple[float, ...] = (0,)
    #: size of the result in bytes (-1: unknown); fixed while the task has replicas
    nbytes: int = -1
    #: type of the result, as the worker named it
    type_name: str = ""
    #: the (opaque) exception and traceback; set exactly in state "erred"
    exception: object = None
    traceback: object = None
    #: readable forms of the two above
    exception_text: str = ""
    traceback_text: str = ""
    #: the task that really failed (this one, or an erred dependency); set exactly when erred
    exception_blame: SchedulerTask | None = None
    #: how many more times a failing attempt is retried
    retries: int = 0
    #: how many workers died (unexpectedly) while running this task
    suspicious: int = 0
    #: abstract resources held while running, e.g. {"GPU": 1}
    resource_restrictions: Mapping[str, float] = EMPTY_DICT
    #: run elsewhere when no running worker satisfies the restrictions
    allow_other_workers: bool = False
    #: the two restrictions above as one hashable value (None: unrestricted)
    restriction_sig: RestrictionSig = None
    #: other annotations, passed on to the worker
    annotations: Mapping[str, object] = EMPTY_DICT
    #: entry number in ``SchedulerState.queued`` while state is "queued"; -1 otherwise
    queue_seq: int = -1
    #: the queue's heap it is in while queued (``TaskQueue``; a field, not a dict there:
    #: a million-entry dict's resize stalls the loop, and it costs ~40 bytes a task)
    queue_sig: RestrictionSig = None

    def __repr__(self) -> str:
        return f"<SchedulerTask {self.key!r} {self.state}>"


@dataclass(slots=True, eq=False, repr=False)
class WorkerInfo:
    """The scheduler's record of one worker. Compared and hashed by identity."""

    #: where it listens (unique)
    address: Address
    #: its name (may be used in ``workers=`` restrictions)
    name: str
    #: threads it runs tasks on
    nthreads: int
    #: bytes (0: no limit)
    memory_limit: int = 0
    #: abstract resources it offers, e.g. {"GPU": 2}
    resources: dict[str, float] = field(default_factory=dict)
    #: address of its nanny, if any
    nanny: Address | None = None
    #: extra services (name → port), e.g. its dashboard
    services: dict[str, int] = field(default_factory=dict)
    #: "running", "paused" or "closing_gracefully"; only running workers get tasks
    status: str = "running"
    #: sum of the resources of the tasks in ``processing`` (may exceed ``resources``: the
    #: worker itself holds tasks back until theirs are free)
    used_resources: dict[str, float] = field(default_factory=dict)
    #: tasks it holds results of; mirrored by ``SchedulerTask.who_has``
    has_what: dict[SchedulerTask, None] = field(default_factory=dict)
    #: tasks assigned to it, in assignment order; mirrored by ``processing_on``
    processing: dict[SchedulerTask, None] = field(default_factory=dict)
    #: the subset of ``processing`` it reported as started
    executing: dict[SchedulerTask, None] = field(default_factory=dict)
    #: the subset of ``processing`` that seceded: they hold no thread
    long_running: dict[SchedulerTask, None] = field(default_factory=dict)
    #: total ``nbytes`` of ``has_what``
    nbytes: int = 0
    #: the registration this record belongs to (the shell hands out a new one each time)
    incarnation: int = 0
    #: keys it said it was running when it registered: their results are claims too
    reported_running: frozenset[object] = frozenset()
    #: its latest entry in the fill index; -1 when not indexed (not running, or gone)
    fill_seq: int = -1

    def __repr__(self) -> str:
        return (
            f"<WorkerInfo {self.address!r} {self.status} threads={self.nthreads} "
            f"processing={len(self.processing)} memory={len(self.has_what)}>"
        )


@dataclass(slots=True, eq=False, repr=False)
class ClientInfo:
    """The scheduler's record of one client."""

    #: the client's id
    id: str
    #: tasks it holds futures for; mirrored by ``SchedulerTask.who_wants``
    wants_what: dict[SchedulerTask, None] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"<ClientInfo {self.id!r} wants={len(self.wants_what)}>"


class TaskQueue:
    """Queued tasks, best priority first: one lazy heap per restriction signature.

    Removing a task from the middle only marks it (``queue_seq = -1``); a heap is rebuilt
    when its dead entries outnumber the live ones. Every operation is O(log n) amortized.
    A queued task knows its heap (``queue_sig``): the queue keeps no per-task dict.
    """

    __slots__ = ("_counts", "_heaps", "_seq")

    def __init__(self) -> None:
        self._heaps: dict[RestrictionSig, list[_QueueEntry]] = {}
        #: live entries per heap
        self._counts: dict[RestrictionSig, int] = {}
        self._seq = 0

    def __len__(self) -> int:
        return sum(self._counts.values())

    def __bool__(self) -> bool:
        return bool(self._counts)  # a heap and its count go when its last task does

    def __contains__(self, ts: object) -> bool:
        return isinstance(ts, SchedulerTask) and ts.queue_seq >= 0

    def __iter__(self) -> Iterator[SchedulerTask]:
        """The live queued tasks, heap by heap, in heap order (no sort: O(n))."""
        return iter([e[2] for heap in self._heaps.values() for e in heap if e[2].queue_seq == e[1]])

    def signatures(self) -> list[RestrictionSig]:
        """The restriction signatures that have queued tasks."""
        return list(self._heaps)

    def signature_of(self, ts: SchedulerTask) -> RestrictionSig:
        return ts.queue_sig

    def push(self, ts: SchedulerTask, sig: RestrictionSig) -> None:
        self._seq += 1
        ts.queue_seq = self._seq
        ts.queue_sig = sig
        self._counts[sig] = self._counts.get(sig, 0) + 1
        heapq.heappush(self._heaps.setdefault(sig, []), (ts.priority, self._seq, ts))

    def discard(self, ts: SchedulerTask) -> None:
        """Take ``ts`` out (no-op if it is not queued)."""
        if ts.queue_seq < 0:
            return
        ts.queue_seq = -1
        self._forget(ts)

    def peek(self, sig: RestrictionSig) -> SchedulerTask | None:
        heap = self._heaps.get(sig)
        if not heap:
            return None
        while heap[0][2].queue_seq != heap[0][1]:
            heapq.heappop(heap)
        return heap[0][2]

    def tasks(self, sig: RestrictionSig) -> list[SchedulerTask]:
        """The live tasks queued under ``sig``, in queuing order."""
        live = [entry for entry in self._heaps.get(sig, ()) if entry[2].queue_seq == entry[1]]
        return [entry[2] for entry in sorted(live, key=lambda entry: entry[1])]

    def pop_preferring(
        self, sig: RestrictionSig, prefer: Callable[[SchedulerTask], bool], window: int
    ) -> SchedulerTask:
        """Pop the first of the best ``window`` tasks that ``prefer`` likes, else the best."""
        heap = self._heaps[sig]
        popped: list[_QueueEntry] = []
        chosen: _QueueEntry | None = None
        while heap and len(popped) < window:
            entry = heapq.heappop(heap)
            if entry[2].queue_seq != entry[1]:
                continue
            popped.append(entry)
            if len(popped) == 1 and not entry[2].dependencies:
                chosen = entry  # no inputs: locality cannot matter
                break
            if prefer(entry[2]):
                chosen = entry
                break
        if chosen is None:
            chosen = popped[0]
        for entry in popped:
            if entry is not chosen:
                heapq.heappush(heap, entry)
        ts = chosen[2]
        ts.queue_seq = -1
        self._forget(ts)
        return ts

    def _forget(self, ts: SchedulerTask) -> None:
        sig = ts.queue_sig
        ts.queue_sig = None
        count = self._counts[sig] - 1
        if count == 0:
            del self._counts[sig], self._heaps[sig]
            return
        self._counts[sig] = count
        heap = self._heaps[sig]
        if len(heap) > 2 * count + 64:
            live = [entry for entry in heap if entry[2].queue_seq == entry[1]]
            heapq.heapify(live)
            self._heaps[sig] = live


class WorkerFillIndex:
    """Running workers, least filled first (occupying tasks per thread); a lazy heap.

    ``update(ws)`` after anything that changes a worker's fill or status; stale entries
    are skipped on read and the heap is rebuilt when they pile up.
    """

    __slots__ = ("_heap", "_live", "_seq")

    def __init__(self) -> None:
        self._heap: list[_FillEntry] = []
        self._seq = 0
        self._live = 0

    def update(self, ws: WorkerInfo, present: bool = True) -> None:
        """Re-index ``ws`` (drop it if it is gone, not running, or has no threads)."""
        was_live = ws.fill_seq >= 0
        if present and ws.status == "running" and ws.nthreads > 0:
            self._seq += 1
            ws.fill_seq = self._seq
            heapq.heappush(self._heap, (fill(ws), self._seq, ws))
            self._live += not was_live
        else:
            ws.fill_seq = -1
            self._live -= was_live
        if len(self._heap) > 4 * self._live + 64:
            live = [entry for entry in self._heap if entry[2].fill_seq == entry[1]]
            heapq.heapify(live)
            self._heap = live

    def least_filled(self) -> WorkerInfo | None:
        heap = self._heap
        while heap and heap[0][2].fill_seq != heap[0][1]:
            heapq.heappop(heap)
        return heap[0][2] if heap else None

    def __len__(self) -> int:
        return self._live
