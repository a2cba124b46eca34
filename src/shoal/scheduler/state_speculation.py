"""Speculative assignment: a task whose last missing input is being computed goes to the
worker computing it, before that input exists.

Rules of this file:

* Pure: functions of scheduler records, called by the ``TransitionEngine``.
* Why: a chain (each task needs only the one before) otherwise makes every hop a round
  trip: the worker reports the result, the scheduler routes the next task, the worker
  hears of it. A worker that already holds the next task starts it the moment its input
  lands, and the scheduler's round trip runs while it computes.
* A task is *speculative* when it is "processing" while one input is not in memory yet
  (``waiting_on`` holds exactly that input, itself processing on the same worker). It
  holds no thread there until the input lands: the worker keeps it "waiting".
* Only a task that waits for exactly one input, has no restrictions (workers, hosts,
  resources) and can be computed is speculated, and only onto a running worker. At most
  ``speculation_depth`` speculative tasks follow each other (the setting
  ``scheduler.speculation-depth``), so a long chain is handed out a step or a few ahead,
  never all at once. One step is the default: on a 1,000-task chain here, depth 1 took
  0.40-0.49 s against 0.51-0.57 s with 0, and 2 or 3 were no faster than 1.
* Looked at (``TransitionEngine.speculation_review``) when a task is assigned, when a
  dependent starts waiting for a processing task, and when a speculative task's input
  lands (its dependents may follow it now), after the event's other transitions.
* When the input does not land (its task is cancelled, erred, rescheduled, or its worker
  left), the speculative tasks after it are taken back *before* the input is freed on
  that worker (the worker never waits for an input it dropped), and go back to waiting.
"""

from __future__ import annotations

from shoal.scheduler.state_records import SchedulerTask

#: speculative tasks that may follow each other on one worker (0: none)
SPECULATION_DEPTH = 1


def speculation_depth(ts: SchedulerTask, limit: int) -> int:
    """How many speculative tasks lead to ``ts`` and include it, counted up to ``limit``
    (0: ``ts`` has all its inputs, or is not processing)."""
    depth = 0
    while depth < limit and ts.state == "processing" and ts.waiting_on:
        ts = next(iter(ts.waiting_on))
        depth += 1
    return depth


def is_speculative(ts: SchedulerTask) -> bool:
    """Processing before its last input is in memory."""
    return ts.state == "processing" and bool(ts.waiting_on)


def follows(dts: SchedulerTask, ts: SchedulerTask) -> bool:
    """Whether ``dts`` went ahead to the worker processing ``ts``, its missing input."""
    return dts.state == "processing" and ts in dts.waiting_on


def may_follow(dts: SchedulerTask, ts: SchedulerTask) -> bool:
    """Whether ``dts`` may be sent now to the worker processing ``ts``, its one missing
    input."""
    return (
        dts.state == "waiting"
        and len(dts.waiting_on) == 1
        and ts in dts.waiting_on
        and dts.run_spec is not None
        and dts.restriction_sig is None
    )
