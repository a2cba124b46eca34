"""Spare copies: a small result still needed gets a second holder, kept while needed."""

from __future__ import annotations

from shoal.scheduler.events import WorkerAddedKeys
from shoal.scheduler.instructions import AcquireReplicas, FreeKeys
from shoal.scheduler.state import SchedulerState

from .helpers import (
    finished,
    handle,
    join,
    leave,
    new_state,
    of_type,
    one_compute,
    sid,
    submit,
    task,
)


def _x_on_w1(s: SchedulerState, nbytes: int = 40) -> list[AcquireReplicas]:
    """``x`` computed on w1, wanted by the client; the copies it asked for."""
    ct = one_compute(handle(s, submit([task("x", workers=("w1",))], ["x"])))
    return of_type(handle(s, finished(ct, nbytes=nbytes)), AcquireReplicas)


def test_a_small_needed_result_gets_a_copy_on_another_worker() -> None:
    s = new_state(spare_copy_bytes=1000)
    handle(s, join("w1"), join("w2"))
    (acquire,) = _x_on_w1(s)
    assert acquire.worker == "w2" and dict(acquire.who_has) == {"x": ("w1",)}
    handle(s, WorkerAddedKeys(stimulus_id=sid(), worker="w2", keys=("x",)))
    assert sorted(s.who_has(["x"])["x"]) == ["w1", "w2"]


def test_no_copy_when_off_too_big_or_alone() -> None:
    for spare, nbytes, workers in ((0, 40, 2), (1000, 2000, 2), (1000, 40, 1)):
        s = new_state(spare_copy_bytes=spare)
        handle(s, *(join(f"w{i + 1}") for i in range(workers)))
        assert _x_on_w1(s, nbytes) == [], (spare, nbytes, workers)


def test_losing_one_holder_makes_a_new_copy_not_a_recomputation() -> None:
    s = new_state(spare_copy_bytes=1000)
    handle(s, join("w1"), join("w2"), join("w3"))
    (acquire,) = _x_on_w1(s)
    handle(s, WorkerAddedKeys(stimulus_id=sid(), worker=acquire.worker, keys=("x",)))
    out = handle(s, leave("w1"))
    assert s.tasks["x"].state == "memory"
    (again,) = of_type(out, AcquireReplicas)
    assert again.worker not in ("w1", acquire.worker)
    assert dict(again.who_has) == {"x": (acquire.worker,)}


def test_two_copies_of_a_small_result_stay_while_it_is_needed() -> None:
    s = new_state(spare_copy_bytes=1000)
    handle(s, join("w1"), join("w2"), join("w3"))
    (acquire,) = _x_on_w1(s)
    handle(s, WorkerAddedKeys(stimulus_id=sid(), worker=acquire.worker, keys=("x",)))
    other = ({"w2", "w3"} - {acquire.worker}).pop()
    ct = one_compute(handle(s, submit([task("y", "x", workers=(other,))], ["y"])))
    handle(s, WorkerAddedKeys(stimulus_id=sid(), worker=other, keys=("x",)))
    frees = of_type(handle(s, finished(ct)), FreeKeys)
    assert [f.keys for f in frees] == [("x",)]  # three copies: one goes, two stay
    assert len(s.who_has(["x"])["x"]) == 2


def test_a_copy_whose_target_left_before_it_landed_is_asked_again() -> None:
    s = new_state(spare_copy_bytes=1000)
    handle(s, join("w1"), join("w2"), join("w3"))
    (acquire,) = _x_on_w1(s)
    (again,) = of_type(handle(s, leave(acquire.worker)), AcquireReplicas)
    assert again.worker not in ("w1", acquire.worker)
    assert dict(again.who_has) == {"x": ("w1",)}
