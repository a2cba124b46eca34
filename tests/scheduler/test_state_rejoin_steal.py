"""SchedulerState: a seceded task that rejoins occupies a thread again; a worker that
gives a task up in answer to a steal request gets it placed again."""

from __future__ import annotations

import pytest

from shoal.scheduler.events import StealResponded, TaskRejoined, TaskSeceded
from shoal.scheduler.instructions import FreeKeys
from shoal.scheduler.policy import capacity, occupying

from .helpers import computes, handle, join, new_state, of_type, sid, submit, task

CAP1 = capacity(1, 0.005, 0.0005)


def test_a_rejoined_task_occupies_a_thread_again() -> None:
    s = new_state()
    handle(s, join("w1"))
    keys = [f"t-{i}" for i in range(CAP1 + 2)]
    cts = computes(handle(s, submit([task(k, priority=(i,)) for i, k in enumerate(keys)], keys)))
    first = cts[0]
    handle(s, TaskSeceded(stimulus_id=sid(), worker="w1", key=first.key, run_id=first.run_id))
    ws = s.workers["w1"]
    assert occupying(ws) == len(ws.processing) - 1
    stale = TaskRejoined(stimulus_id=sid(), worker="w1", key=first.key, run_id=first.run_id + 99)
    handle(s, stale)
    assert ws.long_running == {s.tasks[first.key]: None}
    out = handle(
        s, TaskRejoined(stimulus_id=sid(), worker="w1", key=first.key, run_id=first.run_id)
    )
    assert out == [] and ws.long_running == {}
    assert occupying(ws) == len(ws.processing)


def test_rejoin_of_a_task_that_never_seceded_changes_nothing() -> None:
    s = new_state()
    handle(s, join("w1"))
    (ct,) = computes(handle(s, submit([task("x")], ["x"])))
    assert handle(s, TaskRejoined(stimulus_id=sid(), worker="w1", key="x", run_id=ct.run_id)) == []
    assert s.workers["w1"].long_running == {}


@pytest.mark.parametrize("state", ["waiting", "ready", "constrained", None])
def test_a_task_given_up_after_a_steal_request_is_placed_again(state: str | None) -> None:
    s = new_state()
    handle(s, join("w1"))
    (ct,) = computes(handle(s, submit([task("x")], ["x"])))
    out = handle(s, StealResponded(stimulus_id=sid(), worker="w1", key="x", state=state))
    (again,) = computes(out)
    assert again.key == "x" and again.run_id > ct.run_id
    assert [f.keys for f in of_type(out, FreeKeys)] == [("x",)]
    assert s.tasks["x"].processing_on is s.workers["w1"]


@pytest.mark.parametrize("state", ["executing", "long-running", "memory", "flight"])
def test_a_task_kept_after_a_steal_request_stays(state: str) -> None:
    s = new_state()
    handle(s, join("w1"))
    (ct,) = computes(handle(s, submit([task("x")], ["x"])))
    assert handle(s, StealResponded(stimulus_id=sid(), worker="w1", key="x", state=state)) == []
    assert s.tasks["x"].run_id == ct.run_id


def test_a_steal_response_from_another_worker_is_ignored() -> None:
    s = new_state()
    handle(s, join("w1"), join("w2"))
    (ct,) = computes(handle(s, submit([task("x")], ["x"])))
    other = "w2" if ct.worker == "w1" else "w1"
    assert handle(s, StealResponded(stimulus_id=sid(), worker=other, key="x", state="ready")) == []
