"""Pure placement and admission rules of the scheduler.

Everything here is a function of the records it is given (and a seeded ``random.Random``
for ties): no state of its own, no IO. ``SchedulerState`` decides *when* to place a task;
these functions decide *where*, and *whether a worker has room*.

Admission control, the theory: a worker thread should never idle while it waits for the
scheduler to answer a finished task. A round trip costs ``latency`` seconds, so each thread
needs one running task plus enough queued ones to cover ``latency``:
``1 + ceil(latency / duration)`` tasks, ``nthreads`` times, clamped to ``[1, 64]`` per
thread. Because that bound is the same multiple of ``nthreads`` for every worker, "does
any worker have room for this task" is answered by the least-filled worker alone
(fill = occupying tasks per thread), which the state keeps in a heap.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from shoal.scheduler.state_records import SchedulerTask, WorkerInfo

#: assumed transfer speed between workers, bytes per second
BANDWIDTH = 100e6
#: compute time assumed for a task prefix never measured yet, seconds
DEFAULT_DURATION = 0.0005
#: at most this many tasks per thread are admitted onto a worker
MAX_TASKS_PER_THREAD = 64
#: when handing out queued work, look this far down the queue for a task whose inputs
#: already live on the worker that has room
LOCALITY_WINDOW = 4

#: a key awaited by more tasks than this keeps all its copies (and is not scanned)
REPLICA_SCAN_LIMIT = 256

#: what a task's restrictions are, as one hashable value: (worker addresses or names,
#: sorted resource requirements); ``None`` for an unrestricted task
RestrictionSig: TypeAlias = "tuple[frozenset[str], tuple[tuple[str, float], ...]] | None"


def restriction_sig(workers: Iterable[str], resources: Mapping[str, float]) -> RestrictionSig:
    """The hashable restriction signature of a task (``None``: unrestricted)."""
    if not workers and not resources:
        return None
    names = frozenset(workers)
    needs = tuple(sorted((name, float(q)) for name, q in resources.items() if q > 0))
    if not names and not needs:
        return None
    return (names, needs)


def satisfies(sig: RestrictionSig, ws: WorkerInfo) -> bool:
    """Whether worker ``ws`` may run a task with restrictions ``sig`` (status aside)."""
    if sig is None:
        return True
    names, needs = sig
    if names and ws.address not in names and ws.name not in names:
        return False
    return all(ws.resources.get(name, 0.0) >= q for name, q in needs)


def valid_workers(sig: RestrictionSig, workers: Iterable[WorkerInfo]) -> list[WorkerInfo]:
    """The running workers among ``workers`` that satisfy ``sig``."""
    return [ws for ws in workers if ws.status == "running" and satisfies(sig, ws)]


def capacity(nthreads: int, latency: float, avg_duration: float) -> int:
    """How many non-seceded tasks a worker may hold so no thread idles over a round trip."""
    if nthreads <= 0:
        return 0
    duration = max(avg_duration, 1e-9)
    per_thread = 1 + math.ceil(latency / duration - 1e-9)  # 10.000000002 is 10
    return nthreads * min(max(per_thread, 1), MAX_TASKS_PER_THREAD)


def occupying(ws: WorkerInfo) -> int:
    """Tasks assigned to ``ws`` that hold (or will hold) one of its threads."""
    return len(ws.processing) - len(ws.long_running)


def fill(ws: WorkerInfo) -> float:
    """Occupying tasks per thread: the order in which workers get room."""
    return occupying(ws) / ws.nthreads if ws.nthreads > 0 else math.inf


def has_room(ws: WorkerInfo, avg_duration: float, latency: float) -> bool:
    """Whether running worker ``ws`` accepts one more task of that average duration."""
    if ws.status != "running":
        return False
    return occupying(ws) < capacity(ws.nthreads, latency, avg_duration)


def missing_bytes(ts: SchedulerTask, ws: WorkerInfo) -> int:
    """Bytes of ``ts``'s inputs that ``ws`` would have to fetch."""
    return sum(max(dep.nbytes, 0) for dep in ts.dependencies if ws not in dep.who_has)


def placement_cost(ts: SchedulerTask, ws: WorkerInfo) -> float:
    """Estimated seconds before ``ts`` could start on ``ws``: transfers + queued work."""
    transfer = missing_bytes(ts, ws) / BANDWIDTH
    queued = len(ws.processing) / max(ws.nthreads, 1) * ts.prefix.duration
    return transfer + queued


def pick_worker(
    ts: SchedulerTask, candidates: Iterable[WorkerInfo], rng: random.Random
) -> WorkerInfo | None:
    """The cheapest candidate for ``ts``; ties go to fewest processing, then ``rng``."""
    best: list[WorkerInfo] = []
    best_key: tuple[float, int] | None = None
    for ws in candidates:
        key = (placement_cost(ts, ws), len(ws.processing))
        if best_key is None or key < best_key:
            best, best_key = [ws], key
        elif key == best_key:
            best.append(ws)
    if not best:
        return None
    return best[0] if len(best) == 1 else rng.choice(best)


def holds_inputs(ts: SchedulerTask, ws: WorkerInfo) -> bool:
    """Whether ``ws`` already holds at least one of ``ts``'s inputs."""
    return any(ws in dep.who_has for dep in ts.dependencies)


def surplus_replicas(ts: SchedulerTask, keep: int = 1) -> list[WorkerInfo]:
    """The copies of ``ts`` worth freeing (dask's ``ReduceReplicas``, without the daemon).

    A holder *needs* its copy while a task processing there depends on ``ts``. Every such
    copy stays, plus one more: the newest of the other copies (it was made because a task
    wanted it there; more are likely to follow). Nothing goes while a dependent processes
    on a worker without a copy (it may be fetching one from any holder right now), nor
    while more than ``REPLICA_SCAN_LIMIT`` dependents wait (a hot key: copies pay off).
    Holders that are not running (retiring) neither count nor lose theirs: retirement
    copies their keys away on its own terms. At least ``keep`` copies stay (a spare copy
    of a small result, ``state_copies``).
    """
    holders = [ws for ws in ts.who_has if ws.status != "closing_gracefully"]
    if len(holders) <= 1 or len(ts.waiters) > REPLICA_SCAN_LIMIT:
        return []
    needing: set[WorkerInfo] = set()
    for dts in ts.waiters:
        ws = dts.processing_on
        if ws is not None:
            if ws not in ts.who_has:
                return []  # a transfer of ts may be under way from any holder
            needing.add(ws)
    idle = [ws for ws in holders if ws not in needing]
    surplus = idle[:-1]  # who_has keeps arrival order: the newest idle copy stays
    return surplus[: max(0, len(holders) - keep)]
