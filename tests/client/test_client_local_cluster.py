"""The client against a real in-process LocalCluster (scheduler and two workers, tcp)."""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
from collections.abc import Iterator

import pytest

from shoal.client import Client, Future, as_completed, wait
from shoal.client.transport import CommTransport
from shoal.comm import Security
from shoal.errors import CancelledError, ShoalError, ShoalTimeoutError
from tests.conftest import wait_until

cluster_module = pytest.importorskip("shoal.cluster")
LocalCluster = cluster_module.LocalCluster


def inc(x: int) -> int:
    return x + 1


def add(x: int, y: int) -> int:
    return x + y


def user_function_that_fails(x: int) -> int:
    raise ZeroDivisionError(f"cannot divide {x} by zero")


#: events tasks wait on (the workers run in this process); a test opens its gate
GATES: dict[str, threading.Event] = {}


def wait_at_gate(name: str) -> bool:
    return GATES.setdefault(name, threading.Event()).wait(30)


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as c:
        yield c


@pytest.fixture
def client(cluster: object) -> Iterator[Client]:
    with Client(cluster, set_as_default=False) as c:
        yield c
    # every test leaves the scheduler with nothing: its futures are gone with the client
    with Client(cluster, set_as_default=False) as observer:
        wait_until(lambda: not observer.scheduler_info()["tasks"])


def test_submit_and_result(client: Client) -> None:
    future = client.submit(inc, 1)
    assert future.result(timeout=20) == 2
    assert future.status == "finished" and future.type == "int"


def test_map_and_gather(client: Client) -> None:
    futures = client.map(inc, range(200))
    assert client.gather(futures) == list(range(1, 201))


def test_futures_as_arguments_nested(client: Client) -> None:
    a, b = client.map(inc, [1, 2])
    total = client.submit(lambda xs, d: sum(xs) + d["c"], [a, b], d={"c": a})
    assert total.result(timeout=20) == 2 + 3 + 2


def test_scatter_then_compute(client: Client) -> None:
    data = client.scatter([10, 20, 30])
    assert {w for ws in client.who_has(data).values() for w in ws} == set(client.nthreads())
    total = client.submit(sum, data)
    assert total.result(timeout=20) == 60
    named = client.scatter({"forty": 40})
    assert client.submit(inc, named["forty"]).result(timeout=20) == 41


def test_a_task_error_has_its_type_and_remote_traceback(client: Client) -> None:
    future = client.submit(user_function_that_fails, 5)
    with pytest.raises(ZeroDivisionError, match="cannot divide 5") as info:
        future.result(timeout=20)
    text = "".join(traceback.format_exception(info.type, info.value, info.tb))
    assert "user_function_that_fails" in text
    assert future.status == "error"
    assert isinstance(future.exception(), ZeroDivisionError)


def test_an_error_propagates_to_dependents(client: Client) -> None:
    bad = client.submit(user_function_that_fails, 1)
    downstream = client.submit(inc, bad)
    with pytest.raises(ZeroDivisionError):
        downstream.result(timeout=20)


def test_cancel(client: Client) -> None:
    gate = GATES.setdefault("cancel", threading.Event())
    blocker = client.submit(wait_at_gate, "cancel", pure=False)
    queued = client.submit(inc, blocker)
    queued.cancel()
    assert queued.cancelled()
    with pytest.raises(CancelledError):
        queued.result(timeout=20)
    gate.set()
    assert blocker.result(timeout=20) is True


def test_as_completed_and_wait(client: Client) -> None:
    futures = client.map(inc, range(20))
    assert {f.result() for f in as_completed(futures)} == set(range(1, 21))
    done, not_done = wait(client.map(add, range(5), range(5)), timeout=20)
    assert len(done) == 5 and not not_done


def test_run_on_every_worker(client: Client) -> None:
    results = client.run(lambda: threading.current_thread().name != "")
    assert set(results) == set(client.nthreads()) and all(results.values())


def test_who_has_has_what_scheduler_info(client: Client) -> None:
    future = client.submit(inc, 1)
    future.result(timeout=20)
    [holder] = client.who_has([future])[future.key]
    assert future.key in client.has_what()[holder]
    info = client.scheduler_info()
    assert set(info["workers"]) == set(client.nthreads()) and len(info["workers"]) == 2
    assert "processes=2 threads=2" in repr(client)


def test_dropping_futures_releases_their_tasks(client: Client) -> None:
    futures = client.map(inc, range(50))
    client.gather(futures)
    assert client.scheduler_info()["tasks"]
    del futures
    wait_until(lambda: not client.scheduler_info()["tasks"])
    assert all(not keys for keys in client.has_what().values())


def test_same_key_other_task_is_refused(client: Client) -> None:
    kept = client.submit(inc, 1, key="shared-key")
    with pytest.raises(ValueError, match="shared-key"):
        client.submit(inc, 2, key="shared-key")
    assert kept.result(timeout=20) == 2


