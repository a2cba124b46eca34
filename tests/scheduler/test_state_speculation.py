"""Speculative assignment (``scheduler.state_speculation``): a task whose one missing input
is being computed goes to that input's worker ahead of it, and comes back if the input
does not land there."""

from __future__ import annotations

from shoal.scheduler.events import KeysReleased, RetirementRequested, WorkerStatusChanged
from shoal.scheduler.instructions import FreeKeys, KeyErred, KeyInMemory
from shoal.scheduler.state import SchedulerState
from shoal.scheduler.state_speculation import is_speculative, speculation_depth
from tests.scheduler.helpers import (
    computes,
    erred,
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

CHAIN = [task("a"), task("b", "a"), task("c", "b"), task("d", "c")]


def chain_state(depth: int = 1, workers: tuple[str, ...] = ("w1",)) -> SchedulerState:
    s = new_state(speculation_depth=depth)
    for address in workers:
        handle(s, join(address))
    return s


def test_the_next_task_of_a_chain_goes_with_its_input() -> None:
    s = chain_state(depth=1)
    a, b = computes(handle(s, submit(CHAIN, ["d"])))
    assert (a.key, b.key) == ("a", "b") and a.worker == b.worker == "w1"
    # b's input has no holder and no size yet: the worker waits for its own result
    assert b.who_has == {"a": ()} and b.nbytes == {}
    assert is_speculative(s.tasks["b"]) and s.tasks["b"].waiting_on == {s.tasks["a"]}
    assert s.tasks["c"].state == "waiting"
    # a finishes: b has its input now, and c follows it (one step ahead again)
    c = one_compute(handle(s, finished(a)))
    assert c.key == "c" and c.who_has == {"b": ()}
    assert not is_speculative(s.tasks["b"]) and is_speculative(s.tasks["c"])
    d = one_compute(handle(s, finished(b)))
    assert d.key == "d"
    assert computes(handle(s, finished(c))) == []
    out = handle(s, finished(d))
    assert [i.key for i in of_type(out, KeyInMemory)] == ["d"]
    assert s.tasks["d"].state == "memory"


def test_depth_bounds_how_far_ahead_a_chain_is_sent() -> None:
    s = chain_state(depth=2)
    a, _, _ = computes(handle(s, submit(CHAIN, ["d"])))
    assert [ts.key for ts in s.tasks.values() if ts.state == "processing"] == ["a", "b", "c"]
    assert speculation_depth(s.tasks["c"], 10) == 2
    assert [ct.key for ct in computes(handle(s, submit([task("e", "d")], ["e"])))] == []
    # a lands: c is one step closer, so d follows it (two ahead again)
    assert [ct.key for ct in computes(handle(s, finished(a)))] == ["d"]
    assert speculation_depth(s.tasks["d"], 10) == 2
    s = chain_state(depth=0)
    assert [ct.key for ct in computes(handle(s, submit(CHAIN, ["d"])))] == ["a"]


def test_a_dependent_submitted_later_follows_its_running_input() -> None:
    s = chain_state()
    a = one_compute(handle(s, submit([task("a")], ["a"])))
    b = one_compute(handle(s, submit([task("b", "a")], ["b"])))
    assert b.key == "b" and b.worker == a.worker and is_speculative(s.tasks["b"])


def test_only_a_task_missing_one_unrestricted_input_is_speculated() -> None:
    s = chain_state(workers=("w1", "w2"))
    tasks = [
        task("x"),
        task("y"),
        task("both", "x", "y"),  # two inputs missing
        task("pinned", "x", workers=("w2",)),  # restricted
        task("gpu", "x", resources={"GPU": 1}),
    ]
    sent = {ct.key for ct in computes(handle(s, submit(tasks, ["both", "pinned", "gpu"])))}
    assert sent == {"x", "y"}
    assert not any(is_speculative(ts) for ts in s.tasks.values())


def test_no_speculation_onto_a_paused_worker() -> None:
    s = chain_state()
    handle(s, WorkerStatusChanged(stimulus_id=sid(), worker="w1", status="paused"))
    handle(s, WorkerStatusChanged(stimulus_id=sid(), worker="w1", status="running"))
    a = one_compute(handle(s, submit([task("a")], ["a"])))
    handle(s, WorkerStatusChanged(stimulus_id=sid(), worker="w1", status="paused"))
    assert computes(handle(s, submit([task("b", "a")], ["b"]))) == []
    assert s.tasks["b"].state == "waiting"
    handle(s, WorkerStatusChanged(stimulus_id=sid(), worker="w1", status="running"))
    b = one_compute(handle(s, finished(a)))  # an ordinary assignment now
    assert b.key == "b" and b.who_has == {"a": ("w1",)}


def test_an_erred_input_errs_the_speculative_task_and_frees_it() -> None:
    s = chain_state()
    a, _ = computes(handle(s, submit(CHAIN[:2], ["b"])))
    out = handle(s, erred(a))
    assert [i.key for i in of_type(out, KeyErred)] == ["b"]
    assert s.tasks["b"].state == "erred" and s.tasks["b"].exception_blame is s.tasks["a"]
    freed = [k for f in of_type(out, FreeKeys) for k in f.keys]
    assert "b" in freed
    assert not s.workers["w1"].processing


def test_a_lost_worker_takes_its_speculative_tasks_with_it() -> None:
    s = chain_state(workers=("w1", "w2"))
    a, _ = computes(handle(s, submit(CHAIN[:2], ["b"])))
    home, other = a.worker, ("w2" if a.worker == "w1" else "w1")
    out = handle(s, leave(home))
    assert [(ct.key, ct.worker) for ct in computes(out)] == [("a", other), ("b", other)]
    assert of_type(out, FreeKeys) == []  # nothing is sent to the worker that left
    assert is_speculative(s.tasks["b"])
    handle(s, finished(computes(out)[0]))
    assert s.tasks["b"].state == "processing" and not is_speculative(s.tasks["b"])


def test_a_moved_input_takes_its_follower_back_before_it_is_freed() -> None:
    """Retiring the worker moves a elsewhere: b is freed on the old worker before a is
    (that worker never waits for an input it dropped), and both go to the new one."""
    s = chain_state(workers=("w1", "w2"))
    a, _ = computes(handle(s, submit(CHAIN[:2], ["b"])))
    home, other = a.worker, ("w2" if a.worker == "w1" else "w1")
    out = handle(s, RetirementRequested(stimulus_id=sid(), worker=home))
    freed = [k for f in of_type(out, FreeKeys) if f.worker == home for k in f.keys]
    assert freed == ["b", "a"]
    assert [(ct.key, ct.worker) for ct in computes(out)] == [("a", other), ("b", other)]
    assert s.story("b")[-1][1:3] == ("waiting", "processing")


def test_releasing_the_chain_frees_the_speculative_task() -> None:
    s = chain_state()
    computes(handle(s, submit(CHAIN[:2], ["b"])))
    out = handle(s, KeysReleased(stimulus_id=sid(), client="c1", keys=("b",)))
    freed = [k for f in of_type(out, FreeKeys) for k in f.keys]
    assert set(freed) == {"a", "b"} and freed.index("b") < freed.index("a")
    assert not s.tasks
