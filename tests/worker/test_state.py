"""WorkerState: events in, state and instructions out, one path at a time.

Every WorkerState here runs with ``validate=True``: the invariants are checked after
every event, so each test also checks that the path keeps the books straight.
"""

from __future__ import annotations

import itertools
from typing import Any

import msgspec
import pytest

from shoal.errors import InvalidTransition
from shoal.worker.events import (
    ReplicasRequested,
    WorkerPaused,
    WorkerUnpaused,
)
from shoal.worker.instructions import (
    DeleteValue,
    Execute,
    GatherDep,
    LongRunningMsg,
    ReleaseWorkerDataMsg,
    RequestRefreshWhoHasMsg,
    StealResponseMsg,
    StoreValue,
    TaskErredMsg,
    TaskFinishedMsg,
    TaskStartedMsg,
)
from shoal.worker.state import WorkerState
from shoal.worker.state_task import KeyHeap

from .state_helpers import (
    ME,
    A,
    B,
    C,
    assign,
    busy,
    done,
    error_info,
    failed,
    freed,
    gathered,
    kinds,
    network_failed,
    new_state,
    of,
    refreshed,
    seceded,
    sid,
    state_of,
    steal,
)

# -- computing ----------------------------------------------------------------------------


def test_compute_happy_path() -> None:
    ws = new_state()
    event = assign("x", run_id=3)
    out = ws.handle_stimulus(event)
    assert out == [
        Execute(
            key="x", run_id=3, run_spec=("spec", "x"), inputs=(), stimulus_id=event.stimulus_id
        ),
        TaskStartedMsg(key="x", run_id=3, stimulus_id=event.stimulus_id),
    ]
    assert ws.tasks["x"].state == "executing"
    assert ws.executing == {"x"} and ws.executing_count == 1
    assert ws.tasks["x"].run_spec == ("spec", "x")

    finish = done("x", run_id=3, value=42, nbytes=28)
    out = ws.handle_stimulus(finish)
    assert out == [
        StoreValue(key="x", value=42, stimulus_id=finish.stimulus_id),
        TaskFinishedMsg(
            key="x",
            run_id=3,
            nbytes=28,
            type_name="int",
            start=1.0,
            stop=2.0,
            stimulus_id=finish.stimulus_id,
        ),
    ]
    assert ws.tasks["x"].state == "memory"
    assert ws.nbytes == {"x": 28}
    assert ws.executed_count == 1
    assert ws.executing_count == 0

    out = ws.handle_stimulus(free := freed("x"))
    assert out == [DeleteValue(key="x", stimulus_id=free.stimulus_id)]
    assert ws.tasks == {} and ws.nbytes == {}


def test_execute_failed_reports_error() -> None:
    ws = new_state()
    ws.handle_stimulus(assign("x"))
    info = error_info("bad")
    event = failed("x", error=info)
    out = ws.handle_stimulus(event)
    assert out == [
        TaskErredMsg(
            key="x",
            run_id=1,
            exception=info.exception,
            traceback=info.traceback,
            exception_text=info.exception_text,
            traceback_text=info.traceback_text,
            stimulus_id=event.stimulus_id,
        )
    ]
    assert ws.tasks["x"].state == "error"
    assert ws.tasks["x"].error is info
    assert ws.executed_count == 1 and not ws.executing


def test_error_then_assigned_again_runs_a_new_attempt() -> None:
    ws = new_state()
    ws.handle_stimulus(assign("x", run_id=1), failed("x", run_id=1))
    out = ws.handle_stimulus(assign("x", run_id=2))
    assert kinds(out) == ["Execute", "TaskStartedMsg"]
    assert out[0] == Execute(
        key="x", run_id=2, run_spec=("spec", "x"), inputs=(), stimulus_id=out[0].stimulus_id
    )
    assert ws.tasks["x"].error is None


def test_without_report_started_a_task_starts_with_no_task_started_message() -> None:
    ws = new_state()
    ws.report_started = False  # a nanny reads the running keys instead
    out = ws.handle_stimulus(assign("x"))
    assert kinds(out) == ["Execute"]
    assert ws.tasks["x"].state == "executing"


