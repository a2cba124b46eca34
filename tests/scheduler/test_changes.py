"""Waits on the scheduler's state: woken by each applied batch, bounded by a deadline."""

from __future__ import annotations

import asyncio

import pytest

from shoal import LocalCluster
from shoal.scheduler.changes import StateChanges


def test_a_wait_wakes_when_notified_and_times_out_with_its_message() -> None:
    async def main() -> None:
        changes = StateChanges()
        box = {"n": 0}
        waiter = asyncio.ensure_future(changes.wait_for(lambda: box["n"] >= 2, 10, str))
        for _ in range(2):
            await asyncio.sleep(0)
            assert not waiter.done()
            box["n"] += 1
            changes.notify()
        await asyncio.wait_for(waiter, 1)  # woken by notify, long before its 10 s deadline
        with pytest.raises(TimeoutError, match="never true"):
            await changes.wait_for(lambda: False, 0.05, lambda: "never true")

    asyncio.run(main())


def test_wait_for_workers_and_retire_workers_answer_on_state_changes() -> None:
    async def main() -> None:
        async with LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None,
            asynchronous=True,
        ) as cluster:  # fmt: skip
            scheduler = cluster.scheduler
            with pytest.raises(TimeoutError, match=r"1 of 2 workers registered within 0\.1 s"):
                await scheduler.wait_for_workers(n=2, timeout=0.1)
            waiter = asyncio.ensure_future(scheduler.wait_for_workers(n=2, timeout=60))
            await cluster.scale(2)
            assert await asyncio.wait_for(waiter, 60) == 2
            (first, *_rest) = list(scheduler.state.workers)
            done = await asyncio.wait_for(scheduler.retire_workers(workers=[first]), 60)
            assert done == {"retired": [first], "refused": []}
            assert first not in scheduler.state.workers

    asyncio.run(main())
