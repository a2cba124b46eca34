"""How the scheduler's shell cuts its queue of events into passes through the state machine.

Rules of this file:

* One pass (``SchedulerState.handle_stimulus``) holds the event loop for as long as it
  takes; no worker or client is answered meanwhile. A pass is therefore given at most
  about ``PASS_BUDGET`` units of work, a unit being one new task or one released key
  (5 to 10 µs each), every other event one unit; what is left waits for the next loop turn.
* An event bigger than a pass is split first, into events of the same kind and
  stimulus: a client dropping a million futures (``KeysReleased``), or going away
  holding them (``ClientDisconnected``: its keys are released in chunks, then it leaves),
  took 5 s in one pass. Splitting keeps the order of everything: the chunks go where the
  event would have gone, and handling them one after another is handling the event.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from shoal._types import Key
from shoal.scheduler import events as ev

#: units of work (new tasks, released keys, other events) in one pass
PASS_BUDGET = 5_000


def weight(event: ev.SchedulerEvent) -> int:
    """Units of work ``event`` is for the state machine (see the module's rules)."""
    if isinstance(event, ev.GraphSubmitted):
        return max(1, len(event.tasks))
    if isinstance(event, ev.KeysReleased):
        return max(1, len(event.keys))
    return 1


def split(
    event: ev.SchedulerEvent, wanted: Sequence[Key] = (), budget: int | None = None
) -> list[ev.SchedulerEvent]:
    """``event`` as events of at most ``budget`` (``PASS_BUDGET``) keys each. ``wanted``:
    for a ``ClientDisconnected``, the keys its client wants (released first, in chunks)."""
    budget = PASS_BUDGET if budget is None else budget
    if isinstance(event, ev.KeysReleased) and len(event.keys) > budget:
        return [
            msgspec.structs.replace(event, keys=event.keys[i : i + budget])
            for i in range(0, len(event.keys), budget)
        ]
    if isinstance(event, ev.ClientDisconnected) and len(wanted) > budget:
        release = ev.KeysReleased(
            stimulus_id=event.stimulus_id, now=event.now, client=event.client, keys=tuple(wanted)
        )
        return [*split(release, budget=budget), event]
    return [event]


def take_pass(
    pending: list[ev.SchedulerEvent], budget: int | None = None
) -> tuple[list[ev.SchedulerEvent], list[ev.SchedulerEvent]]:
    """The events for one pass (the first always, then while ``budget`` (``PASS_BUDGET``)
    lasts), and the rest, in order."""
    budget = PASS_BUDGET if budget is None else budget
    used = 0
    for i, event in enumerate(pending):
        used += weight(event)
        if used > budget and i > 0:
            return pending[:i], pending[i:]
    return pending, []