def test_ready_tasks_start_by_priority_as_threads_free_up() -> None:
    ws = new_state(nthreads=1)
    ws.handle_stimulus(assign("first", priority=(0,)))
    out = ws.handle_stimulus(assign("low", priority=(5,)), assign("high", priority=(1,)))
    assert of(out, Execute) == []
    assert list(ws.ready) == ["high", "low"]
    assert ws.ready.entries() == [((1,), "high"), ((5,), "low")]
    out = ws.handle_stimulus(done("first"))
    assert [inst.key for inst in of(out, Execute)] == ["high"]


def test_several_threads_start_several_tasks() -> None:
    ws = new_state(nthreads=2)
    out = ws.handle_stimulus(assign("a"), assign("b"), assign("c"))
    assert [inst.key for inst in of(out, Execute)] == ["a", "b"]
    assert ws.tasks["c"].state == "ready"


def test_assigning_a_key_in_memory_answers_at_once() -> None:
    ws = new_state()
    ws.handle_stimulus(assign("x", run_id=1), done("x", run_id=1, value=1, nbytes=5))
    out = ws.handle_stimulus(assign("x", run_id=9))
    assert kinds(out) == ["TaskFinishedMsg"]
    assert out[0] == TaskFinishedMsg(
        key="x",
        run_id=9,
        nbytes=5,
        type_name="int",
        start=1.0,
        stop=2.0,
        stimulus_id=out[0].stimulus_id,
    )


def test_assigning_a_running_key_again_only_refreshes_the_run_id() -> None:
    ws = new_state(nthreads=1)
    ws.handle_stimulus(assign("x", run_id=1))
    out = ws.handle_stimulus(assign("x", run_id=2))
    assert kinds(out) == ["TaskStartedMsg"]
    out = ws.handle_stimulus(done("x", run_id=1))
    assert of(out, TaskFinishedMsg)[0].run_id == 2


def test_task_waits_for_a_local_dependency() -> None:
    ws = new_state(nthreads=2)
    ws.handle_stimulus(assign("x"))
    out = ws.handle_stimulus(assign("y", deps={"x": ()}))
    assert out == [] and ws.tasks["y"].state == "waiting"
    assert ws.tasks["y"].waiting_for_data == {ws.tasks["x"]}
    assert ws.waiting_for_data_count == 1
    out = ws.handle_stimulus(done("x"))
    assert kinds(out) == ["StoreValue", "TaskFinishedMsg", "Execute", "TaskStartedMsg"]
    assert ws.waiting_for_data_count == 0


# -- freeing --------------------------------------------------------------------------------


def test_fetched_inputs_stay_as_copies_until_the_scheduler_frees_them() -> None:
    ws = new_state(nthreads=1)
    ws.handle_stimulus(assign("y1", deps={"a": [A], "b": [A]}), assign("y2", deps={"b": [A]}))
    ws.handle_stimulus(gathered(A, ["a", "b"]))
    ws.handle_stimulus(done(next(iter(ws.executing))))
    out = ws.handle_stimulus(done(ws.tasks[next(iter(ws.executing))].key))
    assert of(out, ReleaseWorkerDataMsg) == [] and of(out, DeleteValue) == []
    assert set(ws.replicas) == {"a", "b"}  # the scheduler owns their lifetime now
    out = ws.handle_stimulus(freed("a", "b"))
    assert sorted(i.key for i in of(out, DeleteValue)) == ["a", "b"]
    assert set(ws.tasks) == {"y1", "y2"}
    assert ws.has_what == {}


def test_freeing_a_finished_task_does_not_touch_others() -> None:
    ws = new_state(nthreads=2)
    ws.handle_stimulus(assign("y1", deps={"a": [A], "b": [A]}), assign("y2", deps={"b": [A]}))
    ws.handle_stimulus(gathered(A, ["a", "b"]), done("y1"), done("y2"))
    event = freed("y1")
    out = ws.handle_stimulus(event)
    assert out == [DeleteValue(key="y1", stimulus_id=event.stimulus_id)]
    assert set(ws.tasks) == {"y2", "a", "b"}  # a, b: copies the scheduler frees itself


@pytest.mark.parametrize("state", ["waiting", "ready", "constrained", "fetch", "missing", "error"])
def test_freeing_an_idle_task_forgets_it(state: str) -> None:
    ws = _task_in(state)
    key = "t" if state not in ("fetch", "missing") else "d"
    free_keys = ("t",) if state in ("fetch", "missing") else (key,)
    ws.handle_stimulus(freed(*free_keys))
    assert state_of(ws, key) == "forgotten"
    assert "t" not in ws.tasks


