"""as_completed and wait, from threads and coroutines; the asynchronous client."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from shoal.client import FIRST_COMPLETED, Client, Future, as_completed, wait
from shoal.errors import ShoalTimeoutError
from tests.client.client_fakes import FakeTransport


def inc(x: int) -> int:
    return x + 1


def fail(x: int) -> int:
    raise KeyError(x)


@pytest.fixture
def fake() -> FakeTransport:
    return FakeTransport()


@pytest.fixture
def client(fake: FakeTransport) -> Iterator[Client]:
    c = Client._from_transport(fake)
    yield c
    c.close()


def finish(fake: FakeTransport, *futures: Future) -> None:
    """Compute the queued tasks of these futures only, in the order given."""
    keep = [item for item in fake.queue if item[0] not in {f.key for f in futures}]
    order = {f.key: i for i, f in enumerate(futures)}
    fake.queue = sorted((i for i in fake.queue if i[0] in order), key=lambda i: order[i[0]])
    fake.compute()
    fake.queue = keep


# -- as_completed --------------------------------------------------------------------------------


def test_as_completed_yields_in_completion_order(client: Client, fake: FakeTransport) -> None:
    a, b, c = client.map(inc, [1, 2, 3])
    iterator = as_completed([a, b, c])
    finish(fake, c, a)
    assert [next(iterator), next(iterator)] == [c, a]
    finish(fake, b)
    assert list(iterator) == [b]


def test_as_completed_waits_for_futures_finished_by_another_thread(
    client: Client, fake: FakeTransport
) -> None:
    futures = client.map(inc, range(5))
    finisher = threading.Thread(target=fake.compute)
    iterator = as_completed(futures)
    finisher.start()
    assert set(iterator) == set(futures)
    finisher.join()


def test_as_completed_with_results_and_errors(client: Client, fake: FakeTransport) -> None:
    good = client.submit(inc, 1)
    bad = client.submit(fail, 1)
    finish(fake, good, bad)
    iterator = as_completed([good, bad], with_results=True)
    assert next(iterator) == (good, 2)
    with pytest.raises(KeyError):
        next(iterator)
    pairs = list(as_completed([good, bad], with_results=True, raise_errors=False))
    assert pairs[0] == (good, 2)
    assert pairs[1][0] is bad and isinstance(pairs[1][1], KeyError)


def test_as_completed_accepts_more_futures_while_iterating(
    client: Client, fake: FakeTransport
) -> None:
    first = client.submit(inc, 1)
    fake.compute()
    seen = []
    iterator = as_completed([first])
    for future in iterator:
        seen.append(future)
        if len(seen) < 3:
            follow_up = client.submit(inc, future)
            iterator.add(follow_up)
            fake.compute()
    assert [f.result() for f in seen] == [2, 3, 4]
    assert iterator.is_empty() and iterator.count() == 0


def test_as_completed_yields_repeated_futures_each_time(
    client: Client, fake: FakeTransport
) -> None:
    future = client.submit(inc, 1)
    fake.compute()
    assert list(as_completed([future, future])) == [future, future]


def test_as_completed_of_nothing_is_empty() -> None:
    assert list(as_completed([])) == []


# -- wait ----------------------------------------------------------------------------------------


def test_wait_for_all(client: Client, fake: FakeTransport) -> None:
    futures = client.map(inc, range(3))
    finisher = threading.Thread(target=fake.compute)
    finisher.start()
    done, not_done = wait(futures, timeout=30)
    finisher.join()
    assert done == set(futures) and not_done == set()


def test_wait_for_the_first(client: Client, fake: FakeTransport) -> None:
    a, b = client.map(inc, [1, 2])
    finish(fake, b)
    result = wait([a, b], return_when=FIRST_COMPLETED)  # type: ignore[arg-type]
    assert result.done == {b} and result.not_done == {a}


def test_wait_times_out(client: Client, fake: FakeTransport) -> None:
    a, b = client.map(inc, [1, 2])
    finish(fake, a)
    with pytest.raises(ShoalTimeoutError, match="1 of 2 futures were not done"):
        wait([a, b], timeout=0.05)
    assert a._state._listeners is None and b._state._listeners == []


def test_wait_counts_errors_and_cancellations_as_done(client: Client, fake: FakeTransport) -> None:
    bad = client.submit(fail, 1)
    gone = client.submit(inc, 5)
    fake.compute()
    gone.cancel()
    assert wait([bad, gone]).done == {bad, gone}


def test_wait_refuses_an_unknown_return_when(client: Client) -> None:
    with pytest.raises(ValueError, match="return_when"):
        wait([client.submit(inc, 1)], return_when="SOMETIMES")  # type: ignore[arg-type]


# -- the asynchronous client ---------------------------------------------------------------------


async def open_async(fake: FakeTransport) -> Client:
    client: Client = await Client._from_transport(fake, asynchronous=True)
    return client


def test_an_asynchronous_client_awaits_results() -> None:
    async def main() -> None:
        fake = FakeTransport()
        client = await open_async(fake)
        try:
            future = client.submit(inc, 1)
            assert future.status == "pending"
            fake.compute()
            assert await future == 2
            assert await future.result() == 2
            assert await client.gather([future, future]) == [2, 2]
            [x] = await client.scatter([5])
            y = client.submit(inc, x)
            fake.compute()
            assert await y.result(timeout=5) == 6
        finally:
            await client.close()
        assert client.status == "closed"

    asyncio.run(main())


def test_an_asynchronous_result_times_out() -> None:
    async def main() -> None:
        fake = FakeTransport()
        async with await open_async(fake) as client:
            future = client.submit(inc, 1)
            with pytest.raises(ShoalTimeoutError):
                await future.result(timeout=0.05)

    asyncio.run(main())


def test_an_asynchronous_error_keeps_its_type() -> None:
    async def main() -> None:
        fake = FakeTransport()
        async with await open_async(fake) as client:
            future = client.submit(fail, 7)
            fake.compute()
            with pytest.raises(KeyError):
                await future
            assert isinstance(await future.exception(), KeyError)  # type: ignore[misc]
            assert await future.traceback() is not None  # type: ignore[misc]
            await client.cancel([client.submit(inc, 3)])

    asyncio.run(main())


def test_async_for_over_as_completed_and_async_wait() -> None:
    async def main() -> None:
        fake = FakeTransport()
        async with await open_async(fake) as client:
            futures = client.map(inc, range(3))
            asyncio.get_running_loop().call_soon(fake.compute)
            seen = [(f, r) async for f, r in as_completed(futures, with_results=True)]
            assert sorted(r for _, r in seen) == [1, 2, 3]
            done, _ = await wait(futures)
            assert done == set(futures)
            pending = client.submit(inc, 100)
            with pytest.raises(ShoalTimeoutError):
                await wait([pending], timeout=0.05)

    asyncio.run(main())


def test_async_for_over_futures_of_a_synchronous_client(
    client: Client, fake: FakeTransport
) -> None:
    futures = client.map(inc, range(3))

    async def main() -> list[Future]:
        threading.Thread(target=fake.compute).start()
        return [f async for f in as_completed(futures)]

    assert set(asyncio.run(main())) == set(futures)


def test_an_asynchronous_client_is_not_a_plain_context_manager() -> None:
    client = Client(asynchronous=True)
    with pytest.raises(TypeError, match="async with"), client:
        pass
