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
* The single-copy window (``KeptInputs``): until its spare copy lands, a result is
  *unsafe* (in memory, needed, one copy, small, a second running worker to copy it to).
  When an unsafe result finishes with an input, the input is *kept* (not released) until
  the result is safe (a second copy, ``add_replica``), or leaves memory. A loss in the
  window then recomputes one level, not the ancestors down to the roots. Only small
  inputs are kept (large ones are released as before), so what is kept is bounded by
  ``max_bytes`` x fan-in x the results whose copy is in flight.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping

from shoal.scheduler.state_records import SchedulerTask, WorkerInfo

#: workers sampled per copy when choosing its target
SAMPLE = 3


def unsafe(ts: SchedulerTask, max_bytes: int, running: int) -> bool:
    """Whether ``ts`` should keep its small inputs: a loss now would cascade."""
    needed = bool(ts.who_wants) or bool(ts.waiters)
    return (
        needed
        and running >= 2
        and ts.state == "memory"
        and len(ts.who_has) == 1
        and 0 <= ts.nbytes <= max_bytes
    )


class KeptInputs:
    """Inputs kept in memory for the unsafe results that finished with them."""

    __slots__ = ("_keeping", "_kept_by")

    def __init__(self) -> None:
        #: unsafe result -> the inputs it keeps
        self._keeping: dict[SchedulerTask, dict[SchedulerTask, None]] = {}
        #: kept input -> the unsafe results keeping it
        self._kept_by: dict[SchedulerTask, dict[SchedulerTask, None]] = {}

    def __contains__(self, ts: object) -> bool:
        """Whether ``ts`` is a kept input (it must stay in memory)."""
        return ts in self._kept_by

    def __len__(self) -> int:
        """How many inputs are kept."""
        return len(self._kept_by)

    def keepers(self) -> list[SchedulerTask]:
        """The results keeping inputs now."""
        return list(self._keeping)

    def kept_by(self, dep: SchedulerTask) -> list[SchedulerTask]:
        return list(self._kept_by.get(dep, ()))

    def keeping(self, ts: SchedulerTask) -> list[SchedulerTask]:
        return list(self._keeping.get(ts, ()))

    def keep(self, ts: SchedulerTask, dep: SchedulerTask) -> None:
        """``ts`` (unsafe) keeps its input ``dep``."""
        self._keeping.setdefault(ts, {})[dep] = None
        self._kept_by.setdefault(dep, {})[ts] = None

    def release(self, ts: SchedulerTask) -> list[SchedulerTask]:
        """``ts`` keeps nothing any more (safe, or gone); the inputs no one keeps now."""
        freed = []
        for dep in self._keeping.pop(ts, ()):
            holders = self._kept_by[dep]
            del holders[ts]
            if not holders:
                del self._kept_by[dep]
                freed.append(dep)
        return freed

    def forget(self, dep: SchedulerTask) -> None:
        """``dep`` left memory: nothing keeps it (it keeps on keeping its own inputs)."""
        for ts in self._kept_by.pop(dep, ()):
            inputs = self._keeping[ts]
            del inputs[dep]
            if not inputs:
                del self._keeping[ts]


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