def test_freeing_a_dependency_still_needed_here_keeps_it() -> None:
    ws = new_state(nthreads=2)
    ws.handle_stimulus(assign("x"), assign("y", deps={"x": ()}))
    ws.handle_stimulus(freed("x"))
    assert ws.tasks["x"].state == "executing" and not ws.tasks["x"].assigned
    out = ws.handle_stimulus(done("x"))
    # no longer the scheduler's: announced as a copy we hold
    assert kinds(out) == ["StoreValue", "AddKeysMsg", "Execute", "TaskStartedMsg"]


def test_free_while_executing_then_finished_discards_the_result() -> None:
    ws = new_state(nthreads=1, resources={"GPU": 1})
    ws.handle_stimulus(assign("x", resources={"GPU": 1}), assign("y"))
    assert ws.available_resources == {"GPU": 0}
    out = ws.handle_stimulus(freed("x"))
    assert out == []
    task = ws.tasks["x"]
    assert task.state == "cancelled" and task.previous == "executing"
    assert ws.executing == {"x"} and ws.available_resources == {"GPU": 0}

    out = ws.handle_stimulus(done("x"))
    assert kinds(out) == ["Execute", "TaskStartedMsg"]  # y got the thread; x left no trace
    assert out[0].key == "y"  # type: ignore[attr-defined]
    assert "x" not in ws.tasks and ws.available_resources == {"GPU": 1}
    assert ws.executing == {"y"}


def test_free_while_executing_then_failed_reports_nothing() -> None:
    ws = new_state(resources={"GPU": 1})
    ws.handle_stimulus(assign("x", resources={"GPU": 1}), freed("x"))
    assert ws.handle_stimulus(failed("x")) == []
    assert ws.tasks == {} and ws.available_resources == {"GPU": 1}


def test_free_while_in_flight_discards_the_data() -> None:
    ws = new_state()
    ws.handle_stimulus(assign("y", deps={"a": [A]}))
    out = ws.handle_stimulus(freed("y"))
    assert out == []
    assert ws.tasks["a"].state == "cancelled" and set(ws.tasks) == {"a"}
    assert ws.in_flight_workers == {A: {"a"}}
    out = ws.handle_stimulus(gathered(A, ["a"]))
    assert out == []
    assert ws.tasks == {} and ws.comm_bytes == 0 and ws.in_flight_workers == {}


# -- cancelled and wanted again -------------------------------------------------------------


def test_reassigned_while_cancelled_executing_resumes_without_a_second_execute() -> None:
    ws = new_state()
    executes = of(ws.handle_stimulus(assign("x", run_id=1)), Execute)
    ws.handle_stimulus(freed("x"))
    out = ws.handle_stimulus(assign("x", run_id=2))
    assert kinds(out) == ["TaskStartedMsg"] and out[0].run_id == 2  # type: ignore[attr-defined]
    assert ws.tasks["x"].state == "executing"
    out = ws.handle_stimulus(done("x", run_id=1))
    executes += of(out, Execute)
    assert [(m.key, m.run_id) for m in of(out, TaskFinishedMsg)] == [("x", 2)]
    assert len(executes) == 1


def test_reassigned_while_cancelled_long_running_says_long_running_again() -> None:
    ws = new_state()
    ws.handle_stimulus(assign("x", run_id=1), seceded("x"), freed("x"))
    out = ws.handle_stimulus(assign("x", run_id=2))
    assert out == [LongRunningMsg(key="x", run_id=2, stimulus_id=out[0].stimulus_id)]
    out = ws.handle_stimulus(done("x", run_id=1))
    assert [m.run_id for m in of(out, TaskFinishedMsg)] == [2]


def test_cancelled_executing_wanted_as_input_uses_the_running_attempt() -> None:
    ws = new_state(nthreads=2)
    ws.handle_stimulus(assign("x", run_id=1), freed("x"))
    out = ws.handle_stimulus(assign("y", deps={"x": [A]}))
    assert out == []  # no second Execute, no transfer
    assert ws.tasks["x"].state == "executing"
    out = ws.handle_stimulus(done("x", run_id=1))
    assert kinds(out) == ["StoreValue", "AddKeysMsg", "Execute", "TaskStartedMsg"]
    assert out[2].key == "y"  # type: ignore[attr-defined]


