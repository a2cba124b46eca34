"""Pure rules for adaptive scaling: how many workers the work needs, and which to let go.

Rules of this file:

* Pure: functions of the records and numbers they are given; no IO, clocks or state.
* The target is workers, not threads: the work to do (queued, unrunnable and processing
  tasks, each costed at its prefix's measured duration) should take about
  ``target_duration`` seconds on the target's threads; held data must fit in the
  target's memory. Both are clamped to ``[minimum, maximum]``.
* Which workers close first: the ones holding the fewest bytes that no other worker
  has (their retirement copies the least), then the least busy; adaptive scaling closes
  only idle ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shoal._types import Address

if TYPE_CHECKING:
    from shoal.scheduler.state import SchedulerState
    from shoal.scheduler.state_records import WorkerInfo


@dataclass(frozen=True)
class Load:
    """What the cluster has to do and hold, measured from the scheduler's state."""

    #: seconds of compute the ready and running tasks need, by measured prefix durations
    work_seconds: float
    #: tasks ready or running (queued, no-worker or processing)
    active_tasks: int
    #: bytes held in workers' memory
    memory_bytes: int
    #: workers running now
    n_workers: int
    #: their threads in all
    n_threads: int
    #: their memory limits in all (0: a worker without a limit counts as none)
    memory_limit: int


def measure_load(state: SchedulerState) -> Load:
    """The current ``Load`` of ``state`` (only running workers count)."""
    tasks = [*state.queued, *state.unrunnable]
    workers = [ws for ws in state.workers.values() if ws.status == "running"]
    for ws in state.workers.values():
        tasks.extend(ws.processing)
    return Load(
        work_seconds=sum(ts.prefix.duration for ts in tasks),
        active_tasks=len(tasks),
        memory_bytes=sum(ws.nbytes for ws in state.workers.values()),
        n_workers=len(workers),
        n_threads=sum(ws.nthreads for ws in workers),
        memory_limit=sum(ws.memory_limit for ws in workers),
    )


def adaptive_target(
    load: Load,
    *,
    target_duration: float,
    minimum: int = 0,
    maximum: float = math.inf,
    threads_per_worker: int | None = None,
) -> int:
    """How many workers ``load`` needs so its work takes about ``target_duration`` s.

    ``threads_per_worker`` is what a new worker brings (default: the current average,
    else 1). Any active task asks for at least one worker; held data asks for as many
    workers as its bytes fill at the current average memory limit.
    """
    if target_duration <= 0:
        raise ValueError(f"target_duration must be positive, not {target_duration!r}")
    if minimum < 0 or maximum < minimum:
        raise ValueError(f"need 0 <= minimum <= maximum, not {minimum!r} and {maximum!r}")
    threads = threads_per_worker or (
        max(1, round(load.n_threads / load.n_workers)) if load.n_workers else 1
    )
    by_cpu = math.ceil(load.work_seconds / target_duration / threads - 1e-9)
    if load.active_tasks:
        by_cpu = max(by_cpu, 1)
    # never more workers than there are tasks to give them
    by_cpu = min(by_cpu, math.ceil(load.active_tasks / threads))
    by_memory = 0
    if load.memory_limit and load.n_workers and load.memory_bytes:
        per_worker = load.memory_limit / load.n_workers
        by_memory = math.ceil(load.memory_bytes / per_worker)
    target = max(by_cpu, by_memory, minimum)
    return int(min(target, maximum))


def unique_bytes(ws: WorkerInfo) -> int:
    """Bytes that only ``ws`` holds: lost (or to be copied) if it leaves."""
    return sum(max(ts.nbytes, 0) for ts in ws.has_what if len(ts.who_has) == 1)


def workers_to_close(
    workers: Iterable[WorkerInfo], n: int, *, idle_only: bool = False
) -> list[Address]:
    """The ``n`` workers to retire first: least unique data, then least busy, then by
    address (a stable order for ties). ``idle_only``: only workers running nothing (a
    task running on a retiring worker starts again elsewhere: adaptive scaling must not
    pay that)."""
    if n <= 0:
        return []
    candidates = [ws for ws in workers if not (idle_only and ws.processing)]
    ranked = sorted(
        candidates,
        key=lambda ws: (unique_bytes(ws), len(ws.processing), len(ws.has_what), ws.address),
    )
    return [ws.address for ws in ranked[:n]]


@dataclass(frozen=True)
class Decision:
    """What an adaptive loop does after one suggestion."""

    #: workers to scale to now; None: stay as is
    scale_to: int | None
    #: consecutive suggestions below the current size so far
    down_count: int


def decide(current: int, target: int, down_count: int, wait_count: int) -> Decision:
    """Scale up at once; scale down only after ``wait_count`` consecutive suggestions
    below ``current`` (a short dip in the work does not bounce workers)."""
    if wait_count < 1:
        raise ValueError(f"wait_count must be at least 1, not {wait_count!r}")
    if target > current:
        return Decision(scale_to=target, down_count=0)
    if target == current:
        return Decision(scale_to=None, down_count=0)
    if down_count + 1 >= wait_count:
        return Decision(scale_to=target, down_count=0)
    return Decision(scale_to=None, down_count=down_count + 1)
