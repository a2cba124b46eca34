"""The coordination shell's claim protocol: futures put into and read from queues and
variables are held by whoever holds them now, with no timer and no polling, and freed
when their last holder drops them."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import pytest

from shoal import Client, LocalCluster, Queue, Variable
from shoal.scheduler.coordination_server import COORDINATION_CLIENT, Coordination


def inc(x: int) -> int:
    return x + 1


async def wait_until(condition: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def test_futures_through_queue_and_variable_are_claimed_and_freed() -> None:
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        asyncio.run(round_trip(cluster))


async def round_trip(cluster: LocalCluster) -> None:
    scheduler = cluster.scheduler
    tasks = scheduler.state.tasks
    async with Client(cluster, asynchronous=True) as client:
        queue = Queue("claims-q", client=client)
        future = client.submit(inc, 1, key="through-queue")
        await queue.put(future)
        assert set(tasks["through-queue"].who_wants) == {client.id, COORDINATION_CLIENT}
        got = await queue.get(timeout=10)
        # the reader holds the key itself from the moment it was handed over: no stand-in
        assert set(tasks["through-queue"].who_wants) == {client.id}
        assert await got.result() == 2
        del future, got
        gc.collect()
        await wait_until(lambda: "through-queue" not in tasks, "the queue's key to be freed")

        var = Variable("claims-v", client=client)
        future = client.submit(inc, 2, key="through-variable")
        await var.set(future)
        del future
        gc.collect()
        await wait_until(
            lambda: list(tasks["through-variable"].who_wants) == [COORDINATION_CLIENT],
            "the variable to be the only holder",
        )
        got = await var.get(timeout=10)
        assert set(tasks["through-variable"].who_wants) == {client.id, COORDINATION_CLIENT}
        await var.delete()
        await wait_until(
            lambda: set(tasks["through-variable"].who_wants) == {client.id},
            "the variable to let go",
        )
        assert await got.result() == 3
        del got
        gc.collect()
        await wait_until(lambda: "through-variable" not in tasks, "the variable's key to go")
        assert scheduler.coordination.open_claims() == 0


class FakeScheduler:
    """What ``Coordination`` uses of a scheduler: a status, feed and flush."""

    def __init__(self) -> None:
        self.status = "running"
        self.fed: list[Any] = []
        self.flushes = 0

    def feed(self, event: Any) -> None:
        self.fed.append(event)

    def flush(self, whole: bool = False) -> None:
        self.flushes += 1


def test_a_call_waits_for_its_claim_to_arrive_on_the_stream() -> None:
    async def main() -> None:
        scheduler = FakeScheduler()
        coordination = Coordination(scheduler)  # type: ignore[arg-type]
        coordination.queue_create(None, "q")
        put = asyncio.ensure_future(coordination.queue_put(None, "q", b"value", ["k"], claim="c1"))
        await asyncio.sleep(0)
        assert not put.done()  # the call overtook the client's stream: it waits
        assert coordination.state.qsize("q") == 0
        coordination.claim_arrived("client-a", "c1")
        assert await asyncio.wait_for(put, 5)
        assert coordination.state.qsize("q") == 1
        held = [e for e in scheduler.fed if getattr(e, "client", None) == COORDINATION_CLIENT]
        assert [e.keys for e in held] == [("k",)]
        assert coordination.open_claims() == 0

        # a claim that arrives first is matched by its call at once
        coordination.claim_arrived("client-a", "c2")
        got = await asyncio.wait_for(
            coordination.queue_get(None, "q", requester="client-a", claim="c2"), 5
        )
        assert got == [[b"value", ["k"]]]
        claimed = [e for e in scheduler.fed if getattr(e, "client", None) == "client-a"]
        assert [e.keys for e in claimed] == [("k",)]
        assert coordination.open_claims() == 0

        # a claim sent by a client whose stream then closed is void
        coordination.claim_arrived("client-b", "c3")
        coordination.client_gone("client-b")
        assert coordination.open_claims() == 0

    asyncio.run(main())


def test_a_claim_that_never_arrives_fails_the_call_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shoal.scheduler import coordination_server

    monkeypatch.setattr(coordination_server, "CLAIM_WAIT", 0.05)

    async def main() -> None:
        coordination = Coordination(FakeScheduler())  # type: ignore[arg-type]
        with pytest.raises(coordination_server.ClaimTimeoutError, match="claim 'lost'"):
            await coordination.variable_set(None, "v", b"x", ["k"], claim="lost")
        assert "v" not in coordination.state.variables
        assert coordination.open_claims() == 0

    asyncio.run(main())