def test_cancelled_executing_wanted_as_input_fetches_if_the_attempt_fails() -> None:
    ws = new_state(nthreads=2)
    ws.handle_stimulus(assign("x", run_id=1), freed("x"), assign("y", deps={"x": [A]}))
    out = ws.handle_stimulus(failed("x", run_id=1))
    assert [(g.worker, g.keys) for g in of(out, GatherDep)] == [(A, frozenset({"x"}))]
    assert of(out, TaskErredMsg) == []


def test_cancelled_flight_assigned_to_compute_uses_the_transfer() -> None:
    ws = new_state()
    ws.handle_stimulus(assign("y", deps={"a": [A]}))
    ws.handle_stimulus(freed("y"))
    out = ws.handle_stimulus(assign("a", run_id=5))
    assert out == [] and ws.tasks["a"].state == "flight"
    out = ws.handle_stimulus(gathered(A, ["a"]))
    assert kinds(out) == ["StoreValue", "TaskFinishedMsg"]
    assert of(out, TaskFinishedMsg)[0].run_id == 5


@pytest.mark.parametrize("outcome", ["network", "missing", "busy", "unreadable"])
def test_cancelled_flight_assigned_to_compute_computes_if_the_transfer_fails(
    outcome: str,
) -> None:
    ws = new_state()
    ws.handle_stimulus(assign("y", deps={"a": [A]}))
    ws.handle_stimulus(freed("y"), assign("a", run_id=5))
    event = {
        "network": network_failed(A, ["a"]),
        "missing": gathered(A, ["a"], data={}),
        "busy": busy(A, ["a"]),
        "unreadable": gathered(A, ["a"], data={}, unreadable={"a": error_info()}),
    }[outcome]
    out = ws.handle_stimulus(event)
    assert [(e.key, e.run_id) for e in of(out, Execute)] == [("a", 5)]
    assert of(out, GatherDep) == [] and of(out, TaskErredMsg) == []


def test_cancelled_flight_wanted_again_as_input_keeps_the_transfer() -> None:
    ws = new_state()
    ws.handle_stimulus(assign("y", deps={"a": [A]}))
    ws.handle_stimulus(freed("y"))
    out = ws.handle_stimulus(assign("y", run_id=2, deps={"a": [A]}))
    assert out == [] and ws.tasks["a"].state == "flight"
    out = ws.handle_stimulus(gathered(A, ["a"]))
    assert [(e.key, e.run_id) for e in of(out, Execute)] == [("y", 2)]


def test_input_assigned_to_compute_here_stops_being_fetched() -> None:
    ws = new_state()
    ws.handle_stimulus(WorkerPaused(stimulus_id=sid()))
    ws.handle_stimulus(
        ReplicasRequested(stimulus_id=sid(), who_has={"f": (A,), "m": ()}, nbytes={})
    )
    assert (ws.tasks["f"].state, ws.tasks["m"].state) == ("fetch", "missing")
    ws.handle_stimulus(WorkerUnpaused(stimulus_id=sid()), WorkerPaused(stimulus_id=sid()))
    ws.handle_stimulus(assign("f", run_id=3), assign("m", run_id=4))
    assert (ws.tasks["f"].state, ws.tasks["m"].state) == ("ready", "ready")
    assert ws.missing == set() and len(ws.data_needed) == 0
    out = ws.handle_stimulus(WorkerUnpaused(stimulus_id=sid()))
    assert [(e.key, e.run_id) for e in of(out, Execute)] == [("f", 3)]


@pytest.mark.parametrize("holders", [[A], []])
@pytest.mark.parametrize("secede", [False, True])
def test_input_computed_here_unassigned_is_fetched_if_computing_fails(
    holders: list[str], secede: bool
) -> None:
    ws = new_state(nthreads=2)
    ws.handle_stimulus(assign("x", run_id=1), *([seceded("x")] if secede else []))
    ws.handle_stimulus(freed("x"), assign("y", deps={"x": holders}))
    expected = "long-running" if secede else "executing"
    assert ws.tasks["x"].state == expected and not ws.tasks["x"].assigned
    out = ws.handle_stimulus(failed("x", run_id=1))
    assert of(out, TaskErredMsg) == []
    if holders:
        assert [(g.worker, g.keys) for g in of(out, GatherDep)] == [(A, frozenset({"x"}))]
    else:
        assert ws.tasks["x"].state == "missing"
        assert of(out, RequestRefreshWhoHasMsg)[0].keys == ("x",)
    assert ws.long_running == set() and ws.executing == set()


