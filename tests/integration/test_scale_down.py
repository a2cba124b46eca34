"""Scaling a cluster down retires all the leaving workers in one ``retire_workers`` call,
and their data moves to the worker that stays: nothing is computed twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shoal import Client, LocalCluster
from shoal.protocol.rpc_scheduler import SchedulerRetireWorkers

from .conftest import wait_for


def recorded(i: int, ledger: str) -> int:
    """``i * 10``, appending the key's number to ``ledger`` (one line per execution)."""
    with open(ledger, "a") as f:
        f.write(f"{i}\n")
    return i * 10


def test_scaling_four_to_one_retires_in_one_call_and_recomputes_nothing(
    tmp_path: Path,
) -> None:
    ledger = str(tmp_path / "ledger")
    with LocalCluster(
        n_workers=4, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster, Client(cluster) as client:  # fmt: skip
        retire_calls: list[Any] = []
        call = cluster.scheduler_call

        async def counting(rpc: Any) -> Any:
            if isinstance(rpc, SchedulerRetireWorkers):
                retire_calls.append(sorted(rpc.workers))
            return await call(rpc)

        cluster.scheduler_call = counting  # type: ignore[method-assign]
        workers = sorted(cluster.scheduler.state.workers)
        futures = [
            client.submit(recorded, i, ledger, workers=[workers[i % 4]], key=f"r-{i}")
            for i in range(16)
        ]
        assert client.gather(futures) == [i * 10 for i in range(16)]
        assert len(Path(ledger).read_text().split()) == 16

        cluster.scale(1)
        wait_for(lambda: len(cluster.scheduler.state.workers) == 1, timeout=60)
        assert len(retire_calls) == 1 and len(retire_calls[0]) == 3
        assert client.gather(futures) == [i * 10 for i in range(16)]
        (kept,) = cluster.scheduler.state.workers
        assert all(client.who_has(futures)[f.key] == (kept,) for f in futures)
        executions = Path(ledger).read_text().split()
        assert sorted(executions, key=int) == [str(i) for i in range(16)], "recomputed"
