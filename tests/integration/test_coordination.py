"""Locks, semaphores, queues, variables, events, datasets, fire_and_forget and actors over
real processes: a ``shoal scheduler`` and ``shoal worker`` processes on loopback."""

from __future__ import annotations

import os
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal import (
    Client,
    Event,
    Lock,
    Queue,
    Semaphore,
    Variable,
    fire_and_forget,
    get_worker,
)

from .conftest import CliCluster, cli_scheduler, wait_for

# -- task functions and classes (module level: workers import them by reference) -------------


def hold_forever(lock_name: str, lease_timeout: float, signal_name: str) -> str:
    """Take the semaphore ``lock_name``, say so through an event, then never let go."""
    sem = Semaphore(1, lock_name, lease_timeout=lease_timeout)
    assert sem.acquire(timeout=30)
    Event(signal_name).set()
    time.sleep(120)
    return "unreachable"


def take(lock_name: str, lease_timeout: float, timeout: float) -> tuple[bool, str]:
    sem = Semaphore(1, lock_name, lease_timeout=lease_timeout)
    got = sem.acquire(timeout=timeout)
    if got:
        sem.release()
    return bool(got), get_worker().address


def locked_increment(path: str, i: int) -> int:
    """Read, sleep, write under a cluster lock: without it, increments would be lost."""
    with Lock("counter-file"):
        value = int(Path(path).read_text() or "0")
        time.sleep(0.01)
        Path(path).write_text(str(value + 1))
    return i


def produce(n: int) -> int:
    queue = Queue("work")
    for i in range(n):
        queue.put(i)
    return n


def write_after(path: str, seconds: float) -> str:
    time.sleep(seconds)
    Path(path).write_text("done")
    return path


def double(x: int) -> int:
    return 2 * x


class Counter:
    n = 0

    def __init__(self, start: int = 0) -> None:
        self.n = start

    def increment(self, by: int = 1) -> int:
        self.n += by
        return self.n

    async def slow_increment(self) -> int:
        import asyncio

        await asyncio.sleep(0.01)
        self.n += 100
        return self.n

    def where(self) -> str:
        return get_worker().address

    def fail(self) -> None:
        raise ZeroDivisionError("actor method failed")


def bump(counter: Any, by: int) -> int:
    """Inside a task: call the actor straight on its worker."""
    result: int = counter.increment(by).result()
    return result


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[CliCluster]:
    with cli_scheduler(tmp_path) as cluster:
        for _ in range(2):
            cluster.start_worker("--nthreads", "2")
        yield cluster


def connect(cluster: CliCluster, n_workers: int = 2) -> Client:
    client = Client(cluster.address, security=cluster.security, timeout=30)
    wait_for(lambda: len(client.scheduler_info()["workers"]) >= n_workers, timeout=60)
    return client


def worker_pids(client: Client) -> dict[str, int]:
    return {a: int(w["pid"]) for a, w in client.scheduler_info()["workers"].items()}


# -- locks and leases ---------------------------------------------------------------------------


def test_lock_held_by_a_killed_worker_is_taken_by_another_task(cluster: CliCluster) -> None:
    with connect(cluster) as client:
        (victim, victim_pid), (survivor, _) = sorted(worker_pids(client).items())
        holder = client.submit(hold_forever, "L", 3.0, "held", workers=[victim], pure=False)
        assert Event("held").wait(30)
        os.kill(victim_pid, signal.SIGKILL)
        start = time.monotonic()
        got, where = client.submit(take, "L", 3.0, 30, workers=[survivor], pure=False).result(60)
        assert got and where == survivor
        assert time.monotonic() - start < 30
        del holder