def test_stale_completions_are_dropped() -> None:
    ws = new_state()
    ws.handle_stimulus(assign("x", run_id=1))
    stale = done("x", run_id=7)
    assert ws.handle_stimulus(stale) == []
    assert ws.tasks["x"].state == "executing" and ws.executed_count == 0
    assert ws.handle_stimulus(failed("x", run_id=0)) == []
    assert ws.handle_stimulus(done("unknown", run_id=1)) == []
    assert ("stale-execute", "x", 7, stale.stimulus_id, 0.0) in ws.story("x")
    out = ws.handle_stimulus(done("x", run_id=1))
    assert kinds(out) == ["StoreValue", "TaskFinishedMsg"]
    assert ws.handle_stimulus(done("x", run_id=1)) == []  # a duplicate is stale too


def test_stale_gather_results_are_dropped() -> None:
    ws = new_state()
    assert ws.handle_stimulus(gathered(A, ["a"])) == []
    assert ws.handle_stimulus(busy(A, ["a"])) == []


# -- stealing -------------------------------------------------------------------------------


def _task_in(state: str) -> WorkerState:
    """A worker whose key 't' (or input 'd' of 't') is in ``state``."""
    ws = new_state(nthreads=1, resources={"R": 1})
    blocker = [assign("blocker", priority=(-1,))]
    events = {
        "waiting": [assign("t", deps={"d": [A]})],
        "ready": [*blocker, assign("t")],
        "constrained": [
            assign("holder", resources={"R": 1}),
            assign("t", resources={"R": 1}),
        ],
        "executing": [assign("t")],
        "long-running": [assign("t"), seceded("t")],
        "memory": [assign("t"), done("t")],
        "error": [assign("t"), failed("t")],
        "fetch": [WorkerPaused(stimulus_id=sid()), assign("t", deps={"d": [A]})],
        "missing": [assign("t", deps={"d": []})],
        "flight": [assign("t", deps={"d": [A]})],
        "cancelled": [assign("t"), freed("t")],
    }[state]
    if state == "constrained":
        ws = new_state(nthreads=2, resources={"R": 1})
    ws.handle_stimulus(*events)  # type: ignore[misc]
    key = "d" if state in ("fetch", "missing", "flight") else "t"
    assert ws.tasks[key].state == state
    return ws


@pytest.mark.parametrize("state", ["waiting", "ready", "constrained"])
def test_steal_releases_a_task_not_started(state: str) -> None:
    ws = _task_in(state)
    event = steal("t")
    out = ws.handle_stimulus(event)
    assert StealResponseMsg(key="t", state=state, stimulus_id=event.stimulus_id) in out
    assert "t" not in ws.tasks
    assert state_of(ws, "d") in ("forgotten", "cancelled")  # its input went with it


@pytest.mark.parametrize("state", ["executing", "long-running", "memory", "error", "cancelled"])
def test_steal_leaves_a_started_task_alone(state: str) -> None:
    ws = _task_in(state)
    out = ws.handle_stimulus(event := steal("t"))
    assert out == [StealResponseMsg(key="t", state=state, stimulus_id=event.stimulus_id)]
    assert ws.tasks["t"].state == state


@pytest.mark.parametrize("state", ["fetch", "missing", "flight"])
def test_steal_of_an_input_is_answered(state: str) -> None:
    ws = _task_in(state)
    out = ws.handle_stimulus(steal("d"))
    assert of(out, StealResponseMsg)[0].state == state
    assert ws.tasks["d"].state == state


def test_steal_of_an_unknown_key_is_answered_with_none() -> None:
    ws = new_state()
    event = steal("nope")
    assert ws.handle_stimulus(event) == [
        StealResponseMsg(key="nope", state=None, stimulus_id=event.stimulus_id)
    ]


def test_steal_of_a_task_another_task_here_needs_keeps_computing_it() -> None:
    ws = new_state(nthreads=1)
    ws.handle_stimulus(assign("blocker", priority=(-1,)), assign("x"), assign("y", deps={"x": ()}))
    out = ws.handle_stimulus(steal("x"))
    assert of(out, StealResponseMsg)[0].state == "ready"
    assert ws.tasks["x"].state == "ready" and not ws.tasks["x"].assigned
    out = ws.handle_stimulus(done("blocker"))
    assert [(e.key, e.run_id) for e in of(out, Execute)] == [("x", 1)]
    assert of(out, TaskStartedMsg) == []  # not the scheduler's task any more


