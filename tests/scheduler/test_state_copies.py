"""Spare copies: a small result still needed gets a second holder, kept while needed."""

from __future__ import annotations

from shoal.scheduler.events import KeysReleased, WorkerAddedKeys
from shoal.scheduler.instructions import AcquireReplicas, FreeKeys, SchedulerInstruction
from shoal.scheduler.state import SchedulerState

from .helpers import (
    computes,
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


def _b_done_on_w1(s: SchedulerState, a_bytes: int = 40) -> tuple[str, list[SchedulerInstruction]]:
    """``a -> b`` on w1, the client wants ``b``; ``a``'s spare copy landed; ``b`` just
    finished (its own copy not landed yet). Returns a's second holder and b's instructions."""
    graph = [
        task("a", workers=("w1",), allow_other_workers=True),
        task("b", "a", workers=("w1",), allow_other_workers=True),
    ]
    ct = one_compute(handle(s, submit(graph, ["b"])))
    out = handle(s, finished(ct, nbytes=a_bytes))
    copies = of_type(out, AcquireReplicas)
    second = copies[0].worker if copies else "w2"
    if copies:
        handle(s, WorkerAddedKeys(stimulus_id=sid(), worker=second, keys=("a",)))
    ct = one_compute(out)
    return second, handle(s, finished(ct, nbytes=40))


def test_an_input_is_kept_until_its_dependents_spare_copy_lands() -> None:
    s = new_state(spare_copy_bytes=1000)
    handle(s, join("w1"), join("w2"), join("w3"))
    _, out = _b_done_on_w1(s)
    assert of_type(out, FreeKeys) == []  # b has one copy: a stays
    a = s.tasks["a"]
    assert a.state == "memory" and a in s.engine.kept
    (copy,) = of_type(out, AcquireReplicas)
    assert dict(copy.who_has) == {"b": ("w1",)}
    out = handle(s, WorkerAddedKeys(stimulus_id=sid(), worker=copy.worker, keys=("b",)))
    assert sorted(k for f in of_type(out, FreeKeys) for k in f.keys) == ["a", "a"]
    assert s.tasks["a"] is a and len(s.engine.kept) == 0
    assert a.state == "released"  # type: ignore[comparison-overlap]  # moved by the event


def test_a_loss_in_the_single_copy_window_recomputes_one_level() -> None:
    s = new_state(spare_copy_bytes=1000)
    handle(s, join("w1"), join("w2"), join("w3"))
    _b_done_on_w1(s)
    out = handle(s, leave("w1"))  # b's only copy, before its spare copy landed
    assert [ct.key for ct in computes(out)] == ["b"]  # from a's copy: not a too
    assert s.tasks["a"].state == "memory"


def test_large_inputs_are_released_as_before() -> None:
    s = new_state(spare_copy_bytes=1000)
    handle(s, join("w1"), join("w2"), join("w3"))
    _, out = _b_done_on_w1(s, a_bytes=5000)
    assert [f.keys for f in of_type(out, FreeKeys)] == [("a",)]
    assert len(s.engine.kept) == 0
    out = handle(s, leave("w1"))
    assert [ct.key for ct in computes(out)] == ["a"]  # today's cascade, one level here


def test_inputs_go_when_the_dependent_is_no_longer_needed() -> None:
    s = new_state(spare_copy_bytes=1000)
    handle(s, join("w1"), join("w2"), join("w3"))
    _b_done_on_w1(s)
    out = handle(s, KeysReleased(stimulus_id=sid(), client="c1", keys=("b",)))
    assert sorted(k for f in of_type(out, FreeKeys) for k in f.keys) == ["a", "a", "b"]
    assert not s.tasks and len(s.engine.kept) == 0 and not s.engine.spare_in_flight


def test_nothing_is_kept_once_no_copy_can_land() -> None:
    s = new_state(spare_copy_bytes=1000)
    handle(s, join("w1"), join("w2"))
    _b_done_on_w1(s)
    assert s.tasks["a"] in s.engine.kept
    out = handle(s, leave("w2"))  # b's copy was on its way to w2; w1 is alone now
    assert [f.keys for f in of_type(out, FreeKeys)] == [("a",)]
    assert s.tasks["b"].state == "memory" and len(s.engine.kept) == 0