def test_lease_of_a_frozen_holder_expires_after_the_lease_timeout(cluster: CliCluster) -> None:
    """A holder whose connection stays open but who stops refreshing loses the lease."""
    with connect(cluster) as client:
        (victim, victim_pid), (survivor, _) = sorted(worker_pids(client).items())
        client.submit(hold_forever, "F", 2.0, "frozen-held", workers=[victim], pure=False)
        assert Event("frozen-held").wait(30)
        assert not Semaphore(1, "F", lease_timeout=2.0).acquire(timeout=0.5)  # held
        os.kill(victim_pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            got, where = client.submit(take, "F", 2.0, 30, workers=[survivor], pure=False).result(
                60
            )
            waited = time.monotonic() - start
        finally:
            os.kill(victim_pid, signal.SIGKILL)
        assert got and where == survivor
        assert 0.5 < waited < 30  # not at once: the lease ran out first


def test_lock_serializes_tasks_on_many_workers(cluster: CliCluster, tmp_path: Path) -> None:
    path = tmp_path / "counter"
    path.write_text("0")
    with connect(cluster) as client:
        assert sorted(
            client.gather(client.map(locked_increment, [str(path)] * 20, range(20)))
        ) == list(range(20))
    assert path.read_text() == "20"


def test_semaphore_from_the_client_counts_leases(cluster: CliCluster) -> None:
    with connect(cluster) as client:
        sem = Semaphore(2, "two")
        assert sem.acquire(timeout=1) and sem.acquire(timeout=1)
        assert not sem.acquire(timeout=0.2)
        assert sem.get_value() == 2
        sem.release()
        assert sem.get_value() == 1
        sem.release()
        with pytest.raises(RuntimeError, match="released too often"):
            sem.release()
        del client


# -- queues, variables, events ------------------------------------------------------------------


def test_queue_between_tasks_and_client(cluster: CliCluster) -> None:
    with connect(cluster) as client:
        assert client.submit(produce, 5).result(30) == 5
        queue = Queue("work")
        assert queue.qsize() == 5
        assert [queue.get(timeout=5) for _ in range(2)] == [0, 1]
        assert queue.get(batch=True) == [2, 3, 4]
        with pytest.raises(TimeoutError):
            queue.get(timeout=0.3)


def test_future_in_a_queue_outlives_its_client(cluster: CliCluster) -> None:
    with connect(cluster) as first:
        Queue("futures").put(first.submit(double, 21))
        Variable("var").set({"f": first.submit(double, 5)})
    # the first client closed: only the scheduler's references keep the keys alive
    with connect(cluster) as second:
        future = Queue("futures").get(timeout=10)
        assert future.client is second
        assert future.result(30) == 42
        assert Variable("var").get(timeout=10)["f"].result(30) == 10


def test_event_wakes_waiting_tasks(cluster: CliCluster) -> None:
    with connect(cluster) as client:
        futures = client.map(wait_event, range(3), pure=False)
        time.sleep(0.2)
        assert not any(f.done() for f in futures)
        Event("go").set()
        assert client.gather(futures) == [True] * 3
        Event("go").clear()
        assert not Event("go").is_set()
        assert not Event("go").wait(0.2)


def wait_event(i: int) -> bool:
    return bool(Event("go").wait(30))


# -- datasets and fire_and_forget ---------------------------------------------------------------


def test_published_dataset_outlives_its_client(cluster: CliCluster) -> None:
    with connect(cluster) as first:
        first.publish_dataset(answer=first.submit(double, 21), plain=[1, 2])
        with pytest.raises(KeyError, match="already published"):
            first.publish_dataset(plain=3)
    with connect(cluster) as second:
        assert sorted(second.list_datasets()) == ["answer", "plain"]
        assert second.get_dataset("answer").result(30) == 42
        assert second.datasets["plain"] == [1, 2]
        second.unpublish_dataset("plain")
        assert "plain" not in second.datasets
        assert second.get_dataset("plain", default=None) is None
        with pytest.raises(KeyError):
            second.get_dataset("plain")


def test_fire_and_forget_runs_after_the_client_closed(cluster: CliCluster, tmp_path: Path) -> None:
    path = tmp_path / "side-effect"
    with connect(cluster) as client:
        fire_and_forget(client.submit(write_after, str(path), 1.0, pure=False))
    assert not path.exists()
    wait_for(path.exists, timeout=30)
    with connect(cluster) as client:  # done and then forgotten by the scheduler
        wait_for(lambda: not client.who_has(), timeout=30)


# -- actors -------------------------------------------------------------------------------------


def test_actor_calls_go_to_its_worker(cluster: CliCluster) -> None:
    with connect(cluster) as client:
        future = client.submit(Counter, 10, actor=True)
        counter = future.result(30)
        assert counter.increment().result(10) == 11
        assert counter.increment(by=2).result(10) == 13
        assert counter.slow_increment().result(10) == 113
        assert counter.n == 113  # an attribute read, straight from the worker
        assert counter.where().result(10) == counter.worker
        with pytest.raises(ZeroDivisionError, match="actor method failed"):
            counter.fail().result(10)
        # an actor passed into tasks: they call the worker directly too
        assert sorted(client.gather(client.map(bump, [counter] * 4, [1] * 4, pure=False))) == [
            114,
            115,
            116,
            117,
        ]
        assert counter.n == 117


def actors_here() -> int:
    return len(get_worker().actors)


def test_actor_goes_when_its_last_reference_does(cluster: CliCluster) -> None:
    with connect(cluster) as client:
        future = client.submit(Counter, 1, actor=True)
        counter = future.result(30)
        del future  # the proxy alone keeps the actor
        assert counter.increment().result(10) == 2
        assert sum(client.run(actors_here).values()) == 1
        del counter
        wait_for(lambda: sum(client.run(actors_here).values()) == 0, timeout=30)


def test_map_makes_one_actor_per_item(cluster: CliCluster) -> None:
    with connect(cluster) as client:
        counters = client.gather(client.map(Counter, [0, 100], actors=True))
        assert [c.increment().result(10) for c in counters] == [1, 101]
        assert [c.increment().result(10) for c in counters] == [2, 102]


# -- Reschedule ---------------------------------------------------------------------------------


def reschedule_once(path: str) -> int:
    """Raise ``Reschedule`` on the first two runs; the third returns how many runs there were."""
    from shoal import Reschedule

    runs = len(Path(path).read_text().splitlines()) + 1 if Path(path).exists() else 1
    with open(path, "a") as f:
        f.write("run\n")
    if runs < 3:
        raise Reschedule()
    return runs


def test_reschedule_puts_the_task_back(cluster: CliCluster, tmp_path: Path) -> None:
    with connect(cluster) as client:
        # no retries allowed: Reschedule is not a failure
        assert client.submit(reschedule_once, str(tmp_path / "runs"), retries=0).result(60) == 3


# -- print and warn from tasks ------------------------------------------------------------------


def chatty(i: int) -> int:
    import shoal

    shoal.print("hello from task", i, sep="-")
    shoal.print("to stderr", i, file=sys.stderr)
    shoal.warn(f"careful {i}", RuntimeWarning)
    return i


def test_print_and_warn_in_a_task_show_in_the_client(
    cluster: CliCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """capsys sees only this process's sys.stdout: what the client printed, not the worker."""
    with connect(cluster) as client, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert client.submit(chatty, 7).result(30) == 7
        wait_for(lambda: any("careful 7" in str(w.message) for w in caught), timeout=10)
        out, err = capsys.readouterr()
    assert "hello from task-7\n" in out
    assert "to stderr 7\n" in err
    assert [w.category for w in caught if "careful 7" in str(w.message)] == [RuntimeWarning]
