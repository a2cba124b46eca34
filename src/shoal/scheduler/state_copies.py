"""Spare copies of small results, so that losing a worker does not cascade.

Rules of this file:

* Pure: functions of the scheduler's state, called by ``SchedulerState.handle_events``
  after an event's placements; they only return ``AcquireReplicas`` plans.
* Why: when the only holder of a result that is still needed dies, the result is
  recomputed, and so are its inputs, which were mostly released already (nothing needed
  them any more), and theirs: down to the roots of the graph. Under a kill storm on a deep
  graph that is most of the graph per kill (issue 12, K1: 16x the task count). A second
  copy on another worker turns a single loss into nothing to recompute.
* A result gets a spare copy when it is in memory, still needed, held by one worker only,
  at most ``max_bytes`` big (a small copy costs less than recomputing its lineage), and
  no dependent is processing on a worker without it (that worker fetches it: a copy for
  free). ``policy.surplus_replicas`` keeps two copies of such results while needed.
* The target is a running worker not holding the result: of a few sampled, the one that
  holds the fewest bytes.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping

from shoal.scheduler.state_records import SchedulerTask, WorkerInfo

#: workers sampled per copy when choosing its target
SAMPLE = 3


def wants_spare_copy(ts: SchedulerTask, max_bytes: int) -> bool:
    """Whether ``ts`` should get a second copy now (see the rules above)."""
    if ts.state != "memory" or len(ts.who_has) != 1 or not 0 <= ts.nbytes <= max_bytes:
        return False
    if not ts.waiters and not ts.who_wants:
        return False
    return all(dts.processing_on is None or dts.processing_on in ts.who_has for dts in ts.waiters)


def plan_spare_copies(
    review: Iterable[SchedulerTask],
    workers: Mapping[str, WorkerInfo],
    max_bytes: int,
    rng: random.Random,
) -> dict[WorkerInfo, list[SchedulerTask]]:
    """``{target worker: results to copy there}`` for the results under review."""
    running = [ws for ws in workers.values() if ws.status == "running"]
    plans: dict[WorkerInfo, list[SchedulerTask]] = {}
    if len(running) < 2:
        return plans
    for ts in review:
        if not wants_spare_copy(ts, max_bytes):
            continue
        sample = rng.sample(running, min(SAMPLE, len(running)))
        others = [ws for ws in sample if ws not in ts.who_has]
        if not others:
            others = [ws for ws in running if ws not in ts.who_has]
        if others:
            plans.setdefault(min(others, key=_held), []).append(ts)
    return plans


def _held(ws: WorkerInfo) -> int:
    return ws.nbytes
