"""The loop monitor sees a stall; the GC policy freezes after big graphs and thaws when idle."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Iterator

import pytest

from shoal import Client, LocalCluster
from shoal.loop_monitor import GcPolicy, LoopMonitor, collection_paused


@pytest.fixture
def thawed() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


async def _stuck(monitor: LoopMonitor, seconds: float, collect: bool = False) -> None:
    """Block the loop for ``seconds`` (collecting first if ``collect``), then tick."""
    if collect:
        gc.collect()
    time.sleep(seconds)
    await asyncio.sleep(monitor.interval)
    monitor.tick()


def test_a_blocked_loop_is_seen_as_a_stall() -> None:
    monitor = LoopMonitor(interval=0.01)

    async def main() -> None:
        for _ in range(3):
            await _stuck(monitor, 0)
        await _stuck(monitor, 0.2)

    try:
        asyncio.run(main())
        assert monitor.max_stall >= 0.15
        monitor.reset()
        assert monitor.max_stall == 0.0
    finally:
        monitor.close()


def test_a_long_stall_is_logged_with_the_collections_that_ran_in_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    monitor = LoopMonitor(interval=0.01, warn_after=0.5)

    async def main() -> None:
        await _stuck(monitor, 0)
        await _stuck(monitor, 0.05)  # too short to warn about
        await _stuck(monitor, 0.7, collect=True)
        await _stuck(monitor, 0.7)  # no collection this time

    try:
        with caplog.at_level("WARNING", logger="shoal.scheduler"):
            asyncio.run(main())
    finally:
        monitor.close()
    warnings = [r.getMessage() for r in caplog.records if "unresponsive" in r.getMessage()]
    assert len(warnings) == 2, warnings
    assert "scheduler's event loop" in warnings[0]
    assert "1 full garbage collection(s)" in warnings[0]
    assert "no garbage collection ran" in warnings[1]


def test_the_watchdog_says_where_the_loop_was_stuck(caplog: pytest.LogCaptureFixture) -> None:
    monitor = LoopMonitor(interval=0.01, warn_after=0.3, sample_after=0.05)

    def blocking_call_in_user_code() -> None:
        time.sleep(0.4)

    async def main() -> None:
        monitor.watch()
        await _stuck(monitor, 0)
        blocking_call_in_user_code()
        await asyncio.sleep(monitor.interval)
        monitor.tick()

    try:
        with caplog.at_level("WARNING", logger="shoal.scheduler"):
            asyncio.run(main())
    finally:
        monitor.close()
    assert monitor.max_stall >= 0.3
    (where, samples), *_ = monitor.max_stall_where
    assert where.startswith("test_loop_monitor.py:") and "blocking_call_in_user_code" in where
    assert samples >= 2  # sampled every interval while overdue
    warnings = [r.getMessage() for r in caplog.records if "unresponsive" in r.getMessage()]
    assert len(warnings) == 1 and "blocking_call_in_user_code" in warnings[0], warnings
    assert monitor._watchdog is not None and not monitor._watchdog.is_alive()  # closed


def test_a_loop_that_keeps_up_is_not_sampled() -> None:
    monitor = LoopMonitor(interval=0.01, sample_after=0.25)

    async def main() -> None:
        monitor.watch()
        for _ in range(20):
            await _stuck(monitor, 0)

    try:
        asyncio.run(main())
    finally:
        monitor.close()
    assert monitor.max_stall_where == []


def test_full_collections_are_timed() -> None:
    monitor = LoopMonitor()
    try:
        gc.collect()
        assert monitor.stats()["full_gcs"] == 1
        assert monitor.max_full_gc > 0
    finally:
        monitor.close()


def test_policy_freezes_after_enough_tasks_and_thaws_when_idle(thawed: None) -> None:
    policy = GcPolicy(freeze_after=100)
    policy.tasks_added(60)
    assert gc.get_freeze_count() == 0
    policy.tasks_added(60)
    assert policy.frozen and gc.get_freeze_count() > 0
    policy.idle(tasks_held=5)
    assert gc.get_freeze_count() > 0  # tasks still held: stay frozen
    policy.idle(tasks_held=0)
    assert not policy.frozen and gc.get_freeze_count() == 0


def test_policy_freezes_now_and_then_while_a_big_graph_runs(thawed: None) -> None:
    policy = GcPolicy(freeze_after=100)
    policy.idle(tasks_held=99)
    assert not policy.frozen and gc.get_freeze_count() == 0  # a small graph: no freeze
    policy.idle(tasks_held=100)
    assert policy.frozen and policy.freezes == 1
    made_while_running = [_Node() for _ in range(10)]
    policy.idle(tasks_held=100)
    assert policy.freezes == 2 and all(gc.is_tracked(n) for n in made_while_running)
    assert not any(n in gc.get_objects(generation=2) for n in made_while_running[:1])


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_young_cyclic_garbage_is_collected_before_a_freeze_not_frozen(thawed: None) -> None:
    import weakref

    policy = GcPolicy(freeze_after=10)
    node = _Node()
    alive = weakref.ref(node)
    del node
    policy.tasks_added(10)
    assert policy.frozen and alive() is None


def test_the_scheduler_applies_the_policy_to_a_graph(thawed: None) -> None:
    with LocalCluster(n_workers=1, processes=False) as cluster, Client(cluster) as client:
        scheduler = cluster.scheduler
        scheduler.gc_policy.freeze_after = 50
        assert sum(client.gather(client.map(abs, range(200)))) == sum(range(200))
        assert scheduler.gc_policy.freezes >= 1
        stats = scheduler.loop_monitor.stats()
        assert set(stats) == {"max_stall", "max_full_gc", "full_gcs"}


@pytest.fixture
def collecting() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_a_collection_pause_switches_collection_off_and_back_on(collecting: None) -> None:
    with collection_paused():
        assert not gc.isenabled()
        with collection_paused():  # nested: still off, and still off after it
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_pauses_overlapping_across_threads_end_with_the_last(collecting: None) -> None:
    inside, leave = threading.Event(), threading.Event()

    def other() -> None:
        with collection_paused():
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=other)
    with collection_paused():
        thread.start()
        assert inside.wait(10)
    assert not gc.isenabled()  # the other thread's pause is still open
    leave.set()
    thread.join(10)
    assert gc.isenabled()


def test_a_pause_leaves_collection_off_when_the_user_had_switched_it_off(
    collecting: None,
) -> None:
    gc.disable()
    with collection_paused():
        pass
    assert not gc.isenabled()
    gc.enable()
    with pytest.raises(ValueError), collection_paused():
        raise ValueError("the block failed")
    assert gc.isenabled()  # switched back on after a failing block too


def test_a_freeze_while_collection_is_off_scans_nothing(thawed: None, collecting: None) -> None:
    import weakref

    policy = GcPolicy(freeze_after=10)
    with collection_paused():
        node = _Node()
        alive = weakref.ref(node)
        del node
        policy.tasks_added(10)  # no pass over the young generations: they are everything
        assert policy.frozen and alive() is not None
    gc.unfreeze()
    gc.collect()
    assert alive() is None