# -- secede ---------------------------------------------------------------------------------


def test_secede_frees_the_thread_for_the_next_task() -> None:
    ws = new_state(nthreads=1)
    ws.handle_stimulus(assign("x", run_id=4), assign("y"))
    event = seceded("x")
    out = ws.handle_stimulus(event)
    assert out[0] == LongRunningMsg(key="x", run_id=4, stimulus_id=event.stimulus_id)
    assert [e.key for e in of(out, Execute)] == ["y"]
    assert ws.long_running == {"x"} and ws.executing == {"y"}
    out = ws.handle_stimulus(done("x", run_id=4))
    assert kinds(out) == ["StoreValue", "TaskFinishedMsg"]
    assert ws.long_running == set()


def test_secede_after_cancel_frees_the_thread_and_stays_cancelled() -> None:
    ws = new_state(nthreads=1, resources={"GPU": 1})
    ws.handle_stimulus(assign("x", resources={"GPU": 1}), assign("y"), freed("x"))
    out = ws.handle_stimulus(seceded("x"))
    assert [e.key for e in of(out, Execute)] == ["y"]
    assert of(out, LongRunningMsg) == []
    assert ws.tasks["x"].state == "cancelled" and ws.long_running == {"x"}
    assert ws.available_resources == {"GPU": 0}
    assert ws.handle_stimulus(done("x")) == []
    assert ws.long_running == set() and ws.available_resources == {"GPU": 1}


def test_secede_of_an_unknown_or_finished_task_is_ignored() -> None:
    ws = new_state()
    assert ws.handle_stimulus(seceded("nope")) == []
    ws.handle_stimulus(assign("x"), done("x"))
    assert ws.handle_stimulus(seceded("x")) == []


# -- resources ------------------------------------------------------------------------------


def test_constrained_tasks_wait_for_resources() -> None:
    ws = new_state(nthreads=4, resources={"GPU": 1})
    out = ws.handle_stimulus(assign("g1", resources={"GPU": 1}), assign("g2", resources={"GPU": 1}))
    assert [e.key for e in of(out, Execute)] == ["g1"]
    assert list(ws.constrained) == ["g2"]
    out = ws.handle_stimulus(done("g1"))
    assert [e.key for e in of(out, Execute)] == ["g2"]


def test_no_head_of_line_blocking_among_constrained_tasks() -> None:
    ws = new_state(nthreads=4, resources={"GPU": 2})
    ws.handle_stimulus(assign("one", resources={"GPU": 1}))
    out = ws.handle_stimulus(
        assign("two", resources={"GPU": 2}), assign("other", resources={"GPU": 1})
    )
    assert [e.key for e in of(out, Execute)] == ["other"]
    assert list(ws.constrained) == ["two"]
    assert ws.handle_stimulus(done("one")) != []
    out = ws.handle_stimulus(done("other"))
    assert [e.key for e in of(out, Execute)] == ["two"]


def test_constrained_is_first_come_first_served() -> None:
    ws = new_state(nthreads=4, resources={"GPU": 1, "MEM": 10})
    ws.handle_stimulus(assign("hold", resources={"GPU": 1, "MEM": 10}))
    ws.handle_stimulus(assign("c1", resources={"MEM": 5}, priority=(9,)))
    ws.handle_stimulus(assign("c2", resources={"GPU": 1}, priority=(1,)))
    ws.handle_stimulus(assign("c3", resources={"MEM": 5}, priority=(0,)))
    assert list(ws.constrained) == ["c1", "c2", "c3"]
    out = ws.handle_stimulus(done("hold"))
    assert [e.key for e in of(out, Execute)] == ["c1", "c2", "c3"]


@pytest.mark.parametrize("outcome", ["success", "failure", "cancelled", "long-running"])
def test_resources_come_back_whatever_the_outcome(outcome: str) -> None:
    ws = new_state(nthreads=2, resources={"GPU": 2, "MEM": 100})
    ws.handle_stimulus(assign("x", resources={"GPU": 2, "MEM": 30}))
    ws.handle_stimulus(assign("y", resources={"GPU": 1}))
    assert ws.available_resources == {"GPU": 0, "MEM": 70}
    if outcome == "cancelled":
        ws.handle_stimulus(freed("x"))
    if outcome == "long-running":
        ws.handle_stimulus(seceded("x"))
        assert ws.available_resources == {"GPU": 0, "MEM": 70}  # seceding keeps them
    out = ws.handle_stimulus(done("x") if outcome != "failure" else failed("x"))
    assert ws.available_resources == {"GPU": 1, "MEM": 100}
    assert [e.key for e in of(out, Execute)] == ["y"]


