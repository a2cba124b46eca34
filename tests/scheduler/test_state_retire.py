"""SchedulerState: retiring a worker copies its unique keys away, places its running
tasks elsewhere and closes it only once it holds nothing unique."""

from __future__ import annotations

from shoal.scheduler.events import (
    RetirementRequested,
    WorkerAddedKeys,
    WorkerStatusChanged,
)
from shoal.scheduler.instructions import AcquireReplicas, CloseWorker, FreeKeys

from .helpers import computes, finished, handle, join, leave, new_state, of_type, sid, submit, task


def retire(worker: str) -> RetirementRequested:
    return RetirementRequested(stimulus_id=sid("retire"), worker=worker)


def test_retiring_copies_unique_keys_then_closes() -> None:
    s = new_state()
    handle(s, join("w1"))
    (ct,) = computes(handle(s, submit([task("x")], ["x"])))
    handle(s, finished(ct, nbytes=8))
    handle(s, join("w2"))
    out = handle(s, retire("w1"))
    (acquire,) = of_type(out, AcquireReplicas)
    assert acquire.worker == "w2" and acquire.who_has == {"x": ("w1",)}
    assert of_type(out, CloseWorker) == []
    assert s.workers["w1"].status == "closing_gracefully"
    assert computes(handle(s, submit([task("y")], ["y"])))[0].worker == "w2"
    out = handle(s, WorkerAddedKeys(stimulus_id=sid(), worker="w2", keys=("x",)))
    assert [c.worker for c in of_type(out, CloseWorker)] == ["w1"]
    assert s.retiring == {}


def test_running_tasks_are_placed_elsewhere_and_the_worker_stays_retiring() -> None:
    s = new_state()
    handle(s, join("w1"))
    (ct,) = computes(handle(s, submit([task("x")], ["x"])))
    handle(s, join("w3"))
    out = handle(s, retire("w1"))
    (again,) = computes(out)
    assert again.worker == "w3" and again.run_id > ct.run_id
    assert [f.keys for f in of_type(out, FreeKeys)] == [("x",)]
    assert [c.worker for c in of_type(out, CloseWorker)] == ["w1"]


def test_a_retiring_worker_that_resumes_stays_closing() -> None:
    s = new_state()
    handle(s, join("w1"))
    (ct,) = computes(handle(s, submit([task("x")], ["x"])))
    handle(s, finished(ct))
    handle(s, join("w2"))
    handle(s, retire("w1"))
    handle(s, WorkerStatusChanged(stimulus_id=sid(), worker="w1", status="running"))
    assert s.workers["w1"].status == "closing_gracefully"
    assert s.workers["w1"] in s.retiring


def test_retirement_is_refused_when_no_other_worker_could_keep_the_data() -> None:
    s = new_state()
    handle(s, join("w1"))
    (ct,) = computes(handle(s, submit([task("x")], ["x"])))
    handle(s, finished(ct))
    assert handle(s, retire("w1")) == []
    assert s.workers["w1"].status == "running" and s.retiring == {}


def test_a_retiring_worker_that_leaves_is_forgotten() -> None:
    s = new_state()
    handle(s, join("w1"))
    (ct,) = computes(handle(s, submit([task("x")], ["x"])))
    handle(s, finished(ct))
    handle(s, join("w2"))
    handle(s, retire("w1"))
    out = handle(s, leave("w1", expected=True))
    assert of_type(out, CloseWorker) == [] and s.retiring == {}


def test_workers_retired_together_never_copy_onto_each_other() -> None:
    """Two workers retired by one request: their unique keys go to the third worker only,
    so both close once those copies arrive (none is moved twice, none is lost)."""
    s = new_state()
    handle(s, join("w1"))
    (cx,) = computes(handle(s, submit([task("x")], ["x"])))
    handle(s, finished(cx, nbytes=8))
    handle(s, join("w2"))
    (cy,) = computes(handle(s, submit([task("y", workers=("w2",))], ["y"])))
    assert (cx.worker, cy.worker) == ("w1", "w2")
    handle(s, finished(cy, nbytes=8))
    handle(s, join("w3"))
    # w3 holds the most bytes, so "least loaded first" alone would pick w2 for x
    (cz,) = computes(handle(s, submit([task("z", workers=("w3",))], ["z"])))
    handle(s, finished(cz, nbytes=10**6))
    both = frozenset({"w1", "w2"})
    out = handle(
        s,
        RetirementRequested(stimulus_id=sid("retire"), worker="w1", also_retiring=both - {"w1"}),
        RetirementRequested(stimulus_id=sid("retire"), worker="w2", also_retiring=both - {"w2"}),
    )
    assert {a.worker for a in of_type(out, AcquireReplicas)} == {"w3"}
    copied = {key for a in of_type(out, AcquireReplicas) for key in a.who_has}
    assert copied == {"x", "y"} and of_type(out, CloseWorker) == []
    out = handle(s, WorkerAddedKeys(stimulus_id=sid(), worker="w3", keys=tuple(sorted(copied))))
    assert sorted(c.worker for c in of_type(out, CloseWorker)) == ["w1", "w2"]
    assert s.retiring == {}
