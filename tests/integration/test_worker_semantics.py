"""The worker semantics of the seed over real processes: resources, secede/rejoin with
nested submits, cancellation with resumption, counters under concurrency, and story."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal import Client, get_client, get_worker, rejoin, secede, worker_client

from .conftest import CliCluster, cli_scheduler, wait_for

# -- task functions (module level: the worker processes import them by reference) -------------


def fib(n: int) -> int:
    """Recursive Fibonacci through nested submits; odd levels call secede/rejoin
    themselves, even levels use ``worker_client``."""
    if n < 2:
        return n
    if n % 2:
        client = get_client()
        a, b = client.submit(fib, n - 1), client.submit(fib, n - 2)
        secede()
        total: int = sum(client.gather([a, b]))
        rejoin()
        return total
    with worker_client() as client:
        result: int = sum(client.gather([client.submit(fib, n - 1), client.submit(fib, n - 2)]))
        return result


def gated(counter: str, gate: str) -> int:
    """Count the run in ``counter``, then wait for the ``gate`` file to exist."""
    with open(counter, "a") as f:
        f.write("run\n")
    deadline = time.monotonic() + 120
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{gate} never appeared")
        time.sleep(0.01)
    return 42


def gpu_snapshot(i: int) -> dict[str, float]:
    return dict(get_worker().available_resources)


def observe_threads(i: int) -> tuple[Any, int, bool]:
    worker = get_worker()
    key = worker.get_current_task()
    ident = threading.get_ident()
    consistent = (
        worker.active_threads.get(ident) == key
        and worker.threads.get(key) == ident
        and 1 <= worker.executing_count <= worker.nthreads
        and len(worker.active_threads) <= worker.nthreads
    )
    return key, ident, consistent


def task_state(key: str) -> str | None:
    task = get_worker().state.tasks.get(key)
    return None if task is None else task.state


def worker_counters() -> dict[str, Any]:
    worker = get_worker()
    return {
        "executing_count": worker.executing_count,
        "executed_count": worker.executed_count,
        "active_threads": dict(worker.active_threads),
        "long_running": set(worker.long_running),
        "rejoining": dict(worker.state.rejoining),
        "available_resources": dict(worker.available_resources),
        "keys": set(worker.data),
    }


def thread_of(keys: list[Any]) -> dict[Any, int | None]:
    return {key: get_worker().threads.get(key) for key in keys}


# -- a scheduler alone; each test starts the workers it needs ---------------------------------


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[CliCluster]:
    with cli_scheduler(tmp_path, "worker-semantics-token") as cluster:
        yield cluster


def connect(cluster: CliCluster, n_workers: int) -> Client:
    client = Client(cluster.address, security=cluster.security, set_as_default=False)
    wait_for(lambda: len(client.scheduler_info()["workers"]) == n_workers, timeout=60)
    return client


def only(results: dict[str, Any]) -> Any:
    (value,) = results.values()
    return value


# -- the tests --------------------------------------------------------------------------------


def test_resource_tasks_wait_for_a_worker_that_has_them(bare: CliCluster) -> None:
    bare.start_worker("--nthreads", "2")
    with connect(bare, 1) as client:
        futures = client.map(gpu_snapshot, range(4), resources={"GPU": 1})
        wait_for(lambda: client.scheduler_info()["tasks"].get("no-worker") == 4)
        bare.start_worker("--nthreads", "4", "--resources", "GPU=2 MEM=10e9")
        wait_for(lambda: len(client.scheduler_info()["workers"]) == 2, timeout=60)
        snapshots = client.gather(futures, errors="raise")
        for snapshot in snapshots:  # each ran holding one GPU of two
            assert snapshot["MEM"] == 10e9 and snapshot["GPU"] in (0.0, 1.0)
        infos = client.scheduler_info()["workers"]
        gpu = next(a for a, w in infos.items() if w["resources"])
        assert infos[gpu]["resources"] == {"GPU": 2.0, "MEM": 10e9}
        assert {w for ws in client.who_has(futures).values() for w in ws} == {gpu}
        after = only(client.run(worker_counters, workers=[gpu]))
        assert after["available_resources"] == {"GPU": 2.0, "MEM": 10e9}


def test_recursive_fibonacci_on_one_thread_does_not_deadlock(bare: CliCluster) -> None:
    bare.start_worker("--nthreads", "1")
    with connect(bare, 1) as client:
        assert client.submit(fib, 10).result(timeout=120) == 55
        counters = only(client.run(worker_counters))
        assert counters["executing_count"] == 0 and counters["long_running"] == set()
        assert counters["rejoining"] == {}


def test_cancelled_task_resumes_when_wanted_again_and_runs_once(
    bare: CliCluster, tmp_path: Path
) -> None:
    bare.start_worker("--nthreads", "1")
    counter, gate = str(tmp_path / "runs"), str(tmp_path / "gate")
    with connect(bare, 1) as client:
        first = client.submit(gated, counter, gate, key="gated-a")
        wait_for(lambda: os.path.exists(counter))
        client.cancel([first])
        wait_for(lambda: only(client.run(task_state, "gated-a")) == "cancelled")
        again = client.submit(gated, counter, gate, key="gated-a")
        wait_for(lambda: only(client.run(task_state, "gated-a")) == "executing")
        Path(gate).touch()
        assert again.result(timeout=60) == 42
        assert Path(counter).read_text() == "run\n"  # resumed, not run a second time
        story = client.story("gated-a")
        states = [r[:3] for r in story if r[-1] != "scheduler" and r[0] == "gated-a"]
        assert ("gated-a", "executing", "cancelled") in states
        assert ("gated-a", "cancelled", "executing") in states
        assert {r[-1] for r in story} >= {"scheduler", *client.scheduler_info()["workers"]}
        times = [r[-2] for r in story]
        assert times == sorted(times) and all(isinstance(r[-3], str) for r in story)


def test_cancelled_task_is_dropped_when_its_thread_ends(bare: CliCluster, tmp_path: Path) -> None:
    bare.start_worker("--nthreads", "1")
    counter, gate = str(tmp_path / "runs"), str(tmp_path / "gate")
    with connect(bare, 1) as client:
        future = client.submit(gated, counter, gate, key="gated-b")
        wait_for(lambda: os.path.exists(counter))
        client.cancel([future])
        wait_for(lambda: only(client.run(task_state, "gated-b")) == "cancelled")
        before = only(client.run(worker_counters))
        assert before["executing_count"] == 1  # the thread still runs
        Path(gate).touch()
        wait_for(lambda: only(client.run(task_state, "gated-b")) is None)
        after = only(client.run(worker_counters))
        assert after["executed_count"] == before["executed_count"] + 1
        assert after["executing_count"] == 0 and "gated-b" not in after["keys"]
        assert client.scheduler_info()["tasks"] == {}


def test_counters_stay_true_under_concurrency(bare: CliCluster) -> None:
    bare.start_worker("--nthreads", "2")
    with connect(bare, 1) as client:
        futures = client.map(observe_threads, range(300))
        results = client.gather(futures)
        assert all(consistent for _, _, consistent in results)
        keys = [key for key, _, _ in results]
        assert keys == [f.key for f in futures]
        assert only(client.run(thread_of, keys)) == {key: ident for key, ident, _ in results}
        counters = only(client.run(worker_counters))
        assert counters["executing_count"] == 0 and counters["active_threads"] == {}
        assert counters["executed_count"] == 300
