"""Spilling to disk: shoal beside dask.distributed, same workload, same machine, one run.

Usage: python benchmarks/spill.py [--arrays 300] [--array-mb 10] [--limit 1GiB]

Each system gets a local cluster of 1 worker process x 1 thread with ``memory_limit=1GiB``
(default fractions: target 0.6, spill 0.7, pause 0.8). The workload makes 300 arrays of
10 MB (3 GB of results, kept as futures), waits for all, then reduces them (a sum per array,
then a sum of those). Printed per system: the time of each phase, the worker's peak RSS
(sampled from outside every 5 ms), whether the worker process survived, and for shoal the
longest gap between heartbeats at the scheduler. The last column is dask / shoal: above 1
means shoal is faster.

``floor`` is the same bytes without a distributed system, in one fresh process with the
workers' ``MALLOC_TRIM_THRESHOLD_``: make each array, write it to a file, then read each
back into a ``bytearray`` and sum it. ``--no-dask`` runs shoal and the floor only.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import psutil


def make_array(i: int, nbytes: int) -> Any:
    import numpy as np

    return np.full(nbytes // 8, float(i))


def total(x: Any) -> float:
    return float(x.sum())


@dataclass
class Result:
    persist: float
    reduce: float
    peak_rss: int
    same_pid: bool
    longest_heartbeat_gap: float | None

    @property
    def total(self) -> float:
        return self.persist + self.reduce


class PeakRSS:
    """Samples one process's RSS from a thread of this process."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            try:
                self.peak = max(self.peak, self._process.memory_info().rss)
            except psutil.NoSuchProcess:
                return

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def workload(client: Any, wait: Any, n: int, nbytes: int) -> Result:
    address, info = next(iter(client.scheduler_info()["workers"].items()))
    pid = info.get("pid") or client.run(lambda: __import__("os").getpid())[address]
    sampler = PeakRSS(pid)
    start = time.perf_counter()
    arrays = client.map(make_array, range(n), nbytes=nbytes, pure=False)
    wait(arrays)
    persisted = time.perf_counter()
    result = client.submit(sum, client.map(total, arrays, pure=False)).result()
    done = time.perf_counter()
    peak = sampler.stop()
    assert result == float(sum(range(n))) * (nbytes // 8), result
    now_pid = client.run(lambda: __import__("os").getpid()).get(address)
    return Result(
        persist=persisted - start,
        reduce=done - persisted,
        peak_rss=peak,
        same_pid=now_pid == pid,
        longest_heartbeat_gap=_longest_gap(client, address),
    )


def _longest_gap(client: Any, address: str) -> float | None:
    arrivals = client.scheduler_info()["workers"].get(address, {}).get("heartbeats")
    if not arrivals or len(arrivals) < 2:
        return None
    return max(b - a for a, b in itertools.pairwise(arrivals))


def run_shoal(n: int, nbytes: int, limit: str) -> Result:
    import shoal

    with (
        shoal.LocalCluster(
            n_workers=1, threads_per_worker=1, memory_limit=limit, dashboard_address=None
        ) as cluster,
        shoal.Client(cluster, set_as_default=False) as client,
    ):
        client.submit(total, make_array(0, 8)).result()  # warm-up: imports, connections
        return workload(client, shoal.wait, n, nbytes)


def run_dask(n: int, nbytes: int, limit: str) -> Result:
    import distributed

    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, memory_limit=limit, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,  # its wait() needs a default client
    ):
        client.submit(total, make_array(0, 8)).result()
        return workload(client, distributed.wait, n, nbytes)


def floor_in_process(n: int, nbytes: int) -> tuple[float, float]:
    """(write, read back and sum) seconds for ``n`` arrays through plain files."""
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="shoal-spill-floor-") as folder:
        start = time.perf_counter()
        for i in range(n):
            with open(os.path.join(folder, str(i)), "wb") as f:
                f.write(make_array(i, nbytes).data)
        written = time.perf_counter()
        grand = 0.0
        for i in range(n):
            with open(os.path.join(folder, str(i)), "rb") as f:
                data = bytearray(os.fstat(f.fileno()).st_size)
                f.readinto(data)
            grand += float(np.frombuffer(data).sum())
        done = time.perf_counter()
    assert grand == float(sum(range(n))) * (nbytes // 8), grand
    return written - start, done - written


def run_floor(n: int, nbytes: int) -> Result:
    # the floor's process gives freed memory back as eagerly as both systems' workers
    os.environ["MALLOC_TRIM_THRESHOLD_"] = "65536"
    try:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            write, read = pool.submit(floor_in_process, n, nbytes).result()
    finally:
        del os.environ["MALLOC_TRIM_THRESHOLD_"]
    return Result(persist=write, reduce=read, peak_rss=0, same_pid=True, longest_heartbeat_gap=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arrays", type=int, default=300)
    parser.add_argument("--array-mb", type=float, default=10)
    parser.add_argument("--limit", default="1GiB")
    parser.add_argument("--no-dask", action="store_true", help="shoal and the floor only")
    args = parser.parse_args()
    nbytes = int(args.array_mb * 10**6)
    results = {"shoal": run_shoal(args.arrays, nbytes, args.limit)}
    if not args.no_dask:
        results["dask"] = run_dask(args.arrays, nbytes, args.limit)
    results["floor"] = run_floor(args.arrays, nbytes)
    gb = args.arrays * nbytes / 1e9
    print(f"spill: {args.arrays} x {args.array_mb:g} MB = {gb:.1f} GB, limit {args.limit}")
    print(f"{'':<8}{'persist':>10}{'reduce':>10}{'total':>10}{'peak RSS':>11}{'same pid':>10}"
          f"{'max hb gap':>12}")  # fmt: skip
    for name, r in results.items():
        gap = "-" if r.longest_heartbeat_gap is None else f"{r.longest_heartbeat_gap:.2f}s"
        rss = f"{r.peak_rss / 2**20:>7.0f} MiB" if r.peak_rss else f"{'-':>11}"
        print(f"{name:<8}{r.persist:>9.2f}s{r.reduce:>9.2f}s{r.total:>9.2f}s"
              f"{rss}{r.same_pid!s:>10}{gap:>12}")  # fmt: skip
    s, f = results["shoal"], results["floor"]
    if "dask" in results:
        d = results["dask"]
        print(f"dask/shoal: persist {d.persist / s.persist:.2f}x, "
              f"reduce {d.reduce / s.reduce:.2f}x, total {d.total / s.total:.2f}x")  # fmt: skip
    print(f"shoal/floor: persist {s.persist / f.persist:.2f}x, reduce {s.reduce / f.reduce:.2f}x, "
          f"total {s.total / f.total:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
