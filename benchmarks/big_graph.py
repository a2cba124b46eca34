"""How a 100,000-task dask graph is accepted: client time, and the scheduler loop's worst stall.

Usage: python benchmarks/big_graph.py [--tasks 100000] [--batch 2000]

The scheduler runs in this process (``LocalCluster(processes=True)``: workers are
separate processes) on the shared loop. A probe on that loop wakes every 10 ms and
records how late it woke: the longest stall is the longest time the scheduler (and
this client, which shares the loop) could not answer anyone. The graph is a tree sum
over a third as many chunks as tasks.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import threading
import time
from collections.abc import Callable
from typing import Any


async def probe(stop: asyncio.Event, stalls: list[tuple[float, float]]) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        start = loop.time()
        await asyncio.sleep(0.01)
        stalls.append((time.perf_counter(), loop.time() - start - 0.01))


def collections_timer(
    pauses: list[tuple[float, str]],
) -> Callable[[str, dict[str, int]], None]:
    """A ``gc.callbacks`` entry that records how long each full (generation 2) collection took."""
    started = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append((time.perf_counter() - started[0], threading.current_thread().name))

    return callback


def wait_until_known(client: Any, key: Any) -> float:
    """When the scheduler first reports the key (all batches are in by then)."""
    while not client.story(key):
        time.sleep(0.05)
    return time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=0, help="tasks per update-graph (0: default)")
    args = parser.parse_args()

    import dask.array as da

    import shoal
    from shoal import loop as shared_loop
    from shoal.client import graph_submit

    if args.batch:
        graph_submit.MAX_TASKS_PER_MESSAGE = args.batch
    chunks = args.tasks // 3  # a chunk, its partial sum, and a node of the tree each
    x = da.ones(chunks * 4, chunks=4).sum(split_every=2)
    with (
        shoal.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        shoal.Client(cluster, set_as_default=False) as client,
    ):
        loop = shared_loop.get_loop()
        stop = asyncio.Event()
        stalls: list[tuple[float, float]] = []
        pauses: list[tuple[float, str]] = []
        gc.callbacks.append(collections_timer(pauses))
        watcher = asyncio.run_coroutine_threadsafe(probe(stop, stalls), loop)
        start = time.perf_counter()
        future = client.compute(x, optimize_graph=False)
        submitted = time.perf_counter() - start
        known = wait_until_known(client, future.key)
        assert future.result() == chunks * 4
        total = time.perf_counter() - start
        loop.call_soon_threadsafe(stop.set)
        watcher.result()
    ntasks = len(x.__dask_graph__())
    print(f"tasks: {ntasks}, tasks per message: {graph_submit.MAX_TASKS_PER_MESSAGE}")
    print(f"client.compute returned after {submitted:.2f}s; result after {total:.2f}s")
    while_sent = [s for t, s in stalls if start <= t <= known]
    print(f"the scheduler knew the output {known - start:.2f}s after compute() was called")
    print(f"worst loop stall while the graph was sent: {max(while_sent) * 1000:.0f} ms")
    print(f"worst loop stall overall: {max(s for _, s in stalls) * 1000:.0f} ms")
    longest = max(pauses, default=(0.0, "-"))
    print(
        f"full garbage collections: {len(pauses)}, longest {longest[0] * 1000:.0f} ms "
        f"(in thread {longest[1]})"
    )


if __name__ == "__main__":
    main()
