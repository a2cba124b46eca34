"""Dropping replicas under memory pressure: the WorkerState's cheapest way to free memory.

Rules of this file:

* Pure: no IO, no clock; functions of a ``WorkerState`` called while it handles an event.
* A replica (``WorkerState.replicas``) is a key in memory that the scheduler knows is a
  copy: it is never the last one, so dropping it loses nothing. One that a task here
  still needs (``dependents``) is never dropped.
* Oldest first. A dropped copy the scheduler was told of gets ReleaseWorkerDataMsg (from
  the memory exit hook); one whose AddKeysMsg is still pending in this event is simply
  never announced.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shoal.worker.state_effects import Effects
from shoal.worker.state_task import WorkerTask

if TYPE_CHECKING:
    from shoal.worker.state import WorkerState


def drop_replicas(ws: WorkerState, nbytes: int, fx: Effects, keep: WorkerTask | None = None) -> int:
    """Forget replicas with no dependent here, oldest first, until ``nbytes`` are freed;
    return the bytes freed (less when not enough replicas can go)."""
    victims: list[WorkerTask] = []
    freed = 0
    tasks = ws.tasks
    for key in ws.replicas:
        if freed >= nbytes:
            break
        task = tasks[key]
        if task.dependents or task is keep:
            continue
        victims.append(task)
        freed += task.fetch_nbytes()
    for task in victims:
        _forget_replica(task, fx)
    return freed


def make_room(ws: WorkerState, incoming: int, keep: WorkerTask, fx: Effects) -> None:
    """Before storing ``incoming`` bytes: drop replicas so managed memory stays within
    ``memory_target`` where copies can make that so."""
    target = ws.memory_target
    assert target is not None
    excess = ws.managed_nbytes + incoming - target
    if excess > 0:
        drop_replicas(ws, excess, fx, keep)


def _forget_replica(task: WorkerTask, fx: Effects) -> None:
    task.replica = False
    if fx.add_keys.pop(task.key, None) is not None:
        task.reported = False  # never announced: nothing to take back
    fx.log.append(("drop-replica", task.key, fx.stimulus_id, fx.now))
    fx.move(task, "released")
    fx.move(task, "forgotten")
