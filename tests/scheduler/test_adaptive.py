"""The pure rules of adaptive scaling: targets, which workers close, when to act."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.graph.keys import key_split
from shoal.scheduler.adaptive import (
    Load,
    adaptive_target,
    decide,
    measure_load,
    unique_bytes,
    workers_to_close,
)
from shoal.scheduler.state_records import SchedulerTask, TaskPrefix, WorkerInfo

from .helpers import join, new_state, submit, task


def load(
    work: float = 0.0,
    tasks: int = 0,
    memory: int = 0,
    workers: int = 0,
    threads: int = 0,
    limit: int = 0,
) -> Load:
    return Load(work, tasks, memory, workers, threads, limit)


def test_no_work_needs_no_workers_but_the_minimum() -> None:
    assert adaptive_target(load(), target_duration=5) == 0
    assert adaptive_target(load(), target_duration=5, minimum=2) == 2


def test_work_is_spread_to_take_target_duration() -> None:
    # 100 s of work, 5 s target, 2 threads a worker: 10 workers
    assert adaptive_target(load(100, 1000, workers=1, threads=2), target_duration=5) == 10
    assert adaptive_target(load(100, 1000), target_duration=5, threads_per_worker=4) == 5


def test_any_task_asks_for_a_worker_but_never_more_workers_than_tasks() -> None:
    assert adaptive_target(load(0.001, 1), target_duration=5) == 1
    assert adaptive_target(load(1000, 3), target_duration=1) == 3


def test_held_data_keeps_enough_memory() -> None:
    # 3 workers of 1 GB hold 2.5 GB: no work left, still 3 workers
    assert adaptive_target(load(0, 0, int(2.5e9), 3, 3, int(3e9)), target_duration=5) == 3


def test_maximum_wins() -> None:
    assert adaptive_target(load(1000, 1000), target_duration=1, maximum=4) == 4


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="target_duration"):
        adaptive_target(load(), target_duration=0)
    with pytest.raises(ValueError, match="minimum"):
        adaptive_target(load(), target_duration=1, minimum=3, maximum=2)


@given(
    work=st.floats(0, 1e6),
    tasks=st.integers(0, 10_000),
    threads=st.integers(1, 16),
    minimum=st.integers(0, 10),
    extra=st.integers(0, 100),
    target_duration=st.floats(0.01, 100),
)
def test_target_is_within_bounds_and_covers_the_work(
    work: float, tasks: int, threads: int, minimum: int, extra: int, target_duration: float
) -> None:
    maximum = minimum + extra
    n = adaptive_target(
        load(work, tasks),
        target_duration=target_duration,
        minimum=minimum,
        maximum=maximum,
        threads_per_worker=threads,
    )
    assert minimum <= n <= maximum
    if n < maximum and n < math.ceil(tasks / threads):  # not capped: the work fits
        assert work / (max(n, 1) * threads) <= target_duration * (1 + 1e-6)
    if tasks and maximum >= 1:
        assert n >= 1


def test_measure_load_counts_queued_work_at_measured_durations() -> None:
    state = new_state()
    state.handle_stimulus(join("w1", nthreads=2, memory_limit=1000))
    state.handle_stimulus(
        submit([task(f"slow-{i}") for i in range(10)], [f"slow-{i}" for i in range(10)])
    )
    state.prefixes["slow"].add_duration(3.0)
    measured = measure_load(state)
    assert measured.active_tasks == 10
    assert measured.work_seconds == pytest.approx(30.0)
    assert (measured.n_workers, measured.n_threads, measured.memory_limit) == (1, 2, 1000)
    assert adaptive_target(measured, target_duration=5, threads_per_worker=2) == 3


def held(key: str, nbytes: int, *holders: WorkerInfo) -> SchedulerTask:
    ts = SchedulerTask(key, TaskPrefix(key_split(key)))
    ts.state, ts.nbytes = "memory", nbytes
    ts.who_has = dict.fromkeys(holders)
    for ws in holders:
        ws.has_what[ts] = None
    return ts


def test_workers_holding_little_unique_data_close_first() -> None:
    a, b, c = (WorkerInfo(x, x, 1) for x in ("a", "b", "c"))
    held("big", 1000, a)
    held("shared", 5000, b, c)  # replicated: no unique bytes on either
    held("small", 10, c)
    assert [unique_bytes(ws) for ws in (a, b, c)] == [1000, 0, 10]
    assert workers_to_close([a, b, c], 2) == ["b", "c"]
    assert workers_to_close([a, b, c], 0) == []
    assert workers_to_close([a, b, c], 10) == ["b", "c", "a"]


def test_up_is_at_once_down_only_after_wait_count_in_a_row() -> None:
    assert decide(2, 5, down_count=1, wait_count=3).scale_to == 5
    first = decide(5, 1, 0, 3)
    second = decide(5, 1, first.down_count, 3)
    third = decide(5, 1, second.down_count, 3)
    assert (first.scale_to, second.scale_to, third.scale_to) == (None, None, 1)
    # a suggestion equal to the size breaks the run
    assert decide(5, 5, 2, 3).down_count == 0
    with pytest.raises(ValueError, match="wait_count"):
        decide(1, 0, 0, 0)


@given(st.lists(st.integers(0, 8), max_size=60), st.integers(1, 5))
def test_no_bouncing(targets: list[int], wait_count: int) -> None:
    """Simulated: a scale-down happens only after wait_count lower targets in a row."""
    current, down, below_in_a_row = 4, 0, 0
    for target in targets:
        below_in_a_row = below_in_a_row + 1 if target < current else 0
        decision = decide(current, target, down, wait_count)
        down = decision.down_count
        if decision.scale_to is not None:
            if decision.scale_to < current:
                assert below_in_a_row >= wait_count
            current = decision.scale_to
            below_in_a_row = 0


def test_idle_only_skips_workers_running_tasks() -> None:
    busy, idle = WorkerInfo("busy", "busy", 1), WorkerInfo("idle", "idle", 1)
    held("data", 100, idle)  # idle holds unique data, busy holds none
    ts = SchedulerTask("run-1", TaskPrefix("run"))
    busy.processing[ts] = None
    assert workers_to_close([busy, idle], 2) == ["busy", "idle"]
    assert workers_to_close([busy, idle], 2, idle_only=True) == ["idle"]
