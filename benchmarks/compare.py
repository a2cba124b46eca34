"""shoal beside dask.distributed, same workloads, same machine, one run.

Usage: python benchmarks/compare.py [--repeat 3] [--million 1000000]
       [--only map,chain,tree,transfer,tcp,reuse,roundtrip,small,array,shuffle]

``transfer`` is shoal's default (same-host shared memory); ``tcp`` is the same move with
shared memory off. ``--million N`` adds shoal-only N-task runs (bulk.py).

Each system gets its own local cluster of 2 worker processes x 1 thread. Each workload
runs ``repeat`` times after one warm-up; the best time counts. ``floor`` is the same work
done without a distributed system, measured in the same run (``floors.py``: a process
pool for tasks, a raw loopback socket for bytes). The ratio columns are times:
shoal/dask below 1 means shoal is faster; shoal/floor is how far from the floor it is.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from typing import Any

from bulk import TCP_ROW, bulk_times, million_rows
from floors import measure_floors


def noop(x: Any) -> Any:
    return x


def inc(x: int) -> int:
    return x + 1


def add(a: int, b: int) -> int:
    return a + b


def make_array(nbytes: int) -> Any:
    import numpy as np

    return np.ones(nbytes // 8)


def array_nbytes(x: Any) -> int:
    return int(x.nbytes)


def workload_map(client: Any) -> None:
    futures = client.map(noop, range(10_000), pure=False)
    client.gather(futures)


def workload_chain(client: Any) -> None:
    future = client.submit(inc, 0, pure=False)
    for _ in range(999):
        future = client.submit(inc, future, pure=False)
    assert future.result() == 1000


def workload_tree(client: Any) -> None:
    layer = client.map(inc, range(8192), pure=False)
    while len(layer) > 1:
        layer = [
            client.submit(add, a, b, pure=False)
            for a, b in zip(layer[::2], layer[1::2], strict=True)
        ]
    assert layer[0].result() == sum(range(1, 8193))


def workload_transfer(client: Any) -> None:
    workers = sorted(client.scheduler_info()["workers"])
    nbytes = 200 * 2**20
    source = client.submit(make_array, nbytes, workers=[workers[0]], pure=False)
    client.gather(source)  # the array exists on worker A before timing the move
    start = time.perf_counter()
    moved = client.submit(array_nbytes, source, workers=[workers[1]], pure=False)
    assert moved.result() == nbytes
    workload_transfer.elapsed = time.perf_counter() - start  # type: ignore[attr-defined]


def workload_reuse(client: Any) -> None:
    """40 MB held by worker A; 20 tasks in a row on worker B, each using it."""
    workers = sorted(client.scheduler_info()["workers"])
    source = client.submit(make_array, 40 * 2**20, workers=[workers[0]], pure=False)
    client.gather(source)
    start = time.perf_counter()
    for _ in range(20):
        client.submit(array_nbytes, source, workers=[workers[1]], pure=False).result()
    workload_reuse.elapsed = time.perf_counter() - start  # type: ignore[attr-defined]


def workload_roundtrip(client: Any) -> None:
    """One ``submit(f, x).result()``: the best of 50 in a row."""
    best = float("inf")
    for i in range(50):
        start = time.perf_counter()
        client.submit(inc, i, pure=False).result()
        best = min(best, time.perf_counter() - start)
    workload_roundtrip.elapsed = best  # type: ignore[attr-defined]


def workload_small_array(client: Any) -> None:
    """A 13-task dask.array ``compute``: the best of 20 in a row."""
    from floors import small_array

    best = float("inf")
    for _ in range(20):
        start = time.perf_counter()
        assert client.compute(small_array()).result() == 32
        best = min(best, time.perf_counter() - start)
    workload_small_array.elapsed = best  # type: ignore[attr-defined]


def frame_partition(i: int) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(i)
    return pd.DataFrame({"key": rng.random(100_000), "value": rng.integers(0, 1000, 100_000)})


def workload_array_sum(client: Any) -> None:
    import dask.array as da

    x = da.random.default_rng(0).random((8000, 8000), chunks=(500, 500))
    total = client.compute((x + x.T).mean(axis=0).sum()).result()
    assert 7900 < total < 8100


def workload_shuffle(client: Any) -> None:
    import dask
    import dask.dataframe as dd

    # both systems shuffle by tasks; the divisions pass runs on the cluster too
    with dask.config.set({"scheduler": client.get, "dataframe.shuffle.method": "tasks"}):
        df = dd.from_map(frame_partition, range(40))
        lengths = client.compute(df.set_index("key").map_partitions(len).sum()).result()
    assert lengths == 4_000_000


WORKLOADS: dict[str, Callable[[Any], None]] = {
    "map 10,000 no-op": workload_map,
    "chain 1,000": workload_chain,
    "tree 8,192 leaves": workload_tree,
    "200 MB peer transfer": workload_transfer,
    TCP_ROW: workload_transfer,  # shoal runs it with shared memory off (bulk.py)
    "reuse 40 MB x 20": workload_reuse,
    "submit().result()": workload_roundtrip,
    "13-task dask.array": workload_small_array,
    "array (x + x.T) 8000^2": workload_array_sum,
    "set_index 40 x 100,000": workload_shuffle,
}
SHORT = {
    "map": "map 10,000 no-op",
    "chain": "chain 1,000",
    "tree": "tree 8,192 leaves",
    "transfer": "200 MB peer transfer",
    "tcp": TCP_ROW,
    "reuse": "reuse 40 MB x 20",
    "roundtrip": "submit().result()",
    "small": "13-task dask.array",
    "array": "array (x + x.T) 8000^2",
    "shuffle": "set_index 40 x 100,000",
}


def measure(client: Any, workload: Callable[[Any], None], repeat: int) -> float:
    workload(client)  # warm-up: imports, function caches, connections
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        workload(client)
        elapsed = time.perf_counter() - start
        elapsed = getattr(workload, "elapsed", elapsed)  # a workload that times itself
        best = min(best, elapsed)
    return best


def run_shoal(names: list[str], repeat: int) -> dict[str, float]:
    import shoal

    with (
        shoal.LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
        shoal.Client(cluster, set_as_default=False) as client,
    ):
        return {name: measure(client, WORKLOADS[name], repeat) for name in names if name != TCP_ROW}


def run_dask(names: list[str], repeat: int) -> dict[str, float]:
    import distributed

    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        return {name: measure(client, WORKLOADS[name], repeat) for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="", help="comma list of: " + ",".join(SHORT))
    parser.add_argument("--no-dask", action="store_true", help="shoal and floors only")
    parser.add_argument("--million", type=int, default=0, metavar="N", help="then N-task runs")
    args = parser.parse_args()
    names = [SHORT[n] for n in args.only.split(",") if n] or list(WORKLOADS)
    shoal_times = run_shoal(names, args.repeat)
    dask_times = run_dask(names, args.repeat) if not args.no_dask else {}
    floor_times = measure_floors(names, args.repeat)
    extra_shoal, extra_floor = bulk_times(names, args.repeat, WORKLOADS[TCP_ROW], measure)
    shoal_times.update(extra_shoal)
    floor_times.update(extra_floor)
    head = ("workload", "shoal", "dask", "floor", "shoal/dask", "shoal/floor")
    print(f"{head[0]:<24}" + "".join(f"{h:>12}" for h in head[1:]))
    for name in names:
        s, d, f = shoal_times[name], dask_times.get(name), floor_times.get(name)
        cells = [_ms(s), _ms(d), _ms(f), _ratio(s, d), _ratio(s, f)]
        print(f"{name:<24}" + "".join(f"{c:>12}" for c in cells))
    for line in million_rows(args.million) if args.million else ():
        print(line)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f}ms"


def _ratio(a: float, b: float | None) -> str:
    return "-" if not b else f"{a / b:.2f}"


if __name__ == "__main__":
    main()
