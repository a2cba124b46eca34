"""Clients that lost their scheduler: what they keep, and what they declare again."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from shoal import Client
from shoal.client.reconnect import SpecStore
from shoal.errors import CancelledError
from shoal.protocol import ops
from tests.client.client_fakes import FakeTransport
from tests.integration.conftest import wait_for


def inc(x: int) -> int:
    return x + 1


def row(key: str, *deps: str) -> ops.TaskRow:
    return (key, f"spec-{key}", deps, (0,), f"token-{key}")


# -- SpecStore ------------------------------------------------------------------------------------
def test_redeclare_sends_live_keys_with_the_rows_they_need() -> None:
    store = SpecStore()
    tasks = [row("a"), row("b", "a"), row("c")]
    sent = ops.UpdateGraph(tasks=tasks, wanted=["b"], restrictions={"a": {"retries": 2}})
    store.record(sent, lambda: ["b", "c"])
    out = store.redeclare(["b", "scattered"])
    assert list(out.wanted) == ["b", "scattered"]
    assert out.stimulus_id.startswith("client-reconnect-")
    by_key = {r[0]: r for r in out.tasks}
    assert by_key["b"] == row("b", "a") and by_key["a"] == row("a")
    assert by_key["scattered"] == ("scattered", None, (), (), None)  # no spec: found or lost
    assert "c" not in by_key and out.restrictions == {"a": {"retries": 2}}


def test_prune_drops_rows_no_live_key_needs() -> None:
    store = SpecStore()
    store.record(ops.UpdateGraph(tasks=[row("a"), row("b", "a"), row("c")]), lambda: ["b"])
    store.prune(["b"])
    assert set(store.rows) == {"a", "b"}


def test_the_store_prunes_itself_when_it_grows() -> None:
    store = SpecStore()
    for i in range(3000):
        store.record(ops.UpdateGraph(tasks=[row(f"k{i}")]), lambda: ["k0"])
    assert len(store.rows) < 1100


# -- the client core over a fake network ---------------------------------------------------
def test_futures_stay_pending_across_a_reconnect_and_keys_are_declared_again() -> None:
    fake = FakeTransport()
    client = Client._from_transport(fake)
    try:
        assert client._core is not None
        client._core.reconnect_timeout = 10
        a = client.submit(inc, 1, key="a")
        b = client.submit(inc, a, key="b")
        fake.sent.clear()
        fake.queue.clear()
        fake.lose_connection("connection reset by peer")
        wait_for(lambda: "client-reconnected" in fake.ops(), timeout=10)
        assert a.status == "pending" and b.status == "pending"
        (again,) = fake.messages("update-graph")
        assert sorted(again["wanted"]) == ["a", "b"]
        assert sorted(r[0] for r in again["tasks"]) == ["a", "b"]
        assert all(r[1] is not None for r in again["tasks"])  # with their run specs
        fake.compute()
        assert b.result(timeout=10) == 3
        assert client._core.reconnects == 1
    finally:
        client.close()


class UnreachableScheduler(FakeTransport):
    def __init__(self) -> None:
        super().__init__()
        self.opens = 0

    async def open(self, client_id: str, on_batch: Any, on_lost: Any) -> dict[str, Any]:
        self.opens += 1
        if self.opens > 1:
            raise OSError("connection refused")
        return await super().open(client_id, on_batch, on_lost)


def test_result_raises_a_clear_error_once_the_reconnect_timeout_passed() -> None:
    fake = UnreachableScheduler()
    client = Client._from_transport(fake)
    try:
        assert client._core is not None
        client._core.reconnect_timeout = 1.0
        pending = client.submit(inc, 1, key="x")
        start = time.monotonic()
        fake.lose_connection("connection reset by peer")
        with pytest.raises(CancelledError, match=r"could not reconnect within 1\.0s"):
            pending.result(timeout=30)
        assert time.monotonic() - start >= 0.9 and fake.opens >= 3  # it kept trying
    finally:
        client.close()


def test_settle_waits_for_the_workers_the_old_scheduler_had_and_for_late_joiners(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import asyncio

    from shoal.client import reconnect

    asked: list[tuple[int, float]] = []

    def cluster_of(workers: int) -> Callable[[int, float], Awaitable[int]]:
        async def wait_for_workers(n: int, timeout: float) -> int:
            asked.append((n, timeout))
            if n > workers:  # the scheduler answers at the deadline: nobody else came
                raise TimeoutError(f"{workers} of {n} workers registered within {timeout} s")
            return workers

        return wait_for_workers

    # the old scheduler had 3 when we registered; 5 rejoin: wait for 3, then for more
    assert asyncio.run(reconnect.settle(cluster_of(5), 3)) == 5
    assert asked == [(3, reconnect.SETTLE_MAX), (6, reconnect.SETTLE_STABLE)]
    asked.clear()
    # none known at registration (the client came first): still wait for whoever rejoins
    assert asyncio.run(reconnect.settle(cluster_of(2), 0)) == 2
    assert asked == [(1, reconnect.SETTLE_STABLE), (3, reconnect.SETTLE_STABLE)]
    with caplog.at_level("WARNING", logger="shoal.client.reconnect"):
        assert asyncio.run(reconnect.settle(cluster_of(1), 3)) == -1
    assert "1 of 3 workers registered" in caplog.text
