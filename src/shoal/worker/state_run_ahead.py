"""Running ahead: quick tasks handed to a busy thread, to start the moment its task ends.

Rules of this file:

* Pure: no IO, no clock; functions of a ``WorkerState`` called while it handles an event.
* Why: a thread that finishes a tiny task otherwise sleeps until the event loop has
  handled the result and handed out the next one; each such hand-off costs a thread wake,
  a loop wake and two GIL switches (on a no-op map, a third of the worker's CPU). A
  thread with tasks queued behind it goes straight on.
* A task is *quick* when its prefix (``key_split``) ran in at most ``QUICK_TASK_SECONDS``
  on average here, it holds no resources, and it runs on the default executor. Only quick
  tasks run ahead, only behind quick ones (``slow_executing`` is empty), and never past a
  task that is not quick: priority order is kept, and no task waits behind a long one.
* Only with a nanny (``report_started`` off): the nanny's running-keys file names just the
  task a crash happened in, whereas a ``task-started`` for each queued task would blame
  them all. Never while a seceded task waits to rejoin: rejoins come first.
* Tasks run ahead are ``executing`` (they hold a place in a thread's queue; a cancelled one
  still runs, and its result is dropped); their Execute says ``ahead``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shoal.graph.keys import key_split
from shoal.worker.state_task import WorkerTask

if TYPE_CHECKING:
    from shoal.worker.state import WorkerState

#: a prefix whose tasks ran in at most this long on average is quick
QUICK_TASK_SECONDS = 0.001
#: quick tasks each thread may be handed beyond the one it runs
RUN_AHEAD_PER_THREAD = 8
#: prefixes remembered; past this the record starts afresh (bounded memory)
MAX_PREFIXES = 10_000


def prefix_of(task: WorkerTask) -> str:
    """The task's ``key_split``, computed once."""
    prefix = task.prefix
    if prefix is None:
        prefix = task.prefix = key_split(task.key)
    return prefix


def note_duration(ws: WorkerState, task: WorkerTask, seconds: float) -> None:
    """A task of this prefix ran for ``seconds``: a moving average, as dask keeps."""
    durations = ws.durations
    prefix = prefix_of(task)
    old = durations.get(prefix)
    if old is None and len(durations) >= MAX_PREFIXES:
        durations.clear()
    durations[prefix] = seconds if old is None else (old + seconds) / 2


def is_quick(ws: WorkerState, task: WorkerTask) -> bool:
    """Whether ``task`` may wait in a busy thread's queue (see the rules above)."""
    if task.resource_restrictions or task.annotations.get("executor") is not None:
        return False
    duration = ws.durations.get(prefix_of(task))
    return duration is not None and duration <= QUICK_TASK_SECONDS


def ahead_limit(ws: WorkerState) -> int:
    """How many tasks may occupy the threads now, queued ones included: ``nthreads`` when
    nothing may run ahead (see the rules above)."""
    if not ws.run_ahead or ws.report_started or ws.rejoining or ws.slow_executing:
        return ws.nthreads
    return ws.nthreads * (1 + ws.run_ahead)
