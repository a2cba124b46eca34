"""WorkerState: ``rejoin()`` after ``secede()``, and secede/rejoin racing a cancel."""

from __future__ import annotations

from shoal.worker.events import TaskRejoined, WorkerPaused
from shoal.worker.instructions import Execute, GrantThread, TaskRejoinedMsg

from .state_helpers import assign, done, freed, kinds, new_state, of, seceded, sid


def rejoined(key: str) -> TaskRejoined:
    return TaskRejoined(key=key, stimulus_id=sid("rejoin"))


def test_rejoin_with_a_free_thread_is_granted_at_once() -> None:
    ws = new_state(nthreads=1)
    ws.handle_stimulus(assign("x", run_id=3), seceded("x"))
    event = rejoined("x")
    out = ws.handle_stimulus(event)
    assert out == [
        GrantThread(key="x", stimulus_id=event.stimulus_id),
        TaskRejoinedMsg(key="x", run_id=3, stimulus_id=event.stimulus_id),
    ]
    assert ws.tasks["x"].state == "executing"
    assert ws.executing == {"x"} and ws.long_running == set() and ws.rejoining == {}


def test_rejoin_waits_for_a_thread_and_goes_before_new_tasks() -> None:
    ws = new_state(nthreads=1)
    ws.handle_stimulus(assign("x", priority=(0,)), assign("y", priority=(1,)), seceded("x"))
    assert ws.executing == {"y"}
    ws.handle_stimulus(assign("z", priority=(-5,)))  # better priority than anyone
    assert ws.handle_stimulus(rejoined("x")) == []
    assert ws.rejoining == {"x": None} and ws.tasks["x"].state == "long-running"
    out = ws.handle_stimulus(done("y"))
    assert of(out, Execute) == []  # z waits: the thread goes back to x
    assert [g.key for g in of(out, GrantThread)] == ["x"]
    assert ws.executing == {"x"} and ws.tasks["z"].state == "ready"
    out = ws.handle_stimulus(done("x"))
    assert [e.key for e in of(out, Execute)] == ["z"]


def test_rejoins_are_granted_first_come_first_served() -> None:
    ws = new_state(nthreads=1)
    ws.handle_stimulus(assign("a"), seceded("a"), assign("b"), seceded("b"), assign("c"))
    ws.handle_stimulus(rejoined("b"), rejoined("a"))
    assert list(ws.rejoining) == ["b", "a"]
    out = ws.handle_stimulus(done("c"))
    assert [g.key for g in of(out, GrantThread)] == ["b"]
    out = ws.handle_stimulus(done("b"))
    assert [g.key for g in of(out, GrantThread)] == ["a"]


def test_rejoin_without_secede_lets_the_thread_go_on() -> None:
    ws = new_state(nthreads=1)
    ws.handle_stimulus(assign("x"))
    out = ws.handle_stimulus(rejoined("x"))
    assert kinds(out) == ["GrantThread"]
    assert ws.executing == {"x"}
    assert kinds(ws.handle_stimulus(rejoined("unknown"))) == ["GrantThread"]


def test_a_paused_worker_still_lets_a_task_rejoin() -> None:
    ws = new_state(nthreads=1)
    ws.handle_stimulus(assign("x"), seceded("x"), WorkerPaused(stimulus_id=sid("pause")))
    assert kinds(ws.handle_stimulus(rejoined("x"))) == ["GrantThread", "TaskRejoinedMsg"]


def test_rejoin_after_cancel_is_granted_silently_and_the_result_dropped() -> None:
    ws = new_state(nthreads=1, resources={"GPU": 1})
    ws.handle_stimulus(assign("x", resources={"GPU": 1}), seceded("x"), freed("x"))
    assert ws.tasks["x"].state == "cancelled"
    out = ws.handle_stimulus(rejoined("x"))
    assert kinds(out) == ["GrantThread"]  # nobody to tell: the scheduler forgot it
    assert ws.executing == {"x"} and ws.tasks["x"].previous == "executing"
    assert ws.handle_stimulus(done("x")) == []
    assert ws.tasks == {} and ws.executing == set()
    assert ws.available_resources == {"GPU": 1}


def test_cancelled_while_waiting_to_rejoin_still_gets_its_thread() -> None:
    ws = new_state(nthreads=1)
    ws.handle_stimulus(assign("x"), seceded("x"), assign("y"), rejoined("x"), freed("x"))
    assert ws.tasks["x"].state == "cancelled" and ws.rejoining == {"x": None}
    out = ws.handle_stimulus(done("y"))
    assert kinds(out)[-1:] == ["GrantThread"]
    assert ws.executing == {"x"} and ws.rejoining == {}


def test_reassigned_while_waiting_to_rejoin_resumes_and_rejoins() -> None:
    ws = new_state(nthreads=1)
    ws.handle_stimulus(assign("x", run_id=1), seceded("x"), assign("y"), rejoined("x"))
    ws.handle_stimulus(freed("x"))
    out = ws.handle_stimulus(assign("x", run_id=2))
    assert kinds(out) == ["LongRunningMsg"]
    out = ws.handle_stimulus(done("y"))
    assert [(m.key, m.run_id) for m in of(out, TaskRejoinedMsg)] == [("x", 2)]
    out = ws.handle_stimulus(done("x", run_id=1))  # the thread's attempt, reported as run 2
    assert kinds(out) == ["StoreValue", "TaskFinishedMsg"]


def test_a_cancelled_thread_seceding_and_rejoining_are_moves_of_the_table() -> None:
    ws = new_state(nthreads=1)
    hook_calls: list[tuple[object, str, str]] = []
    ws.transition_hook = lambda key, start, finish: hook_calls.append((key, start, finish))
    ws.handle_stimulus(assign("x"), freed("x"))
    assert ws.tasks["x"].previous == "executing"
    ws.handle_stimulus(seceded("x"))
    assert ws.tasks["x"].previous == "long-running" and ws.long_running == {"x"}
    ws.handle_stimulus(rejoined("x"))
    assert ws.tasks["x"].previous == "executing" and ws.executing == {"x"}
    moves = [(key, start, finish) for key, start, finish, *_ in ws.story("x") if key == "x"]
    assert moves[-2:] == [("x", "cancelled", "cancelled")] * 2
    assert hook_calls[-2:] == [("x", "cancelled", "cancelled")] * 2
