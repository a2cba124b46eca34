"""Worker semantics that need a hand inside the processes: a LocalCluster with in-process
workers (real TCP between them) for transfer limits and steal requests."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from shoal import Client, LocalCluster
from shoal import loop as shared_loop
from shoal.scheduler.instructions import StealRequest

from .conftest import wait_for


def total(x: np.ndarray[Any, Any]) -> float:
    return float(x.sum())


def gated(gate: str, value: int) -> int:
    deadline = time.monotonic() + 120
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{gate} never appeared")
        time.sleep(0.01)
    return value


def test_one_incoming_connection_serves_five_peers() -> None:
    with (
        LocalCluster(
            n_workers=6,
            threads_per_worker=1,
            processes=False,
            worker_kwargs={"total_in_connections": 1, "http_port": None},
            dashboard_address=None,
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        source, *peers = cluster.workers
        [x] = client.scatter([np.ones(2_000_000)], workers=[source.address])
        futures = [client.submit(total, x, workers=[peer.address], pure=False) for peer in peers]
        assert client.gather(futures) == [2_000_000.0] * 5
        holders = client.who_has(futures)
        assert sorted(w for ws in holders.values() for w in ws) == sorted(p.address for p in peers)
        for peer in peers:  # every peer fetched x itself, from the only holder
            arrivals = [r for r in peer.story(x.key) if r[:2] == ("stimulus", "GatherDepSucceeded")]
            assert [r[3] for r in arrivals] == [source.address]
            assert not [t for t in peer.tasks.values() if t.state == "error"]


def test_steal_request_releases_a_constrained_task_and_it_runs_anyway(tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=False,
            resources={"GPU": 1},
            worker_kwargs={"http_port": None},
            dashboard_address=None,
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        [worker] = cluster.workers
        assert worker.state.total_resources == {"GPU": 1}
        holder = client.submit(gated, gate, 1, key="holder", resources={"GPU": 1})
        waiter = client.submit(gated, gate, 2, key="waiter", resources={"GPU": 1})
        wait_for(lambda: _state(worker, "waiter") == "constrained")
        steal = StealRequest(stimulus_id="test-steal", worker=worker.address, key="waiter")

        async def send_steal() -> None:
            cluster.scheduler.route([steal])

        shared_loop.run_sync(send_steal())
        # the worker gives it up and says so; the scheduler places it again
        wait_for(lambda: any(r[1:3] == ("constrained", "released") for r in _story(worker)))
        wait_for(lambda: _state(worker, "waiter") == "constrained")
        Path(gate).touch()
        assert client.gather([holder, waiter]) == [1, 2]
        stimuli = [r[1] for r in worker.story("waiter") if r[0] == "stimulus"]
        assert "StealRequested" in stimuli
        moves = [r[1:3] for r in cluster.scheduler.state.story("waiter")]
        assert ("processing", "waiting") in moves


def _state(worker: Any, key: str) -> str | None:
    task = worker.state.tasks.get(key)
    return None if task is None else str(task.state)


def _story(worker: Any) -> list[Any]:
    return [r for r in worker.story("waiter") if r[0] == "waiter"]