# -- pause ----------------------------------------------------------------------------------


def test_paused_worker_starts_no_task_and_no_transfer() -> None:
    ws = new_state(nthreads=2)
    ws.handle_stimulus(assign("running"))
    assert ws.handle_stimulus(WorkerPaused(stimulus_id=sid())) == []
    out = ws.handle_stimulus(assign("x"), assign("y", deps={"a": [A]}))
    assert out == [] and ws.paused
    assert ws.tasks["x"].state == "ready" and ws.tasks["a"].state == "fetch"
    out = ws.handle_stimulus(done("running"))
    assert kinds(out) == ["StoreValue", "TaskFinishedMsg"]  # running work still finishes
    out = ws.handle_stimulus(WorkerUnpaused(stimulus_id=sid()))
    assert kinds(out) == ["Execute", "TaskStartedMsg", "GatherDep"]


# -- log, story, errors ---------------------------------------------------------------------


def test_story_tells_what_happened_to_a_key_and_why() -> None:
    ws = new_state()
    event = assign("x", run_id=1)
    event = type(event)(**{**_fields(event), "now": 12.5})
    ws.handle_stimulus(event)
    story = ws.story("x")
    assert ("stimulus", "TaskAssigned", "x", 1, event.stimulus_id, 12.5) in story
    assert ("x", "released", "waiting", event.stimulus_id, 12.5) in story
    assert ("x", "waiting", "ready", event.stimulus_id, 12.5) in story
    assert ("x", "ready", "executing", event.stimulus_id, 12.5) in story
    assert ("instruction", "Execute", "x", event.stimulus_id, 12.5) in story
    assert ws.story(event.stimulus_id) == story
    assert ws.story("nothing") == []


def test_story_finds_keys_inside_batched_records() -> None:
    ws = new_state()
    ws.handle_stimulus(assign("y", deps={"a": [A], "b": [A]}))
    assert any(rec[:2] == ("instruction", "GatherDep") for rec in ws.story("a"))
    assert any(rec[:2] == ("instruction", "GatherDep") for rec in ws.story("b"))


def test_log_is_bounded() -> None:
    ws = new_state(log_length=10)
    for i in range(10):
        ws.handle_stimulus(assign(f"x{i}", run_id=i), done(f"x{i}", run_id=i))
    assert len(ws.log) == 10


def test_every_instruction_carries_its_stimulus_id() -> None:
    ws = new_state(nthreads=2)
    for event in [
        assign("y", deps={"a": [A], "b": [B]}),
        gathered(A, ["a"]),
        network_failed(B, ["b"]),
        refreshed({"b": [C]}),
        gathered(C, ["b"]),
        done("y"),
        freed("y"),
    ]:
        out = ws.handle_stimulus(event)
        assert out and {inst.stimulus_id for inst in out} == {event.stimulus_id}


def test_an_illegal_move_raises_invalid_transition() -> None:
    ws = new_state()
    ws.handle_stimulus(assign("x", run_id=1), done("x", run_id=1))
    with pytest.raises(InvalidTransition) as info:
        ws._transition(ws.tasks["x"], "executing")
    err = info.value
    assert (err.key, err.start, err.finish) == ("x", "memory", "executing")
    assert ("x", "executing", "memory", err.story[-1][3], 0.0) in err.story  # type: ignore[index]
    assert "memory -> executing" in str(err)


def test_validate_names_the_broken_key() -> None:
    ws = new_state()
    ws.handle_stimulus(assign("x"))
    ws.executing.clear()
    with pytest.raises(AssertionError, match="'x'"):
        ws.validate()


def test_unknown_events_are_refused() -> None:
    ws = new_state()
    with pytest.raises(TypeError):
        ws.handle_stimulus(object())  # type: ignore[arg-type]


def test_who_has_never_lists_this_worker() -> None:
    ws = new_state()
    ws.handle_stimulus(assign("y", deps={"a": [ME, A]}))
    assert ws.tasks["a"].who_has == {A}


