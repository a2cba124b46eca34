"""WorkerState: quick tasks run ahead, queued behind busy threads (``state_run_ahead``)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from msgspec.structs import replace

from shoal._types import Key
from shoal.worker.events import ExecuteSucceeded, TaskRejoined
from shoal.worker.instructions import Execute, TaskStartedMsg, WorkerInstruction
from shoal.worker.state import WorkerState
from shoal.worker.state_run_ahead import MAX_PREFIXES, QUICK_TASK_SECONDS, note_duration
from shoal.worker.state_task import WorkerTask

from .state_helpers import assign, done, freed, new_state, of, seceded, sid


def quick_done(key: str, run_id: int = 1) -> ExecuteSucceeded:
    """``key`` finished after a tenth of the quick limit."""
    return replace(done(key, run_id), start=1.0, stop=1.0 + QUICK_TASK_SECONDS / 10)


def nanny_state(nthreads: int = 1, run_ahead: int = 2) -> WorkerState:
    """A worker whose nanny reads the running keys, having run one quick ``inc``."""
    ws = new_state(nthreads=nthreads)
    ws.report_started = False
    ws.run_ahead = run_ahead
    ws.handle_stimulus(assign("inc-0"), quick_done("inc-0"))
    return ws


def started(out: Sequence[WorkerInstruction]) -> list[tuple[Key, bool]]:
    """The (key, ahead) of each Execute in ``out``."""
    return [(inst.key, inst.ahead) for inst in of(out, Execute)]


def test_quick_tasks_are_handed_to_the_busy_thread_up_to_run_ahead() -> None:
    ws = nanny_state(nthreads=1, run_ahead=2)
    out = ws.handle_stimulus(*(assign(f"inc-{i}", priority=(i,)) for i in range(1, 6)))
    assert started(out) == [("inc-1", False), ("inc-2", True), ("inc-3", True)]
    assert ws.executing == {"inc-1", "inc-2", "inc-3"}
    assert [key for key in ws.ready] == ["inc-4", "inc-5"]
    # a finished task makes room for one more behind the thread, still run ahead
    out = ws.handle_stimulus(quick_done("inc-1"))
    assert started(out) == [("inc-4", True)]


def test_a_thread_freed_by_every_queued_task_finishing_gets_an_ordinary_task_first() -> None:
    ws = nanny_state(nthreads=1, run_ahead=1)
    ws.handle_stimulus(assign("inc-1", priority=(1,)), assign("inc-2", priority=(2,)))
    out = ws.handle_stimulus(
        quick_done("inc-1"),
        quick_done("inc-2"),
        assign("inc-3", priority=(3,)),
        assign("inc-4", priority=(4,)),
    )
    assert started(out) == [("inc-3", False), ("inc-4", True)]


def test_a_prefix_never_run_here_does_not_run_ahead() -> None:
    ws = nanny_state()
    out = ws.handle_stimulus(assign("new-1"), assign("new-2"))
    assert started(out) == [("new-1", False)]
    assert ws.tasks["new-2"].state == "ready"


def test_a_slow_prefix_does_not_run_ahead() -> None:
    ws = nanny_state()
    ws.handle_stimulus(assign("slow-0"), done("slow-0"))  # ran a whole second
    out = ws.handle_stimulus(assign("slow-1"), assign("slow-2"))
    assert started(out) == [("slow-1", False)]


def test_nothing_waits_behind_a_task_that_is_not_quick() -> None:
    ws = nanny_state()
    out = ws.handle_stimulus(assign("big-1", priority=(0,)), assign("inc-1", priority=(1,)))
    assert started(out) == [("big-1", False)]
    assert ws.slow_executing == {"big-1"}
    out = ws.handle_stimulus(done("big-1"))
    assert started(out) == [("inc-1", False)]
    assert ws.slow_executing == set()


def test_run_ahead_stops_at_a_task_that_is_not_quick_keeping_priority_order() -> None:
    ws = nanny_state(run_ahead=3)
    out = ws.handle_stimulus(
        assign("inc-1", priority=(1,)),
        assign("inc-2", priority=(2,)),
        assign("big-1", priority=(3,)),
        assign("inc-3", priority=(4,)),
    )
    assert started(out) == [("inc-1", False), ("inc-2", True)]
    assert ws.tasks["big-1"].state == "ready" and ws.tasks["inc-3"].state == "ready"


def test_without_a_nanny_every_task_waits_for_a_thread() -> None:
    """Each start is announced (task-started) so that a crash blames what runs: tasks
    queued behind a thread would all be blamed."""
    ws = new_state(nthreads=1)
    ws.handle_stimulus(assign("inc-0"), quick_done("inc-0"))
    out = ws.handle_stimulus(assign("inc-1"), assign("inc-2"))
    assert started(out) == [("inc-1", False)]
    assert [m.key for m in of(out, TaskStartedMsg)] == ["inc-1"]


def test_tasks_holding_resources_or_on_another_executor_do_not_run_ahead() -> None:
    ws = nanny_state()
    ws.total_resources = {"GPU": 4.0}
    ws.available_resources = {"GPU": 4.0}
    on_gpu = replace(assign("inc-1", priority=(1,)), resource_restrictions={"GPU": 1.0})
    offloaded = replace(assign("inc-2", priority=(2,)), annotations={"executor": "offload"})
    out = ws.handle_stimulus(assign("inc-9", priority=(0,)), on_gpu, offloaded)
    assert started(out) == [("inc-9", False)]


def test_a_waiting_rejoin_stops_run_ahead() -> None:
    ws = nanny_state()
    ws.handle_stimulus(assign("long-1", priority=(0,)), seceded("long-1"))
    ws.handle_stimulus(assign("inc-1", priority=(1,)))  # takes the freed thread
    out = ws.handle_stimulus(
        TaskRejoined(key="long-1", stimulus_id=sid("rejoin")), assign("inc-2", priority=(2,))
    )
    assert started(out) == []
    assert ws.rejoining == {"long-1": None}


def test_a_cancelled_task_queued_behind_the_thread_keeps_its_place_until_it_reports() -> None:
    ws = nanny_state(run_ahead=1)
    ws.handle_stimulus(assign("inc-1", priority=(1,)), assign("inc-2", priority=(2,)))
    ws.handle_stimulus(freed("inc-2"))
    assert ws.tasks["inc-2"].state == "cancelled" and "inc-2" in ws.executing
    out = ws.handle_stimulus(assign("inc-3", priority=(3,)))
    assert started(out) == []  # the thread still has inc-2 to run
    out = ws.handle_stimulus(quick_done("inc-2"))
    assert "inc-2" not in ws.tasks
    assert started(out) == [("inc-3", True)]


def test_durations_are_a_moving_average_per_prefix_and_bounded() -> None:
    ws = nanny_state()
    assert ws.durations["inc"] == pytest.approx(QUICK_TASK_SECONDS / 10)
    task = ws.tasks["inc-0"]
    note_duration(ws, task, 1.0)
    assert ws.durations["inc"] == pytest.approx((QUICK_TASK_SECONDS / 10 + 1.0) / 2)
    ws.durations.update((f"p{i}", 0.0) for i in range(MAX_PREFIXES))
    note_duration(ws, WorkerTask("other-1"), 0.5)
    assert ws.durations == {"other": 0.5}
