"""TaskThreads: the worker's Future-less hand-off, threads on demand, Executor behaviour."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from shoal.worker.task_threads import TaskThreads
from tests.conftest import wait_until


@pytest.fixture
def pool() -> Iterator[TaskThreads]:
    threads = TaskThreads(2, "test-task")
    yield threads
    threads.shutdown(wait=True, cancel_futures=True)


def test_run_soon_runs_calls_in_named_threads_reused_when_idle(pool: TaskThreads) -> None:
    seen: list[str] = []
    done = threading.Event()

    def record() -> None:
        seen.append(threading.current_thread().name)
        done.set()

    for _ in range(50):  # one after another: the one thread goes idle and is claimed again
        done.clear()
        pool.run_soon(record)
        assert done.wait(10)
        wait_until(lambda: pool._idle == 1, what="the thread to count as idle")
    assert len(seen) == 50 and set(seen) == {"test-task_0"}
    assert len(pool.threads) == 1


def test_then_reports_once_idle_so_a_call_handed_out_from_the_report_reuses_the_thread(
    pool: TaskThreads,
) -> None:
    """The worker's pattern: a finished task's report makes the loop hand out the next."""
    idle_at_report: list[int] = []
    results: list[int] = []
    done = threading.Event()

    def report(result: int) -> None:
        idle_at_report.append(pool._idle)
        results.append(result)
        if result < 50:
            pool.run_soon(pow, result + 1, 1, then=report)
        else:
            done.set()

    pool.run_soon(pow, 1, 1, then=report)
    assert done.wait(10)
    assert results == list(range(1, 51))
    assert idle_at_report[0] == 1  # the thread counted as idle before its report
    assert [t.name for t in pool.threads] == ["test-task_0"]


def test_then_is_skipped_when_the_call_raises(
    pool: TaskThreads, caplog: pytest.LogCaptureFixture
) -> None:
    reports: list[object] = []
    with caplog.at_level(logging.ERROR, logger="shoal.worker"):
        pool.run_soon(lambda: 1 / 0, then=reports.append)
        wait_until(lambda: pool._idle == 1, what="the thread to finish the call")
        pool.run_soon(int, "3", then=reports.append)
        wait_until(lambda: reports == [3], what="the second call's report")


def test_threads_are_made_on_demand_up_to_max_workers(pool: TaskThreads) -> None:
    gate = threading.Event()
    started: list[int] = []

    def hold(i: int) -> None:
        started.append(i)
        gate.wait(10)

    for i in range(3):
        pool.run_soon(hold, i)
    wait_until(lambda: len(started) == 2, what="two calls to start")
    assert len(pool.threads) == 2 and sorted(started) == [0, 1]  # the third waits its turn
    gate.set()
    wait_until(lambda: len(started) == 3, what="the third call")
    assert len(pool.threads) == 2


def test_a_raising_call_is_logged_and_the_thread_goes_on(
    pool: TaskThreads, caplog: pytest.LogCaptureFixture
) -> None:
    def boom() -> None:
        raise ZeroDivisionError("boom")

    with caplog.at_level(logging.ERROR, logger="shoal.worker"):
        pool.run_soon(boom)
        wait_until(lambda: pool._idle == 1, what="the thread to finish the call")
        assert pool.submit(int, "7").result(timeout=10) == 7  # on that same thread
    assert any("failed" in r.getMessage() and r.exc_info for r in caplog.records)
    assert len(pool.threads) == 1


def test_submit_gives_futures_with_results_and_exceptions(pool: TaskThreads) -> None:
    assert pool.submit(pow, 2, exp=10).result(timeout=10) == 1024
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 / 0).result(timeout=10)


def test_shutdown_cancels_what_has_not_started_and_refuses_more() -> None:
    pool = TaskThreads(1, "test-task")
    gate = threading.Event()
    running = pool.submit(gate.wait, 10)
    wait_until(running.running, what="the first call to run")
    waiting = pool.submit(int, "1")
    pool.shutdown(wait=False, cancel_futures=True)
    assert waiting.cancelled()
    with pytest.raises(RuntimeError, match="shutdown"):
        pool.run_soon(int)
    gate.set()
    assert running.result(timeout=10) is True
    pool.shutdown(wait=True)
    assert not any(t.is_alive() for t in pool.threads)


# -- calls queued behind busy threads (run ahead) --------------------------------------------


def test_a_call_run_ahead_waits_behind_the_busy_thread_and_starts_none(pool: TaskThreads) -> None:
    gate = threading.Event()
    order: list[str] = []
    reported = threading.Event()

    def hold() -> None:
        order.append("hold")
        gate.wait(10)

    pool.run_soon(hold)
    wait_until(lambda: order == ["hold"], what="the first call to start")
    for name in ("a", "b"):
        pool.run_soon(order.append, name, ahead=True)
    pool.run_soon(order.append, "c", ahead=True, then=lambda _: reported.set())
    assert order == ["hold"] and len(pool.threads) == 1  # queued, no second thread
    gate.set()
    assert reported.wait(10)
    assert order == ["hold", "a", "b", "c"]
    assert [t.name for t in pool.threads] == ["test-task_0"]
    wait_until(lambda: pool._idle == 1, what="the thread to count as idle")


def test_a_call_run_ahead_with_no_busy_thread_runs_at_once(pool: TaskThreads) -> None:
    ran = threading.Event()
    pool.run_soon(ran.set, ahead=True)
    assert ran.wait(10)
    wait_until(lambda: pool._idle == 1, what="the thread to count as idle")
    ran.clear()
    pool.run_soon(ran.set, ahead=True)  # the idle thread takes it
    assert ran.wait(10)
    assert len(pool.threads) == 1


def test_a_seceding_call_hands_the_calls_queued_behind_it_to_another_thread(
    pool: TaskThreads,
) -> None:
    """The seceded call may be waiting for exactly the call queued behind it."""
    queued = threading.Event()
    behind_ran = threading.Event()
    finished = threading.Event()

    def secede_and_wait() -> None:
        queued.wait(10)  # leaves only once the next call is queued behind it
        pool.leave()
        if behind_ran.wait(10):
            finished.set()

    pool.run_soon(secede_and_wait)
    pool.run_soon(behind_ran.set, ahead=True)
    assert len(pool._ahead) == 1
    queued.set()
    assert finished.wait(10), "the call queued behind a seceded thread never ran"
    assert len(pool.threads) == 2
    wait_until(lambda: pool._idle == 2 and pool._away == 0, what="both threads to be idle")


def test_a_call_run_ahead_behind_only_seceded_threads_runs_at_once(pool: TaskThreads) -> None:
    left = threading.Event()
    gate = threading.Event()

    def secede_and_hold() -> None:
        pool.leave()
        left.set()
        gate.wait(10)

    pool.run_soon(secede_and_hold)
    assert left.wait(10)
    ran = threading.Event()
    pool.run_soon(ran.set, ahead=True)
    assert ran.wait(10)
    gate.set()
    wait_until(lambda: pool._idle == 2 and pool._away == 0, what="both threads to be idle")


def test_a_rejoined_call_counts_as_busy_again(pool: TaskThreads) -> None:
    rejoined = threading.Event()
    gate = threading.Event()
    order: list[str] = []

    def secede_rejoin_hold() -> None:
        pool.leave()
        pool.come_back()
        rejoined.set()
        gate.wait(10)
        order.append("held")

    pool.run_soon(secede_rejoin_hold)
    assert rejoined.wait(10)
    assert pool._away == 0
    pool.run_soon(order.append, "behind", ahead=True)  # queued behind the rejoined call
    assert len(pool.threads) == 1 and order == []
    gate.set()
    wait_until(lambda: order == ["held", "behind"], what="the queued call after the held one")


def test_leave_from_a_thread_of_another_executor_does_nothing(pool: TaskThreads) -> None:
    pool.leave()  # this test's own thread is not one of the pool's
    assert pool._away == 0


def test_shutdown_cancelling_drops_calls_queued_behind_busy_threads(pool: TaskThreads) -> None:
    gate = threading.Event()
    started = threading.Event()
    ran: list[str] = []

    def hold() -> None:
        started.set()
        gate.wait(10)

    pool.run_soon(hold)
    assert started.wait(10)
    pool.run_soon(ran.append, "dropped", ahead=True)
    pool.shutdown(wait=False, cancel_futures=True)  # while the thread still holds
    gate.set()
    for thread in pool.threads:
        thread.join(10)
    assert ran == []
