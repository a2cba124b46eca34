"""Memory management over real processes: spilling, heartbeats during a spill, pausing.

A worker with ``memory_limit="300MB"`` (target 180 MB of values, spill at 210 MB and pause
at 240 MB of process memory) holds 1.5 GB of NumPy arrays and reduces them.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from shoal import Client
from tests.conftest import wait_until
from tests.integration.conftest import CliCluster, cli_scheduler, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

LIMIT = 300 * 10**6
#: what the process may exceed the limit by: the limit governs values and pausing, and
#: one task result (10 MB) plus a spill file being read back can come on top of it
RSS_MARGIN = LIMIT // 4
ARRAY_BYTES = 10 * 10**6
N_ARRAYS = 150  # 1.5 GB


def make_array(i: int) -> np.ndarray[Any, Any]:
    return np.full(ARRAY_BYTES // 8, float(i))


def total(x: np.ndarray[Any, Any]) -> float:
    return float(x.sum())


def inc(x: int) -> int:
    return x + 1


def where_keys_are() -> dict[str, Any]:
    from shoal import get_worker

    data = get_worker().data
    return {
        "type": type(data).__name__,
        "disk": len(data.disk),  # type: ignore[attr-defined]
        "memory": len(data.memory),  # type: ignore[attr-defined]
        "files": len(os.listdir(data.directory)),  # type: ignore[attr-defined]
    }


_HOG: list[Any] = []


def hog(nbytes: int) -> None:
    """Hold unmanaged memory (not in worker.data) in this process."""
    _HOG.append(np.ones(nbytes // 8))


def free_hog() -> None:
    _HOG.clear()


def paused_here() -> bool:
    from shoal import get_worker

    return bool(get_worker().state.paused)


@pytest.fixture
def memory_cluster(tmp_path: Path) -> Iterator[CliCluster]:
    """``shoal scheduler`` and one ``shoal worker --memory-limit 300MB --nthreads 1``."""
    with cli_scheduler(tmp_path, "memory-test-token") as cluster:
        cluster.start_worker("--nthreads", "1", "--memory-limit", "300MB",
                             "--local-directory", str(tmp_path))  # fmt: skip
        yield cluster


def connect(cluster: CliCluster) -> tuple[Client, str, dict[str, Any]]:
    client = Client(cluster.address, security=cluster.security, set_as_default=False)
    wait_for(lambda: len(client.scheduler_info()["workers"]) == 1)
    address, info = next(iter(client.scheduler_info()["workers"].items()))
    return client, address, info


class PeakRSS:
    """Samples a process's RSS from a thread of the test (the worker is not involved)."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            try:
                rss = self._process.memory_info().rss
            except psutil.NoSuchProcess:  # the test fails on the pid check
                return
            self.peak = max(self.peak, rss)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def heartbeat_gaps(arrivals: list[float], start: float) -> list[float]:
    """Gaps between heartbeat arrivals from ``start`` on, the first counted from ``start``."""
    points = [start, *(t for t in arrivals if t >= start)]
    return [b - a for a, b in itertools.pairwise(points)]


def test_spill_persist_and_reduce_1_5_gb_under_a_300mb_limit(
    memory_cluster: CliCluster,
) -> None:
    client, address, info = connect(memory_cluster)
    with client:
        pid = info["pid"]
        assert info["memory_limit"] == LIMIT
        sampler = PeakRSS(pid)
        try:
            start = time.monotonic()  # CLOCK_MONOTONIC: the scheduler's clock too
            arrays = client.map(make_array, range(N_ARRAYS), pure=False)
            wait_for(lambda: all(f.done() for f in arrays), timeout=240)
            # spilled_bytes comes with heartbeats (every 0.5 s) and counts what the spill
            # writer, which may lag a little behind the tasks, has finished writing
            spilled: dict[str, Any] = {}

            def reported_1_gb() -> bool:
                spilled.update(client.scheduler_info()["workers"][address]["metrics"])
                return bool(spilled["spilled_bytes"] >= 10**9)

            wait_until(reported_1_gb, 20, "a heartbeat reporting 1 GB spilled")
            held = client.run(where_keys_are)[address]
            # a peer (here the client) is served spilled values, read back from disk
            first = client.gather(arrays[:3])
            sums = client.map(total, arrays, pure=False)
            result = client.submit(sum, sums).result()
            stop = time.monotonic()
        finally:
            peak = sampler.stop()
        after = client.scheduler_info()["workers"][address]

    expected = float(sum(range(N_ARRAYS))) * (ARRAY_BYTES // 8)
    assert result == expected
    assert [a[0] for a in first] == [0.0, 1.0, 2.0]
    assert held["type"] == "SpillBuffer" and held["disk"] >= 100 and held["files"] >= 100
    assert after["pid"] == pid and psutil.Process(pid).is_running()  # never restarted
    print(f"\npeak RSS {peak / 1e6:.0f} MB (limit {LIMIT / 1e6:.0f} MB)")
    assert peak < LIMIT + RSS_MARGIN
    arrivals = after["heartbeats"]
    assert len(arrivals) < 1024  # the bounded record dropped nothing of this run
    assert arrivals[-1] >= stop - 1.0
    gaps = heartbeat_gaps(arrivals, start)
    print(f"heartbeats during the spill: {len(gaps)} gaps, longest {max(gaps):.3f}s")
    assert len(gaps) >= 2 and max(gaps) <= 1.0


def test_spill_files_go_when_keys_are_freed(memory_cluster: CliCluster) -> None:
    client, address, _ = connect(memory_cluster)
    with client:
        arrays = client.map(make_array, range(40), pure=False)  # 400 MB: more than fits
        wait_for(lambda: all(f.done() for f in arrays), timeout=120)
        assert client.run(where_keys_are)[address]["disk"] > 0
        arrays.clear()
        wait_for(lambda: client.run(where_keys_are)[address]["files"] == 0)
        assert client.run(where_keys_are)[address]["memory"] == 0


def test_a_worker_past_the_pause_fraction_stops_and_resumes(memory_cluster: CliCluster) -> None:
    client, address, _ = connect(memory_cluster)
    with client:
        assert client.submit(inc, 0).result() == 1
        client.run(hog, 260 * 10**6)  # process memory well past 240 MB, none of it spillable

        def status() -> tuple[str, bool]:
            worker = client.scheduler_info()["workers"][address]
            return worker["status"], bool(worker["metrics"].get("paused"))

        wait_for(lambda: status() == ("paused", True))
        assert client.run(paused_here)[address]
        future = client.submit(inc, 41)
        waiting = ("queued", "no-worker")
        wait_for(lambda: any(client.scheduler_info()["tasks"].get(s) for s in waiting))
        assert not future.done() and client.run(paused_here)[address]
        client.run(free_hog)
        assert future.result(timeout=60) == 42
        wait_for(lambda: status() == ("running", False))
