"""Replicas: the scheduler owns every copy's lifetime and frees surplus ones."""

from __future__ import annotations

from shoal.scheduler.events import (
    KeysReleased,
    RetirementRequested,
    WorkerAddedKeys,
)
from shoal.scheduler.instructions import FreeKeys, SchedulerInstruction
from shoal.scheduler.state import SchedulerState

from .helpers import (
    finished,
    handle,
    join,
    new_state,
    of_type,
    one_compute,
    sid,
    submit,
    task,
)


def _x_on_w1(*workers: str) -> SchedulerState:
    """``x`` computed on w1 and wanted by the client; ``workers`` joined too."""
    s = new_state()
    handle(s, join("w1"), *(join(w) for w in workers))
    ct = one_compute(handle(s, submit([task("x", workers=("w1",))], ["x"])))
    handle(s, finished(ct, nbytes=40))
    return s


def _run_on(
    s: SchedulerState, key: str, worker: str, *deps: str, copies: bool = True
) -> list[SchedulerInstruction]:
    """Run ``key`` (taking ``deps``) on ``worker``; the worker reports the copies it fetched."""
    ct = one_compute(handle(s, submit([task(key, *deps, workers=(worker,))], [key])))
    if copies:
        missing = tuple(d for d in deps if worker not in ct.who_has[d])
        handle(s, WorkerAddedKeys(stimulus_id=sid(), worker=worker, keys=missing))
    return handle(s, finished(ct))


def test_a_copy_made_for_a_task_is_the_one_kept_when_it_is_done() -> None:
    s = _x_on_w1("w2")
    frees = of_type(_run_on(s, "y1", "w2", "x"), FreeKeys)
    assert [(f.worker, f.keys) for f in frees] == [("w1", ("x",))]
    assert s.who_has(["x"]) == {"x": ["w2"]}
    assert s.workers["w1"].nbytes == 0 and s.workers["w2"].nbytes == 40 + 8  # x and y1


def test_the_next_task_there_is_told_its_input_is_local() -> None:
    s = _x_on_w1("w2")
    _run_on(s, "y1", "w2", "x")
    ct = one_compute(handle(s, submit([task("y2", "x", workers=("w2",))], ["y2"])))
    assert ct.who_has == {"x": ("w2",)}  # no transfer needed


def test_copies_needed_by_running_tasks_stay_and_one_spare_besides() -> None:
    s = _x_on_w1("w2", "w3")
    handle(s, WorkerAddedKeys(stimulus_id=sid(), worker="w2", keys=("x",)))
    handle(s, WorkerAddedKeys(stimulus_id=sid(), worker="w3", keys=("x",)))
    # a task needing x keeps running on w1 while one on w3 finishes
    busy = one_compute(handle(s, submit([task("b", "x", workers=("w1",))], ["b"])))
    frees = of_type(_run_on(s, "y", "w3", "x", copies=False), FreeKeys)
    assert [(f.worker, f.keys) for f in frees] == [("w2", ("x",))]
    assert sorted(s.who_has(["x"])["x"]) == ["w1", "w3"]
    out = handle(s, finished(busy))
    frees = of_type(out, FreeKeys)
    assert [(f.worker, f.keys) for f in frees] == [("w1", ("x",))]
    assert s.who_has(["x"]) == {"x": ["w3"]}


def test_releasing_a_key_frees_every_copy() -> None:
    s = _x_on_w1("w2", "w3")
    handle(s, WorkerAddedKeys(stimulus_id=sid(), worker="w2", keys=("x",)))
    handle(s, WorkerAddedKeys(stimulus_id=sid(), worker="w3", keys=("x",)))
    out = handle(s, KeysReleased(stimulus_id=sid(), client="c1", keys=("x",)))
    assert sorted(f.worker for f in of_type(out, FreeKeys)) == ["w1", "w2", "w3"]
    assert s.tasks == {}
    assert all(ws.nbytes == 0 and not ws.has_what for ws in s.workers.values())


def test_a_retiring_holder_neither_counts_nor_loses_its_copy() -> None:
    s = _x_on_w1("w2", "w3")
    handle(s, WorkerAddedKeys(stimulus_id=sid(), worker="w2", keys=("x",)))
    handle(s, RetirementRequested(stimulus_id=sid(), worker="w1"))
    frees = of_type(_run_on(s, "y", "w3", "x"), FreeKeys)
    assert [(f.worker, f.keys) for f in frees] == [("w2", ("x",))]  # w3's is the newest
    assert sorted(s.who_has(["x"])["x"]) == ["w1", "w3"]


def test_a_single_copy_is_never_freed_as_surplus() -> None:
    s = _x_on_w1()
    assert of_type(_run_on(s, "y", "w1", "x", copies=False), FreeKeys) == []
    assert s.who_has(["x"]) == {"x": ["w1"]}
