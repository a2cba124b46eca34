"""WorkerState with a task sent ahead of its input (``scheduler.state_speculation``): the
input is being computed here, so the task waits for it without fetching, and runs the
moment it lands."""

from __future__ import annotations

from shoal.worker.instructions import Execute, GatherDep, TaskFinishedMsg

from .state_helpers import assign, done, failed, freed, new_state, of, state_of


def test_a_task_sent_ahead_waits_for_its_running_input_and_then_runs() -> None:
    ws = new_state()
    ws.handle_stimulus(assign("a", run_id=1))
    assert state_of(ws, "a") == "executing"
    # as the scheduler sends it: the input has no holder and no size yet
    out = ws.handle_stimulus(assign("b", run_id=2, deps={"a": ()}, nbytes={}))
    assert state_of(ws, "b") == "waiting"
    assert of(out, GatherDep) == [] and of(out, Execute) == []
    out = ws.handle_stimulus(done("a", run_id=1, nbytes=28))
    assert [m.key for m in of(out, TaskFinishedMsg)] == ["a"]
    assert [e.key for e in of(out, Execute)] == ["b"]  # no round trip to the scheduler
    assert ws.tasks["a"].nbytes == 28
    out = ws.handle_stimulus(done("b", run_id=2))
    assert [m.key for m in of(out, TaskFinishedMsg)] == ["b"]


def test_a_task_sent_ahead_of_a_queued_input_waits_for_it_too() -> None:
    ws = new_state()
    ws.handle_stimulus(assign("x", run_id=1))  # the only thread
    ws.handle_stimulus(assign("a", run_id=2))
    assert state_of(ws, "a") == "ready"
    ws.handle_stimulus(assign("b", run_id=3, deps={"a": ()}, nbytes={}))
    assert state_of(ws, "b") == "waiting"
    out = ws.handle_stimulus(done("x", run_id=1))
    assert [e.key for e in of(out, Execute)] == ["a"]
    out = ws.handle_stimulus(done("a", run_id=2))
    assert [e.key for e in of(out, Execute)] == ["b"]


def test_taken_back_before_its_input_is_freed() -> None:
    """The scheduler frees the task sent ahead first, then its input (it moved)."""
    ws = new_state()
    ws.handle_stimulus(assign("a", run_id=1))
    ws.handle_stimulus(assign("b", run_id=2, deps={"a": ()}, nbytes={}))
    ws.handle_stimulus(freed("b"))
    ws.handle_stimulus(freed("a"))
    assert "b" not in ws.tasks and state_of(ws, "a") == "cancelled"
    out = ws.handle_stimulus(done("a", run_id=1))
    assert of(out, TaskFinishedMsg) == [] and ws.tasks == {}


def test_a_failed_input_leaves_it_waiting_for_the_scheduler() -> None:
    ws = new_state()
    ws.handle_stimulus(assign("a", run_id=1))
    ws.handle_stimulus(assign("b", run_id=2, deps={"a": ()}, nbytes={}))
    out = ws.handle_stimulus(failed("a", run_id=1))
    assert of(out, Execute) == [] and state_of(ws, "b") == "waiting"
    ws.handle_stimulus(freed("b", "a"))  # the scheduler errs b and frees both
    assert ws.tasks == {}
