"""The scheduler's records and its two indexes (the task queue and the fill index)."""

from __future__ import annotations

import random

import pytest

from shoal.scheduler.policy import DEFAULT_DURATION, restriction_sig
from shoal.scheduler.state_records import (
    EMPTY_DICT,
    EMPTY_SET,
    ClientInfo,
    SchedulerTask,
    TaskPrefix,
    TaskQueue,
    WorkerFillIndex,
    WorkerInfo,
)


def tasks(n: int) -> list[SchedulerTask]:
    prefix = TaskPrefix("t")
    out = []
    for i in range(n):
        ts = SchedulerTask(f"t-{i}", prefix)
        ts.priority = (i,)
        out.append(ts)
    return out


def test_prefix_duration_is_an_exponential_average() -> None:
    prefix = TaskPrefix("inc")
    assert prefix.duration == DEFAULT_DURATION and prefix.n_measured == 0
    prefix.add_duration(2.0)
    assert prefix.duration == 2.0
    prefix.add_duration(1.0)
    assert prefix.duration == 1.5 and prefix.n_measured == 2
    prefix.add_duration(-1.0)  # a clock that went backwards is no measurement
    assert prefix.n_measured == 2
    assert "inc" in repr(prefix)


def test_reprs() -> None:
    assert repr(WorkerInfo("w1", "w1", 2)).startswith("<WorkerInfo 'w1' running threads=2")
    assert repr(ClientInfo("c")) == "<ClientInfo 'c' wants=0>"


def test_queue_pops_best_priority_first() -> None:
    q = TaskQueue()
    ts = tasks(50)
    for t in random.Random(1).sample(ts, len(ts)):
        q.push(t, None)
    assert len(q) == 50 and ts[3] in q
    popped = [q.pop_preferring(None, lambda t: False, 4) for _ in range(50)]
    assert popped == ts and not q and q.signatures() == []


def test_queue_discard_is_lazy_and_compacts() -> None:
    q = TaskQueue()
    ts = tasks(1000)
    for t in ts:
        q.push(t, None)
    for t in ts[:990]:
        q.discard(t)
    q.discard(ts[0])  # twice: a no-op
    assert len(q) == 10 and ts[0] not in q
    assert len(q._heaps[None]) < 100  # rebuilt: dead entries do not pile up
    assert q.peek(None) is ts[990]
    assert sorted(q, key=lambda t: t.queue_seq) == ts[990:]
    assert q.signature_of(ts[995]) is None and ts[0].queue_sig is None


def test_queue_separates_restriction_signatures() -> None:
    q = TaskQueue()
    a, b, c = tasks(3)
    gpu = restriction_sig([], {"GPU": 1})
    q.push(a, gpu)
    q.push(b, None)
    q.push(c, gpu)
    assert q.signatures() == [gpu, None]
    assert q.peek(gpu) is a and q.peek(None) is b and q.signature_of(c) == gpu
    assert q.tasks(gpu) == [a, c]
    q.discard(a)
    assert q.peek(gpu) is c
    assert q.peek(restriction_sig(["w9"], {})) is None


def test_queue_pop_prefers_within_a_window() -> None:
    q = TaskQueue()
    ts = tasks(10)
    dep = SchedulerTask("dep", TaskPrefix("dep"))
    for t in ts:
        t.dependencies = {dep: None}
        q.push(t, None)
    assert q.pop_preferring(None, lambda t: t is ts[2], 4) is ts[2]
    assert q.pop_preferring(None, lambda t: t is ts[8], 4) is ts[0]  # beyond the window
    assert [q.pop_preferring(None, lambda t: False, 4) for _ in range(8)] == [
        ts[1],
        *ts[3:10],
    ]


def test_queue_head_without_inputs_is_taken_at_once() -> None:
    q = TaskQueue()
    ts = tasks(3)
    for t in ts:
        q.push(t, None)
    assert q.pop_preferring(None, lambda t: t is ts[2], 4) is ts[0]


def test_fill_index_returns_the_least_filled_running_worker() -> None:
    index = WorkerFillIndex()
    workers = [WorkerInfo(f"w{i}", f"w{i}", 2) for i in range(3)]
    for ws in workers:
        index.update(ws)
    assert len(index) == 3 and index.least_filled() is workers[0]
    for ws in workers[:2]:
        ws.processing[SchedulerTask(ws.address, TaskPrefix("x"))] = None
        index.update(ws)
    assert index.least_filled() is workers[2]
    workers[2].status = "paused"
    index.update(workers[2])
    assert index.least_filled() is workers[0] and len(index) == 2
    index.update(workers[0], present=False)
    index.update(workers[1], present=False)
    assert index.least_filled() is None and not index


def test_fill_index_compacts_stale_entries() -> None:
    index = WorkerFillIndex()
    ws = WorkerInfo("w", "w", 1)
    for _ in range(1000):
        index.update(ws)
    assert len(index._heap) <= 4 * len(index) + 65
    assert WorkerInfo("z", "z", 0).fill_seq == -1
    index.update(zero := WorkerInfo("z", "z", 0))
    assert zero.fill_seq == -1  # no threads: never offered tasks


def test_records_are_slotted_and_start_with_the_shared_empty_containers() -> None:
    ts = SchedulerTask("x", TaskPrefix("x"))
    for record in (ts, TaskPrefix("x"), WorkerInfo("w", "w", 1), ClientInfo("c")):
        assert not hasattr(record, "__dict__")
    assert ts.dependencies is ts.dependents is ts.waiters is EMPTY_DICT
    assert ts.who_has is EMPTY_DICT
    assert ts.waiting_on is EMPTY_SET and ts.who_wants == ()
    assert ts.resource_restrictions is ts.annotations is EMPTY_DICT


def test_the_shared_empty_containers_refuse_inserts_and_stay_empty() -> None:
    other = SchedulerTask("y", TaskPrefix("y"))
    with pytest.raises(TypeError):
        EMPTY_DICT[other] = None
    with pytest.raises(TypeError):
        EMPTY_DICT.setdefault(other, None)
    with pytest.raises(TypeError):
        EMPTY_DICT.update({other: None})
    with pytest.raises(TypeError):
        EMPTY_SET.add(other)
    with pytest.raises(TypeError):
        EMPTY_SET.update({other})
    assert EMPTY_DICT.pop(other, None) is None  # reads and no-op removals work
    EMPTY_SET.discard(other)
    assert not EMPTY_DICT and not EMPTY_SET and other not in EMPTY_DICT


def test_a_state_machine_run_leaves_the_shared_empties_empty() -> None:
    from shoal.scheduler import events as ev
    from shoal.scheduler.state import SchedulerState

    s = SchedulerState(validate=True)
    s.handle_stimulus(
        ev.WorkerJoined(address="w1", name="w1", nthreads=1, stimulus_id="w"),
        ev.GraphSubmitted(
            client="c",
            tasks=(
                ev.NewTask(key="a", run_spec="spec"),
                ev.NewTask(key="b", run_spec="spec", dependencies=("a",)),
            ),
            wanted=("b",),
            stimulus_id="g",
        ),
    )
    a, b = s.tasks["a"], s.tasks["b"]
    assert b.waiting_on == {a} and a.waiters == {b: None} and a.who_wants == ()
    assert b.who_wants == ("c",) and a.dependencies is EMPTY_DICT
    assert not EMPTY_DICT and not EMPTY_SET