def test_retries(client: Client) -> None:
    flaky = client.submit(_fails_first_time, 3, retries=1, pure=False)
    assert flaky.result(timeout=20) == 3


_attempts: dict[int, int] = {}


def _fails_first_time(x: int) -> int:
    _attempts[x] = _attempts.get(x, 0) + 1
    if _attempts[x] == 1:
        raise RuntimeError("first attempt fails")
    return x


def test_a_client_by_address_finds_the_token(cluster: object) -> None:
    address = cluster.scheduler_address  # type: ignore[attr-defined]
    with Client(address, set_as_default=False) as client:
        assert client.submit(inc, 41).result(timeout=20) == 42


def test_a_client_on_the_cluster_s_loop_reaches_its_scheduler_in_process(cluster: object) -> None:
    assert cluster.in_process_address() is None  # type: ignore[attr-defined]  # not its loop
    with Client(cluster, set_as_default=False) as client:
        transport = client._running_core().transport
        assert isinstance(transport, CommTransport)
        assert transport.scheduler_route.startswith("inproc://")
        assert client.scheduler_info()["address"] == cluster.scheduler_address  # type: ignore[attr-defined]
        assert client.submit(inc, 1).result(timeout=20) == 2
        assert client.gather(client.map(inc, range(5))) == [1, 2, 3, 4, 5]

    async def on_another_loop() -> None:
        async with Client(cluster, asynchronous=True, set_as_default=False) as other:
            transport = other._running_core().transport
            assert isinstance(transport, CommTransport)
            assert transport.scheduler_route == cluster.scheduler_address  # type: ignore[attr-defined]
            assert await other.submit(inc, 2) == 3

    asyncio.run(on_another_loop())


def test_an_asynchronous_client(cluster: object) -> None:
    async def main() -> None:
        async with Client(cluster, asynchronous=True, set_as_default=False) as client:
            future = client.submit(inc, 1)
            assert await future == 2
            assert await client.gather(client.map(inc, [1, 2])) == [2, 3]
            [x] = await client.scatter([3])
            assert await client.submit(inc, x) == 4

    asyncio.run(main())


def test_connecting_to_nothing_fails_in_time_naming_the_address() -> None:
    address = "tcp://127.0.0.1:9"  # discard port: nothing listens there
    start = time.monotonic()
    with pytest.raises((ShoalError, OSError), match=r"127\.0\.0\.1:9"):
        Client(address, timeout=1, security=_any_security(), set_as_default=False)
    assert time.monotonic() - start < 10


def _any_security() -> Security:
    return Security.local()


def test_client_without_address_starts_and_closes_a_local_cluster() -> None:
    with Client(n_workers=1, threads_per_worker=1, processes=False) as client:
        assert client.submit(inc, 1).result(timeout=20) == 2
        cluster = client.cluster
        assert cluster is not None
    assert cluster.status == "closed"


def test_result_timeout_on_a_real_pending_future(client: Client) -> None:
    gate = GATES.setdefault("timeout", threading.Event())
    future: Future = client.submit(wait_at_gate, "timeout", pure=False)
    with pytest.raises(ShoalTimeoutError):
        future.result(timeout=0.1)
    gate.set()
    assert future.result(timeout=20) is True


def test_workers_restriction_places_the_task(client: Client) -> None:
    target = sorted(client.nthreads())[1]
    futures = client.map(inc, range(6), workers=[target])
    client.gather(futures)
    holders = {w for ws in client.who_has(futures).values() for w in ws}
    assert holders == {target}


def test_shutdown_closes_the_cluster_too() -> None:
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False)
    client = Client(cluster, set_as_default=False)
    assert client.submit(inc, 1).result(timeout=20) == 2
    client.shutdown()
    assert client.status == "closed" and cluster.status == "closed"


def test_a_big_map_reaches_the_scheduler_in_parts_one_per_loop_turn(
    cluster: object, client: Client
) -> None:
    from shoal.client.tasks import MAX_ROWS_PER_MESSAGE
    from shoal.scheduler import events as ev

    scheduler = cluster.scheduler  # type: ignore[attr-defined]
    flush = scheduler.flush
    parts: list[list[object]] = []  # per state-machine batch: the new tasks' keys

    def recording_flush(whole: bool = False) -> None:
        graphs = [e for e in scheduler._pending if isinstance(e, ev.GraphSubmitted)]
        if graphs:
            parts.append([task.key for graph in graphs for task in graph.tasks])
        flush(whole)

    scheduler.flush = recording_flush
    try:
        n = 2 * MAX_ROWS_PER_MESSAGE + 10
        futures = client.map(inc, range(n), pure=False)
        assert client.gather(futures) == list(range(1, n + 1))
    finally:
        del scheduler.flush
    # each part was its own batch (a loop turn of its own: others are served in between)
    assert [len(keys) for keys in parts] == [MAX_ROWS_PER_MESSAGE] * 2 + [10]
    assert [key for keys in parts for key in keys] == [f.key for f in futures]
