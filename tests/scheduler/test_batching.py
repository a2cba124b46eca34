"""Big events are cut into passes the loop can wait for; the order of everything is kept."""

from __future__ import annotations

from typing import Any

import pytest

from shoal import Client, LocalCluster
from shoal.scheduler import batching
from shoal.scheduler import events as ev

from .helpers import sid, submit, task


def released(n: int, client: str = "c1") -> ev.KeysReleased:
    return ev.KeysReleased(
        stimulus_id="drop", client=client, keys=tuple(f"k-{i}" for i in range(n))
    )


def test_a_big_release_is_split_in_order_under_the_same_stimulus() -> None:
    parts = batching.split(released(25), budget=10)
    assert [len(p.keys) for p in parts if isinstance(p, ev.KeysReleased)] == [10, 10, 5]
    assert [k for p in parts if isinstance(p, ev.KeysReleased) for k in p.keys] == list(
        released(25).keys
    )
    assert {p.stimulus_id for p in parts} == {"drop"}
    assert batching.split(released(10), budget=10) == [released(10)]


def test_a_client_leaving_with_many_keys_releases_them_in_chunks_then_leaves() -> None:
    gone = ev.ClientDisconnected(stimulus_id="bye", client="c1", now=5.0)
    parts = batching.split(gone, wanted=[f"k-{i}" for i in range(25)], budget=10)
    assert [type(p).__name__ for p in parts] == ["KeysReleased"] * 3 + ["ClientDisconnected"]
    assert all(p.client == "c1" and p.now == 5.0 for p in parts)  # type: ignore[attr-defined]
    assert batching.split(gone, wanted=["k-1"], budget=10) == [gone]


def test_a_pass_takes_events_while_the_budget_lasts_and_always_one() -> None:
    graph = submit([task(f"t-{i}") for i in range(8)], [])
    other = ev.ClientConnected(stimulus_id=sid(), client="c2")
    pending: list[ev.SchedulerEvent] = [graph, other, released(3), other]
    first, rest = batching.take_pass(pending, budget=10)
    assert first == [graph, other] and rest == [released(3), other]  # 8 + 1, then 3 > 10
    assert batching.take_pass([released(50), other], budget=10) == ([released(50)], [other])
    assert batching.take_pass([], budget=10) == ([], [])


def _passes(scheduler: Any) -> None:
    """Record the weight of every pass the scheduler makes from now on."""
    handle = scheduler.state.handle_stimulus
    scheduler.pass_weights = []

    def recorded(*events: ev.SchedulerEvent) -> Any:
        scheduler.pass_weights.append(sum(batching.weight(e) for e in events))
        return handle(*events)

    scheduler.state.handle_stimulus = recorded


def test_dropping_and_leaving_with_many_futures_takes_passes_of_a_budget_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batching, "PASS_BUDGET", 40)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster:
        scheduler = cluster.scheduler  # type: ignore[attr-defined]
        with Client(cluster) as client:
            futures = client.map(int, range(300), pure=False)
            kept = client.map(str, range(300), pure=False)
            assert client.gather(futures)[-1] == 299 and client.gather(kept)[-1] == "299"
            _passes(scheduler)
            del futures  # one release of 300 keys
            assert _wait_for(lambda: len(scheduler.state.tasks) == 300)
        # the client left holding 300 futures: released in chunks, then gone
        assert _wait_for(lambda: not scheduler.state.tasks)
        weights = scheduler.pass_weights
        assert weights and max(weights) <= 40, weights
        assert sum(weights) >= 600  # every key released, 40 at most a pass
        assert not scheduler.state.clients


def _wait_for(condition: Any, timeout: float = 10.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_the_shell_forgets_what_a_pass_put_off_in_passes_of_its_own() -> None:
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster:
        scheduler = cluster.scheduler  # type: ignore[attr-defined]
        scheduler.state.engine.forgets_per_pass = 5
        with Client(cluster) as client:
            future = client.submit(int, 0, pure=False)
            for _ in range(40):
                future = client.submit(abs, future, pure=False)
            assert future.result() == 0
            fed: list[str] = []
            handle = scheduler.state.handle_stimulus

            def recorded(*events: ev.SchedulerEvent) -> Any:
                fed.extend(type(e).__name__ for e in events)
                return handle(*events)

            scheduler.state.handle_stimulus = recorded
            del future  # its release cascades through the chain of 41 tasks
            assert _wait_for(lambda: not scheduler.state.tasks)
            assert fed.count("ForgettingDue") >= 7, fed  # 5 a pass
            assert not scheduler.state.forgetting
