"""The primitives, datasets and actors with an asynchronous client: every call awaits."""

from __future__ import annotations

import asyncio

import pytest

from shoal import Client, Event, LocalCluster, Lock, Queue, Semaphore, Variable


class Counter:
    n = 0

    def add(self, k: int) -> int:
        self.n += k
        return self.n

    async def async_add(self, k: int) -> int:
        await asyncio.sleep(0)
        self.n += k
        return self.n


def inc(x: int) -> int:
    return x + 1


def test_primitives_with_an_asynchronous_client() -> None:
    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster:
        asyncio.run(use_primitives(cluster))


async def use_primitives(cluster: LocalCluster) -> None:
    async with Client(cluster, asynchronous=True) as client:
        lock = Lock("a", client=client)
        assert await lock.acquire()
        assert not await Lock("a", client=client).acquire(timeout=0.1)
        async with Semaphore(2, "s", client=client) as sem:
            assert await sem.get_value() == 1
        await lock.release()
        assert not await lock.locked()

        event = Event("e", client=client)
        waiter = asyncio.ensure_future(event.wait(5))
        await event.set()
        assert await waiter

        queue = Queue("q", client=client)
        await queue.put(client.submit(inc, 1))
        future = await queue.get(timeout=5)
        assert await future.result() == 2
        with pytest.raises(TimeoutError):
            await queue.get(timeout=0.1)

        var = Variable("v", client=client)
        await var.set([1, 2])
        assert await var.get() == [1, 2]

        await client.publish_dataset(x=5)
        assert await client.list_datasets() == ["x"]
        assert await client.get_dataset("x") == 5

        counter = await client.submit(Counter, actor=True)
        assert await counter.add(2) == 2
        assert await counter.async_add(3) == 5
        assert await counter.n == 5
