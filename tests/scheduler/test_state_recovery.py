"""Fencing of stale worker incarnations, and rebuilding the state from workers' reports."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoal._types import Key
from shoal.scheduler.events import (
    NewTask,
    TaskFinished,
    TaskStarted,
    UnclaimedExpired,
    WorkerAddedKeys,
)
from shoal.scheduler.instructions import ComputeTask, FreeKeys, KeyInMemory
from shoal.scheduler.state import SchedulerState
from tests.scheduler.helpers import (
    computes,
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


def done(ct: ComputeTask, incarnation: int | None, nbytes: int = 8) -> TaskFinished:
    return TaskFinished(
        stimulus_id=sid("done"), worker=ct.worker, key=ct.key, run_id=ct.run_id,
        nbytes=nbytes, type_name="int", start=0.0, stop=0.001, incarnation=incarnation,
    )  # fmt: skip


# -- fencing ------------------------------------------------------------------------------------
def test_result_from_a_removed_incarnation_changes_nothing() -> None:
    s = new_state()
    handle(s, join("w1", incarnation=1))
    ct = one_compute(handle(s, submit([task("x")], ["x"])))
    handle(s, leave("w1"))  # e.g. SIGSTOP past worker_ttl
    again = one_compute(handle(s, join("w1", incarnation=2)))  # woke up, registered again
    out = handle(s, done(ct, incarnation=1))  # the old stream's late report
    assert out == [] and s.tasks["x"].state == "processing" and s.fenced_events == 1
    out = handle(s, done(again, incarnation=2))
    assert s.tasks["x"].state == "memory" and s.who_has(["x"]) == {"x": ["w1"]}  # type: ignore[comparison-overlap]
    assert of_type(out, KeyInMemory)


def test_who_has_claim_from_an_old_incarnation_is_ignored() -> None:
    s = new_state()
    handle(s, join("w1", incarnation=1), join("w2", incarnation=2))
    ct = one_compute(handle(s, submit([task("x")], ["x"])))
    handle(s, done(ct, incarnation=1 if ct.worker == "w1" else 2))
    other = "w2" if ct.worker == "w1" else "w1"
    stale = WorkerAddedKeys(stimulus_id=sid(), worker=other, keys=("x",), incarnation=99)
    handle(s, stale)
    assert s.who_has(["x"]) == {"x": [ct.worker]}


def test_late_leave_of_an_old_incarnation_leaves_the_new_one_alone() -> None:
    s = new_state()
    handle(s, join("w1", incarnation=1), leave("w1"), join("w1", incarnation=2))
    late = leave("w1")
    late = type(late)(
        stimulus_id=late.stimulus_id, address="w1", reason="old stream", incarnation=1
    )
    handle(s, late)
    assert "w1" in s.workers and s.workers["w1"].incarnation == 2


def test_registering_again_replaces_the_old_incarnation_and_reschedules_its_work() -> None:
    s = new_state()
    handle(s, join("w1", incarnation=1))
    ct = one_compute(handle(s, submit([task("x")], ["x"])))
    again = one_compute(handle(s, join("w1", incarnation=2)))
    assert again.key == "x" and again.run_id != ct.run_id
    assert s.workers["w1"].incarnation == 2


# -- reports --------------------------------------------------------------------------------------
def test_a_key_reported_by_two_workers_is_a_replica_not_a_conflict() -> None:
    s = new_state()
    handle(s, join("w1", incarnation=1, held=(("x", 8),)))
    handle(s, join("w2", incarnation=2, held=(("x", 8),)))
    out = handle(s, submit([task("x")], ["x"]))
    assert not computes(out) and of_type(out, KeyInMemory)
    assert sorted(s.who_has(["x"])["x"]) == ["w1", "w2"]


def test_reported_result_finishes_a_waiting_task_without_recomputing() -> None:
    s = new_state()
    handle(s, join("w1", incarnation=1))
    ct = one_compute(handle(s, submit([task("a"), task("b", "a")], ["b"])))
    assert ct.key == "a"
    out = handle(s, join("w2", incarnation=2, held=(("a", 8),)))
    assert s.tasks["a"].state == "memory" and s.who_has(["a"]) == {"a": ["w2"]}
    assert [c.key for c in computes(out)] == ["b"]
    assert FreeKeys(stimulus_id=out[0].stimulus_id, worker="w1", keys=("a",)) in out


def test_result_of_a_task_running_at_registration_is_kept_for_a_client() -> None:
    s = new_state()
    handle(s, join("w1", incarnation=1, running=("x",)))
    late = TaskFinished(
        stimulus_id=sid(), worker="w1", key="x", run_id=7, nbytes=3, type_name="int",
        start=0.0, stop=1.0, incarnation=1,
    )  # fmt: skip
    assert handle(s, late) == [] and "x" in s.unclaimed
    out = handle(s, submit([task("x")], ["x"]))
    assert not computes(out) and s.who_has(["x"]) == {"x": ["w1"]}


def test_unclaimed_results_are_freed_after_the_grace_period() -> None:
    s = new_state()
    handle(s, join("w1", incarnation=1, held=(("x", 8),)))
    assert handle(s, UnclaimedExpired(stimulus_id=sid(), now=1.0, before=-1.0)) == []
    out = handle(s, UnclaimedExpired(stimulus_id=sid(), now=500.0, before=400.0))
    assert [(f.worker, f.keys) for f in of_type(out, FreeKeys)] == [("w1", ("x",))]
    assert not s.unclaimed
    assert computes(handle(s, submit([task("x")], ["x"])))  # gone: computed again


def test_unclaimed_results_of_a_worker_that_left_are_forgotten() -> None:
    s = new_state()
    handle(s, join("w1", incarnation=1, held=(("x", 8),)), leave("w1"))
    assert not s.unclaimed


# -- rebuilt state == never-restarted state (hypothesis) -----------------------------------------
WORKERS = ("w0", "w1", "w2")


def random_graph(rng: random.Random, n: int) -> list[NewTask]:
    tasks = []
    for i in range(n):
        deps = rng.sample(range(i), k=min(i, rng.randint(0, 3)))
        tasks.append(task(f"t{i}", *(f"t{d}" for d in deps), priority=(rng.randint(0, 3), i)))
    return tasks


def run_partially(s: SchedulerState, graph: list[NewTask], wanted: list[Key], steps: int) -> None:
    """Join the workers, submit, then finish ``steps`` assigned tasks in random order."""
    rng = random.Random(steps)
    for i, w in enumerate(WORKERS):
        handle(s, join(w, nthreads=2, incarnation=i + 1))
    outstanding = computes(handle(s, submit(graph, wanted)))
    for _ in range(steps):
        if not outstanding:
            break
        ct = outstanding.pop(rng.randrange(len(outstanding)))
        inc = s.workers[ct.worker].incarnation
        start = TaskStarted(stimulus_id=sid(), worker=ct.worker, key=ct.key, run_id=ct.run_id)
        outstanding += computes(handle(s, start, done(ct, incarnation=inc)))


def summary(s: SchedulerState) -> dict[Key, tuple[str, tuple[str, ...], tuple[float, ...]]]:
    """Per task: memory / pending / gone, its holders, and its priority."""
    out = {}
    for key, ts in s.tasks.items():
        cls = "memory" if ts.state == "memory" else "gone"
        if ts.state in ("waiting", "queued", "no-worker", "processing"):
            cls = "pending"
        holders = tuple(sorted(ws.address for ws in ts.who_has))
        if cls != "gone":
            out[key] = (cls, holders, tuple(ts.priority))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 40),
    seed=st.integers(0, 10_000),
    steps=st.integers(0, 60),
    workers_first=st.booleans(),
)
def test_state_rebuilt_from_reports_equals_one_that_never_restarted(
    n: int, seed: int, steps: int, workers_first: bool
) -> None:
    rng = random.Random(seed)
    graph = random_graph(rng, n)
    wanted = [nt.key for nt in graph if rng.random() < 0.3] or [graph[-1].key]
    live = new_state()
    run_partially(live, graph, wanted, steps)

    rebuilt = new_state()
    joins = [
        join(
            w,
            nthreads=2,
            incarnation=10 + i,
            held=tuple((ts.key, ts.nbytes) for ts in live.workers[w].has_what),
        )
        for i, w in enumerate(WORKERS)
    ]
    resubmit = submit(graph, wanted)
    events = [*joins, resubmit] if workers_first else [resubmit, *joins]
    for event in events:
        handle(rebuilt, event)
    assert summary(rebuilt) == summary(live)
    assert rebuilt.who_has(wanted) == live.who_has(wanted)
