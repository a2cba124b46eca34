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
