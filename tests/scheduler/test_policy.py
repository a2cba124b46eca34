"""The pure placement and admission rules."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.graph.keys import key_split
from shoal.scheduler.policy import (
    DEFAULT_DURATION,
    MAX_TASKS_PER_THREAD,
    REPLICA_SCAN_LIMIT,
    capacity,
    fill,
    has_room,
    holds_inputs,
    missing_bytes,
    pick_worker,
    placement_cost,
    restriction_sig,
    satisfies,
    surplus_replicas,
    valid_workers,
)
from shoal.scheduler.state_records import SchedulerTask, TaskPrefix, WorkerInfo


def worker(
    address: str = "w1",
    nthreads: int = 1,
    name: str = "",
    resources: dict[str, float] | None = None,
) -> WorkerInfo:
    return WorkerInfo(address, name or address, nthreads, resources=resources or {})


def in_memory(key: str, nbytes: int, *holders: WorkerInfo) -> SchedulerTask:
    ts = SchedulerTask(key, TaskPrefix(key_split(key)))
    ts.state, ts.nbytes = "memory", nbytes
    ts.who_has = dict.fromkeys(holders)
    for ws in holders:
        ws.has_what[ts] = None
    return ts


def needing(*deps: SchedulerTask, prefix: TaskPrefix | None = None) -> SchedulerTask:
    ts = SchedulerTask("t", prefix or TaskPrefix("t"))
    ts.dependencies = dict.fromkeys(deps)
    return ts


def busy(ws: WorkerInfo, n: int) -> None:
    """Give ``ws`` ``n`` processing tasks in all."""
    while len(ws.processing) < n:
        ws.processing[SchedulerTask(f"busy-{len(ws.processing)}", TaskPrefix("busy"))] = None


@pytest.mark.parametrize(
    ("nthreads", "latency", "duration", "expected"),
    [
        (1, 0.005, 0.0005, 11),  # the default: 1 running + 10 covering 5 ms
        (4, 0.005, 0.0005, 44),
        (2, 0.005, 1.0, 4),  # long tasks: one queued per thread suffices
        (1, 0.005, 1e-7, MAX_TASKS_PER_THREAD),  # clamped
        (3, 0.005, 0.0, 3 * MAX_TASKS_PER_THREAD),
        (2, 0.0, 0.001, 2),  # no latency: one per thread
        (0, 0.005, 0.001, 0),
    ],
)
def test_capacity(nthreads: int, latency: float, duration: float, expected: int) -> None:
    assert capacity(nthreads, latency, duration) == expected


def test_capacity_ignores_float_jitter() -> None:
    assert capacity(1, 0.005, 1.0005 - 1.0) == 11


def test_has_room_counts_threads_held_not_seceded_tasks() -> None:
    ws = worker(nthreads=1)
    cap = capacity(1, 0.005, DEFAULT_DURATION)
    busy(ws, cap - 1)
    assert has_room(ws, DEFAULT_DURATION, 0.005)
    busy(ws, cap)
    assert not has_room(ws, DEFAULT_DURATION, 0.005)
    ws.long_running[next(iter(ws.processing))] = None
    assert has_room(ws, DEFAULT_DURATION, 0.005)
    ws.status = "paused"
    assert not has_room(ws, DEFAULT_DURATION, 0.005)


def test_fill_is_occupancy_per_thread() -> None:
    ws = worker(nthreads=4)
    busy(ws, 2)
    assert fill(ws) == 0.5
    assert fill(worker(nthreads=0)) == float("inf")


def test_restriction_sig_normalizes() -> None:
    assert restriction_sig((), {}) is None
    assert restriction_sig((), {"GPU": 0}) is None
    assert restriction_sig(["b", "a", "a"], {"GPU": 1, "MEM": 2}) == (
        frozenset({"a", "b"}),
        (("GPU", 1.0), ("MEM", 2.0)),
    )


def test_satisfies_by_address_name_and_resources() -> None:
    ws = worker("tcp://h:1", name="alice", resources={"GPU": 2})
    assert satisfies(None, ws)
    assert satisfies(restriction_sig(["alice"], {}), ws)
    assert satisfies(restriction_sig(["tcp://h:1"], {"GPU": 2}), ws)
    assert not satisfies(restriction_sig(["bob"], {}), ws)
    assert not satisfies(restriction_sig([], {"GPU": 3}), ws)
    assert not satisfies(restriction_sig([], {"TPU": 1}), ws)


def test_valid_workers_are_running_ones_that_satisfy() -> None:
    a, b, c = worker("a", resources={"GPU": 1}), worker("b"), worker("c", resources={"GPU": 1})
    c.status = "paused"
    assert valid_workers(restriction_sig([], {"GPU": 1}), [a, b, c]) == [a]
    assert valid_workers(None, [a, b, c]) == [a, b]


def test_missing_bytes_and_cost() -> None:
    w1, w2 = worker("w1"), worker("w2")
    x, y = in_memory("x", 200_000_000, w1), in_memory("y", 1000, w1, w2)
    ts = needing(x, y)
    assert missing_bytes(ts, w1) == 0 and missing_bytes(ts, w2) == 200_000_000
    assert placement_cost(ts, w2) == pytest.approx(2.0)
    busy(w1, 4)
    assert placement_cost(ts, w1) == pytest.approx(4 * ts.prefix.duration)
    assert holds_inputs(ts, w1) and holds_inputs(ts, w2)
    assert not holds_inputs(ts, worker("w3"))


def test_pick_worker_prefers_data_then_idle_then_random() -> None:
    w1, w2, w3 = worker("w1"), worker("w2"), worker("w3")
    x = in_memory("x", 10_000_000, w1)
    rng = random.Random(0)
    assert pick_worker(needing(x), [w2, w3, w1], rng) is w1
    # no inputs: the least busy; then a seeded coin
    busy(w1, 1)
    assert pick_worker(needing(), [w1, w2], rng) is w2
    picks = {pick_worker(needing(), [w2, w3], random.Random(seed)) for seed in range(20)}
    assert picks == {w2, w3}
    assert pick_worker(needing(), [], rng) is None


def test_pick_worker_weighs_queued_work_against_transfers() -> None:
    slow = TaskPrefix("slow")
    slow.duration = 1.0
    w1, w2 = worker("w1"), worker("w2")
    x = in_memory("x", 1_000_000, w1)  # 10 ms to move
    busy(w1, 1)  # but a second of work ahead on w1
    assert pick_worker(needing(x, prefix=slow), [w1, w2], random.Random(0)) is w2
    fast = TaskPrefix("fast")
    fast.duration = 0.0001
    assert pick_worker(needing(x, prefix=fast), [w1, w2], random.Random(0)) is w1


# -- surplus replicas ---------------------------------------------------------------------


def _holding(key: str, *workers: WorkerInfo) -> SchedulerTask:
    ts = SchedulerTask(key, TaskPrefix(key))
    ts.state = "memory"
    ts.who_has = dict.fromkeys(workers)
    for ws in workers:
        ws.has_what[ts] = None
    return ts


def _running_dependent_of(ts: SchedulerTask, ws: WorkerInfo, key: str) -> SchedulerTask:
    dts = SchedulerTask(key, TaskPrefix(key))
    dts.state = "processing"
    dts.processing_on = ws
    dts.dependencies = {ts: None}
    ts.dependents = {**ts.dependents, dts: None}
    ts.waiters = {**ts.waiters, dts: None}
    ws.processing[dts] = None
    return dts


def test_one_copy_is_never_surplus() -> None:
    w1 = WorkerInfo("w1", "w1", 1)
    assert surplus_replicas(_holding("x", w1)) == []


def test_idle_copies_are_surplus_but_the_newest() -> None:
    w1, w2, w3 = (WorkerInfo(f"w{i}", f"w{i}", 1) for i in (1, 2, 3))
    assert surplus_replicas(_holding("x", w1, w2, w3)) == [w1, w2]


def test_a_copy_a_running_task_needs_is_never_surplus() -> None:
    w1, w2, w3 = (WorkerInfo(f"w{i}", f"w{i}", 1) for i in (1, 2, 3))
    ts = _holding("x", w1, w2, w3)
    _running_dependent_of(ts, w3, "y")
    assert surplus_replicas(ts) == [w1]  # w3 needs it, w2 is the spare
    _running_dependent_of(ts, w2, "z")
    assert surplus_replicas(ts) == []  # w2, w3 need it; w1 is the spare


def test_nothing_is_surplus_while_a_dependent_may_be_fetching_it() -> None:
    w1, w2, w3 = (WorkerInfo(f"w{i}", f"w{i}", 1) for i in (1, 2, 3))
    ts = _holding("x", w1, w2)
    _running_dependent_of(ts, w3, "y")  # w3 holds no copy: it is fetching one
    assert surplus_replicas(ts) == []


def test_a_key_many_tasks_still_wait_for_keeps_its_copies() -> None:
    w1, w2 = (WorkerInfo(f"w{i}", f"w{i}", 1) for i in (1, 2))
    ts = _holding("x", w1, w2)
    ts.waiters = {
        SchedulerTask(f"q{n}", TaskPrefix("q")): None for n in range(REPLICA_SCAN_LIMIT + 1)
    }
    assert surplus_replicas(ts) == []


def test_retiring_holders_neither_count_nor_lose_their_copy() -> None:
    w1, w2 = (WorkerInfo(f"w{i}", f"w{i}", 1) for i in (1, 2))
    w1.status = "closing_gracefully"
    assert surplus_replicas(_holding("x", w1, w2)) == []


@given(
    holders=st.integers(1, 6),
    needing=st.sets(st.integers(0, 5)),
    retiring=st.sets(st.integers(0, 5)),
)
def test_surplus_keeps_every_needed_copy_and_one_more(
    holders: int, needing: set[int], retiring: set[int]
) -> None:
    workers = [WorkerInfo(f"w{i}", f"w{i}", 1) for i in range(holders)]
    for i in retiring & set(range(holders)):
        workers[i].status = "closing_gracefully"
    ts = _holding("x", *workers)
    for i in needing & set(range(holders)):
        _running_dependent_of(ts, workers[i], f"d{i}")
    surplus = surplus_replicas(ts)
    active = [ws for ws in workers if ws.status == "running"]
    need = [ws for ws in active if ws.processing]
    idle = [ws for ws in active if not ws.processing]
    kept = [ws for ws in active if ws not in surplus]
    assert all(ws in active for ws in surplus)  # retiring holders are left alone
    if len(active) <= 1:
        assert surplus == []
    else:  # every copy a running task needs, plus exactly one idle one (if any is idle)
        assert kept == [ws for ws in active if ws in need or ws is (idle or [None])[-1]]  # type: ignore[list-item]
        assert len(kept) == len(need) + (1 if idle else 0)