def test_seed_attributes_exist() -> None:
    ws = new_state()
    for name in [
        "nthreads",
        "tasks",
        "data_needed",
        "ready",
        "constrained",
        "executing_count",
        "executed_count",
        "long_running",
        "has_what",
        "pending_data_per_worker",
        "in_flight_tasks",
        "in_flight_workers",
        "comm_bytes",
        "nbytes",
        "waiting_for_data_count",
        "total_out_connections",
        "total_comm_nbytes",
        "log",
        "available_resources",
        "total_resources",
        "executing",
        "paused",
    ]:
        assert hasattr(ws, name), name


def test_many_tasks_run_to_completion() -> None:
    """10,000 tasks, each with an input on one of 4 peers, all the way through."""
    ws = new_state(nthreads=8, validate=False)
    n = 10_000
    events = [
        assign(f"t{i}", run_id=i, priority=(i,), deps={f"x{i}": [f"tcp://p{i % 4}:1"]})
        for i in range(n)
    ]
    pending = ws.handle_stimulus(*events)
    while pending:
        replies = []
        for inst in pending:
            if isinstance(inst, GatherDep):
                replies.append(gathered(inst.worker, inst.keys))
            elif isinstance(inst, Execute):
                replies.append(done(inst.key, inst.run_id))  # type: ignore[arg-type]
        pending = [out for reply in replies for out in ws.handle_stimulus(reply)]
        assert len(ws.in_flight_workers) <= ws.total_out_connections
    assert ws.executed_count == n
    ws.validate()
    assert len(ws.replicas) == n  # every fetched input is kept until the scheduler frees it
    ws.handle_stimulus(freed(*(f"t{i}" for i in range(n)), *(f"x{i}" for i in range(n))))
    assert ws.tasks == {} and ws.has_what == {} and ws.pending_data_per_worker == {}


def _fields(event: object) -> dict[str, Any]:
    return {name: getattr(event, name) for name in event.__struct_fields__}  # type: ignore[attr-defined]


def test_key_heap_is_lazy_ordered_and_bounded() -> None:
    counter = itertools.count()
    heap = KeyHeap(counter)
    heap.push("b", (2,))
    heap.push(("t", 1), (1,))  # keys of different types are never compared
    heap.push("c", (1,))
    assert list(heap) == [("t", 1), "c", "b"] and len(heap) == 3
    heap.discard("c")
    heap.push("b", (0,))  # moved to a better priority
    assert heap.entries() == [((0,), "b"), ((1,), ("t", 1))]
    assert heap.pop() == "b" and heap.peek() == ("t", 1) and "b" not in heap
    for i in range(10_000):
        heap.push("churn", (i,))
    assert len(heap) == 2 and len(heap._heap) < 100


def test_execute_carries_the_run_spec_and_the_input_keys() -> None:
    ws = new_state()
    ws.handle_stimulus(assign("a"), done("a"))
    out = ws.handle_stimulus(assign("b", deps={"a": ()}))
    (execute,) = of(out, Execute)
    assert execute.run_spec == ("spec", "b") and execute.inputs == ("a",)


# -- small results reported with task-finished ------------------------------------------------


def test_inline_result_flag_reaches_execute_and_the_copy_rides_task_finished() -> None:
    ws = new_state()
    event = msgspec.structs.replace(assign("x"), inline_result=True)
    (execute,) = of(ws.handle_stimulus(event), Execute)
    assert execute.inline_result is True
    blob = object()  # the runner's serialized copy, opaque here
    out = ws.handle_stimulus(msgspec.structs.replace(done("x", value=42), inline=blob))
    (msg,) = of(out, TaskFinishedMsg)
    assert msg.value is blob
    assert of(out, StoreValue)[0].value == 42  # the worker still holds the value itself
    task = ws.tasks["x"]
    assert all(getattr(task, name, None) is not blob for name in task.__slots__)
    assert ws._fx.inline_value is None  # nothing kept past the event


def test_no_inline_result_without_the_flag_and_none_for_a_later_report() -> None:
    ws = new_state()
    (execute,) = of(ws.handle_stimulus(assign("x")), Execute)
    assert execute.inline_result is False
    (msg,) = of(ws.handle_stimulus(done("x", value=42)), TaskFinishedMsg)
    assert msg.value is None
    # assigned again while in memory: reported again, with no copy (none was kept)
    (again,) = of(ws.handle_stimulus(assign("x", run_id=2)), TaskFinishedMsg)
    assert again.value is None and again.run_id == 2
