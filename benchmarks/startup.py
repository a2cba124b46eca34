"""The startup row of compare.py: a fresh 2-worker local cluster plus a client, timed.

Rules of this file:

* Usage: python benchmarks/startup.py [--repeat 3] [--no-dask]
* Each sample starts a new cluster (processes, 2 workers x 1 thread) and a client, and
  stops timing once the client sees both workers; closing is not timed.
* The floor is a ``ProcessPoolExecutor`` of 2 fresh interpreters (spawn) each running
  one no-op: what starting two Python processes costs on this machine.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

NAME = "Client() + 2 workers"


def noop(x: Any) -> Any:
    return x


def shoal_startup() -> float:
    import shoal

    start = time.perf_counter()
    cluster = shoal.LocalCluster(n_workers=2, threads_per_worker=1, processes=True)
    client = shoal.Client(cluster, set_as_default=False)
    client.wait_for_workers(2)
    elapsed = time.perf_counter() - start
    client.close()
    cluster.close()
    return elapsed


def dask_startup() -> float:
    import distributed

    start = time.perf_counter()
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = distributed.Client(cluster, set_as_default=False)
    client.wait_for_workers(2)
    elapsed = time.perf_counter() - start
    client.close()
    cluster.close()
    return elapsed


def floor_startup() -> float:
    start = time.perf_counter()
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(noop, range(2)))
        return time.perf_counter() - start


def best_of(sample: Callable[[], float], repeat: int) -> float:
    sample()  # warm-up: the first start pays for cold imports and disk caches
    return min(sample() for _ in range(repeat))


def measure_startup(repeat: int, with_dask: bool) -> tuple[float, float | None, float]:
    """Best seconds for (shoal, dask or None, floor)."""
    shoal_s = best_of(shoal_startup, repeat)
    dask_s = best_of(dask_startup, repeat) if with_dask else None
    return shoal_s, dask_s, best_of(floor_startup, repeat)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-dask", action="store_true", help="shoal and the floor only")
    args = parser.parse_args()
    shoal_s, dask_s, floor_s = measure_startup(args.repeat, with_dask=not args.no_dask)
    dask_text = "-" if dask_s is None else f"{dask_s:.3f}s"
    print(f"{NAME}: shoal {shoal_s:.3f}s  dask {dask_text}  floor {floor_s:.3f}s")


if __name__ == "__main__":
    main()
