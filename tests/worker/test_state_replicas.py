"""Fetched inputs stay as replicas the scheduler owns; memory pressure drops them first."""

from __future__ import annotations

from shoal.worker.events import MemoryPressureDetected, ReplicasRequested
from shoal.worker.instructions import (
    AddKeysMsg,
    DeleteValue,
    GatherDep,
    ReleaseWorkerDataMsg,
    StoreValue,
)
from shoal.worker.state import WorkerState
from tests.worker.state_helpers import (
    A,
    B,
    assign,
    done,
    freed,
    gathered,
    kinds,
    new_state,
    of,
    sid,
    state_of,
)


def _holding_copy_of(key: str = "x") -> WorkerState:
    """A worker that fetched ``key`` for task ``t``, ran ``t``, and still holds ``key``."""
    ws = new_state(nthreads=1)
    ws.handle_stimulus(assign("t", deps={key: [A]}))
    out = ws.handle_stimulus(gathered(A, [key]))
    assert of(out, AddKeysMsg)[0].keys == (key,)
    ws.handle_stimulus(done("t"))
    return ws


def pressure(nbytes: int) -> MemoryPressureDetected:
    return MemoryPressureDetected(stimulus_id=sid("memory"), nbytes=nbytes)


def test_a_fetched_input_stays_after_its_task_finishes() -> None:
    ws = _holding_copy_of("x")
    assert state_of(ws, "x") == "memory"
    assert ws.tasks["x"].replica and list(ws.replicas) == ["x"]


def test_the_next_task_needing_a_kept_input_fetches_nothing() -> None:
    ws = _holding_copy_of("x")
    out = ws.handle_stimulus(assign("t2", deps={"x": [A]}))
    assert of(out, GatherDep) == []
    assert kinds(out) == ["Execute", "TaskStartedMsg"]


def test_the_scheduler_frees_a_kept_input_without_being_told_back() -> None:
    ws = _holding_copy_of("x")
    out = ws.handle_stimulus(freed("x"))
    assert kinds(out) == ["DeleteValue"]  # the scheduler freed it: no release-worker-data
    assert "x" not in ws.tasks and ws.replicas == {}
    assert ws.has_what == {}


def test_freed_while_a_task_here_still_needs_it_goes_when_that_task_ends() -> None:
    ws = new_state(nthreads=1)
    ws.handle_stimulus(assign("t", deps={"x": [A], "y": [B]}))
    ws.handle_stimulus(gathered(A, ["x"]))  # y did not come yet: t waits
    ws.handle_stimulus(freed("x"))  # surplus at the scheduler, but t needs it here
    assert state_of(ws, "x") == "memory" and "x" not in ws.replicas
    ws.handle_stimulus(gathered(B, ["y"]))
    out = ws.handle_stimulus(done("t"))
    assert [i.key for i in of(out, DeleteValue)] == ["x"]  # y stays as a copy; x goes
    assert of(out, ReleaseWorkerDataMsg) == []  # the scheduler already forgot this copy
    assert "x" not in ws.tasks and list(ws.replicas) == ["y"]


def test_memory_pressure_drops_copies_oldest_first_and_tells_the_scheduler() -> None:
    ws = new_state(nthreads=1)
    for n in range(3):
        ws.handle_stimulus(assign(f"t{n}", deps={f"x{n}": [A]}))
        ws.handle_stimulus(gathered(A, [f"x{n}"]))  # 20 bytes each
        ws.handle_stimulus(done(f"t{n}"))
    out = ws.handle_stimulus(pressure(30))
    assert [i.key for i in of(out, DeleteValue)] == ["x0", "x1"]
    assert [i.key for i in of(out, ReleaseWorkerDataMsg)] == ["x0", "x1"]
    assert list(ws.replicas) == ["x2"]
    assert {"t0", "t1", "t2"} <= set(ws.tasks)  # results computed here are never dropped


def test_memory_pressure_keeps_copies_a_task_here_still_needs() -> None:
    ws = new_state(nthreads=1)
    ws.handle_stimulus(assign("t", deps={"x": [A], "y": [B]}))
    ws.handle_stimulus(gathered(A, ["x"]))
    out = ws.handle_stimulus(pressure(10**9))
    assert of(out, DeleteValue) == [] and state_of(ws, "x") == "memory"


def test_a_store_past_the_memory_target_drops_copies_before_storing() -> None:
    ws = new_state(nthreads=1, memory_target=50)
    ws.handle_stimulus(assign("t", deps={"x": [A]}))
    ws.handle_stimulus(gathered(A, ["x"]))  # 20 bytes, a copy once t is done
    out = ws.handle_stimulus(done("t", nbytes=40))  # 20 + 40 > 50: x must go first
    deletes = [i for i in out if isinstance(i, (DeleteValue, StoreValue))]
    # the copy goes before the store, so the spill buffer never spills unique data for it
    assert [(type(i).__name__, i.key) for i in deletes] == [
        ("DeleteValue", "x"),
        ("StoreValue", "t"),
    ]
    assert "x" not in ws.tasks and ws.managed_nbytes == 40


def test_a_later_store_drops_an_announced_copy_and_says_so() -> None:
    ws = new_state(nthreads=1, memory_target=25)
    ws.handle_stimulus(assign("big", deps={}), assign("t", deps={"x": [A]}))
    ws.handle_stimulus(done("big", nbytes=20))
    out = ws.handle_stimulus(gathered(A, ["x"]))  # arrives; t runs; nothing dropped yet
    assert of(out, AddKeysMsg)[0].keys == ("x",)
    out = ws.handle_stimulus(done("t", nbytes=4))  # x is a copy now; 20+20+4 > 25
    assert [i.key for i in of(out, DeleteValue)] == ["x"]
    assert [i.key for i in of(out, ReleaseWorkerDataMsg)] == ["x"]


def test_a_copy_dropped_in_the_event_it_arrived_is_never_announced() -> None:
    ws = new_state(nthreads=1, memory_target=30)
    requested = ReplicasRequested(
        stimulus_id=sid("acquire"), who_has={"x": (A,), "y": (A,)}, nbytes={"x": 20, "y": 20}
    )
    ws.handle_stimulus(requested)
    out = ws.handle_stimulus(gathered(A, ["x", "y"]))  # the second store needs the room
    (deleted,) = of(out, DeleteValue)
    kept = ({"x", "y"} - {deleted.key}).pop()
    assert [m.keys for m in of(out, AddKeysMsg)] == [(kept,)]
    assert of(out, ReleaseWorkerDataMsg) == []
    assert list(ws.replicas) == [kept]


def test_a_kept_copy_assigned_here_is_no_longer_a_copy() -> None:
    ws = _holding_copy_of("x")
    out = ws.handle_stimulus(assign("x", run_id=5))
    assert kinds(out) == ["TaskFinishedMsg"]
    assert ws.replicas == {}
    out = ws.handle_stimulus(pressure(10**9))
    assert of(out, DeleteValue) == []
