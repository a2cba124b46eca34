"""The same short programs against shoal and, for reference, dask.distributed: locks,
semaphores, events, queues, variables, actors, fire_and_forget and datasets give the
same results on both engines. This is where "runs dask code unchanged" is checked.

Each program takes an engine (the module its names come from) and a client, and returns
plain data; a test runs it on both engines and compares.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import shoal

distributed = pytest.importorskip("distributed")

Program = Callable[[ModuleType, Any], Any]


@pytest.fixture(scope="module")
def shoal_client() -> Iterator[Any]:
    with (
        shoal.LocalCluster(
            n_workers=2, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        shoal.Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=2, processes=False, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture
def both(shoal_client: Any, dask_client: Any) -> Callable[[Program], Any]:
    """Run a program on each engine (its own client as the default); the shared result."""

    def run(program: Program) -> Any:
        results = []
        for engine, client in ((shoal, shoal_client), (distributed, dask_client)):
            with client.as_current() if engine is distributed else _default(client):
                results.append(program(engine, client))
        assert results[0] == results[1], f"shoal gave {results[0]!r}, dask {results[1]!r}"
        return results[0]

    return run


class _default:
    """Make a shoal client the default for a block (dask's ``as_current``)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def __enter__(self) -> None:
        from shoal.client.default import set_default_client

        set_default_client(self.client)

    def __exit__(self, *exc: object) -> None:
        pass


_counter = 0


def unique(name: str) -> str:
    """A fresh name per run: both engines' scheduler state lives for the module."""
    global _counter
    _counter += 1
    return f"{name}-{_counter}-{time.monotonic_ns()}"


# -- programs ---------------------------------------------------------------------------------


def locked_add(engine: ModuleType, name: str, i: int) -> int:
    with engine.Lock(name):
        return i * 10


def test_lock(both: Callable[[Program], Any]) -> None:
    def program(engine: ModuleType, client: Any) -> Any:
        name = unique("lock")
        lock, other = engine.Lock(name), engine.Lock(name)
        out = [lock.acquire(), lock.locked(), other.acquire(timeout=0.2)]
        out.append(other.acquire(blocking=False))
        lock.release()
        out += [lock.locked(), other.acquire(timeout=1), other.locked()]
        other.release()
        with engine.Lock(name):
            out.append(engine.Lock(name).locked())
        futures = client.map(locked_add, [engine] * 4, [name] * 4, range(4), pure=False)
        out.append(sorted(client.gather(futures)))
        return out

    assert both(program) == [True, True, False, False, False, True, True, True, [0, 10, 20, 30]]


def test_semaphore(both: Callable[[Program], Any]) -> None:
    def program(engine: ModuleType, client: Any) -> Any:
        sem = engine.Semaphore(max_leases=2, name=unique("sem"))
        out = [sem.acquire(timeout=1), sem.acquire(timeout=1), sem.acquire(timeout=0.2)]
        out.append(sem.get_value())
        sem.release()
        out.append(sem.get_value())
        sem.release()
        with sem:
            out.append(sem.get_value())
        out.append(sem.get_value())
        return out

    assert both(program) == [True, True, False, 2, 1, 1, 0]


def test_multilock(both: Callable[[Program], Any]) -> None:
    """MultiLocks against each other (dask's MultiLock does not see its Lock; shoal's does)."""

    def program(engine: ModuleType, client: Any) -> Any:
        a, b = unique("a"), unique("b")
        both_locks = engine.MultiLock([a, b])
        out = [both_locks.acquire(timeout=1), engine.MultiLock([b]).acquire(timeout=0.2)]
        both_locks.release()
        single = engine.MultiLock([b])
        out.append(single.acquire(timeout=1))
        out.append(engine.MultiLock([a, b]).acquire(timeout=0.2))
        single.release()
        out.append(engine.MultiLock([a, b]).acquire(timeout=1))
        return out

    assert both(program) == [True, False, True, False, True]


def wait_for_event(engine: ModuleType, name: str) -> bool:
    return bool(engine.Event(name).wait(10))


def test_event(both: Callable[[Program], Any]) -> None:
    def program(engine: ModuleType, client: Any) -> Any:
        name = unique("event")
        event = engine.Event(name)
        out = [event.is_set(), event.wait(0.1)]
        futures = client.map(wait_for_event, [engine] * 2, [name] * 2, pure=False)
        event.set()
        out += [client.gather(futures), event.is_set(), event.wait(0.1)]
        event.clear()
        out += [event.is_set(), event.wait(0.1)]
        return out

    assert both(program) == [False, False, [True, True], True, True, False, False]


def inc(x: int) -> int:
    return x + 1


def fill_queue(engine: ModuleType, name: str, n: int) -> int:
    queue = engine.Queue(name)
    for i in range(n):
        queue.put(i)
    return n


def test_queue(both: Callable[[Program], Any]) -> None:
    def program(engine: ModuleType, client: Any) -> Any:
        name = unique("queue")
        queue = engine.Queue(name)
        out: list[Any] = [client.submit(fill_queue, engine, name, 3).result(), queue.qsize()]
        out += [queue.get(), queue.get(timeout=1), queue.get(batch=True)]
        future = client.submit(inc, 41)
        queue.put(future)
        del future
        out.append(queue.get(timeout=5).result())
        try:
            queue.get(timeout=0.2)
        except TimeoutError:
            out.append("timeout")
        bounded = engine.Queue(unique("bounded"), maxsize=1)
        bounded.put("only")
        try:
            bounded.put("one more", timeout=0.2)
        except TimeoutError:
            out.append("full")
        out.append(bounded.get())
        return out

    assert both(program) == [3, 3, 0, 1, [2], 42, "timeout", "full", "only"]


def test_variable(both: Callable[[Program], Any]) -> None:
    def program(engine: ModuleType, client: Any) -> Any:
        var = engine.Variable(unique("var"))
        var.set({"a": [1, 2]})
        out: list[Any] = [var.get()]
        var.set(client.submit(inc, 1))
        out.append(var.get(timeout=5).result())
        var.delete()  # dask sends this without waiting for it: no get right after it here
        try:
            engine.Variable(unique("never-set")).get(timeout=0.2)
        except TimeoutError:
            out.append("timeout")
        return out

    assert both(program) == [{"a": [1, 2]}, 2, "timeout"]


class Counter:
    n = 0

    def __init__(self, start: int = 0) -> None:
        self.n = start

    def increment(self, by: int = 1) -> int:
        self.n += by
        return self.n

    async def async_increment(self) -> int:
        self.n += 100
        return self.n


def call_actor(counter: Any) -> int:
    result: int = counter.increment(5).result()
    return result


def test_actor(both: Callable[[Program], Any]) -> None:
    def program(engine: ModuleType, client: Any) -> Any:
        counter = client.submit(Counter, actor=True).result()
        out: list[Any] = [type(counter).__name__, counter.increment().result()]
        future = counter.increment(2)
        out += [type(future).__name__, future.result(), counter.n]
        out += [counter.async_increment().result(), client.submit(call_actor, counter).result()]
        out.append(counter.n)
        others = client.gather(client.map(Counter, [0, 10], actors=True))
        out.append([c.increment().result() for c in others])
        return out

    assert both(program) == ["Actor", 1, "ActorFuture", 3, 3, 103, 108, 108, [1, 11]]


def write_file(path: str) -> str:
    time.sleep(0.2)
    staged = Path(path + ".part")
    staged.write_text("written")
    staged.replace(path)  # whole or not at all: a reader polling for the file never sees ""
    return path


def test_fire_and_forget(both: Callable[[Program], Any], tmp_path: Path) -> None:
    def program(engine: ModuleType, client: Any) -> Any:
        path = tmp_path / unique("side-effect")
        future = client.submit(write_file, str(path), pure=False)
        engine.fire_and_forget(future)
        del future  # released by the client: the task still runs
        deadline = time.monotonic() + 20
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return path.read_text() if path.exists() else None

    assert both(program) == "written"


def test_datasets(both: Callable[[Program], Any]) -> None:
    def program(engine: ModuleType, client: Any) -> Any:
        a, b = unique("a"), unique("b")
        client.publish_dataset(**{a: client.submit(inc, 9), b: [1, 2, 3]})
        out: list[Any] = [sorted(n for n in client.list_datasets() if n in (a, b)) == [a, b]]
        out.append(client.get_dataset(a).result())
        try:
            client.publish_dataset(**{b: "again"})
        except KeyError:
            out.append("taken")
        client.publish_dataset(**{b: "again"}, override=True)
        out += [client.get_dataset(b), client.datasets[b], b in client.datasets]
        client.unpublish_dataset(b)
        out += [b in client.datasets, client.get_dataset(b, default="none")]
        try:
            client.get_dataset(b)
        except KeyError:
            out.append("missing")
        client.datasets[b] = 5
        out.append(client.datasets[b])
        del client.datasets[b]
        client.unpublish_dataset(a)
        return out

    assert both(program) == [True, 10, "taken", "again", "again", True, False, "none",
                             "missing", 5]  # fmt: skip


def slow(x: int) -> int:
    time.sleep(5)
    return x


def test_exceptions_caught_alike(both: Callable[[Program], Any]) -> None:
    def program(engine: ModuleType, client: Any) -> Any:
        future = client.submit(slow, 1, pure=False)
        future.cancel()
        out = []
        for clause in (concurrent.futures.CancelledError, engine.CancelledError):
            try:
                future.result(timeout=5)
            except clause:
                out.append(clause.__name__)
        out.append(engine.TimeoutError is TimeoutError)
        out.append(issubclass(engine.KilledWorker, Exception))
        return out

    assert both(program) == ["CancelledError", "CancelledError", True, True]
