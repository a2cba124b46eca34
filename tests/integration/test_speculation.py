"""Speculative assignment in a real cluster: a chain's next task is on its input's worker
before the input is done, and a worker killed mid-chain loses nothing."""

from __future__ import annotations

import itertools
import os
import signal
import time
from pathlib import Path
from typing import Any

import dask
import pytest

from shoal import Client, LocalCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def inc(x: int) -> int:
    return x + 1


def slow_inc(x: int) -> int:
    time.sleep(0.05)
    return x + 1


def gated(path: str) -> int:
    """0 once ``path`` exists (at most 30 s), so the chain after it is all submitted first."""
    deadline = time.monotonic() + 30
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.005)
    return 0


def chain(client: Client, n: int, func: Any = inc, first: Any = None) -> list[Any]:
    futures = [first if first is not None else client.submit(func, 0, pure=False)]
    for _ in range(n - 1):
        futures.append(client.submit(func, futures[-1], pure=False))
    return futures


def sent_ahead(client: Client, futures: list[Any]) -> int:
    """How many tasks the scheduler sent to a worker before their input was in memory:
    their move to processing came from another stimulus than their input's result."""
    count = 0
    for before, after in itertools.pairwise(futures):
        entries = [e for e in client.story(before.key, after.key) if e[-1] == "scheduler"]
        done = [e[3] for e in entries if e[0] == before.key and e[2] == "memory"]
        sent = [e[3] for e in entries if e[0] == after.key and e[2] == "processing"]
        count += bool(done and sent and sent[0] != done[0])
    return count


@pytest.mark.parametrize("depth", [0, 1])
def test_a_chain_is_sent_ahead_only_when_speculation_is_on(depth: int, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with (
        dask.config.set({"shoal.scheduler.speculation-depth": depth}),
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        # the whole chain is known before its first task ends: how fast this test submits
        # does not decide what goes ahead
        futures = chain(client, 60, first=client.submit(gated, str(gate), pure=False))
        gate.touch()
        assert futures[-1].result(timeout=60) == 59
        ahead = sent_ahead(client, futures)
    if depth:
        # a link is not sent ahead when its input's and its own result reach the scheduler
        # in one batch; nearly all are
        assert ahead >= 50, ahead
    else:
        assert ahead == 0


def test_a_worker_killed_mid_chain_loses_nothing() -> None:
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        futures = chain(client, 40, slow_inc)
        deadline = time.monotonic() + 60
        while futures[10].status != "finished" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert futures[10].status == "finished"
        holder = client.who_has(futures[10])[futures[10].key][0]
        (pid,) = client.run(os.getpid, workers=[holder]).values()
        os.kill(pid, signal.SIGKILL)  # its nanny starts a new one; the chain moves on
        assert futures[-1].result(timeout=120) == 40
