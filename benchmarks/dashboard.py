"""Map throughput with the dashboard's live feed open, against without.

Usage: python benchmarks/dashboard.py [--repeat 5] [--tasks 10000] [--viewers 3]

A LocalCluster of 2 worker processes x 1 thread runs a map of no-op tasks, ``repeat``
times each way, alternating: with nobody watching, and with ``viewers`` open live streams
(``/api/v1/stream``, read by a separate process, as a browser tab would). Reports the
best and median tasks/s each way, and the snapshots the scheduler computed meanwhile.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from typing import Any

from shoal import Client, LocalCluster

VIEWER = """
import http.client, sys
from urllib.parse import urlsplit
where = urlsplit(sys.argv[1])
conns = []
for _ in range(int(sys.argv[3])):
    conn = http.client.HTTPConnection(where.hostname, where.port)
    conn.request("GET", "/api/v1/stream", headers={"Authorization": "Bearer " + sys.argv[2]})
    conns.append(conn.getresponse())
print("open", flush=True)
while True:
    for response in conns:
        response.readline()
"""


def noop(x: Any) -> Any:
    return x


def run_map(client: Client, n: int) -> float:
    start = time.perf_counter()
    client.gather(client.map(noop, range(n), pure=False))
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--viewers", type=int, default=3)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"no page": [], "page open": []}
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
        Client(cluster) as client,
    ):
        run_map(client, args.tasks)  # warm-up
        assert cluster.dashboard_link is not None and cluster.security.token is not None
        http = cluster.scheduler.http
        feed = http.app[_feed_key()] if http is not None and http.app is not None else None
        computed = 0
        for _ in range(args.repeat):
            rates["no page"].append(run_map(client, args.tasks))
            viewer = subprocess.Popen(
                [sys.executable, "-c", VIEWER, cluster.dashboard_link,
                 cluster.security.token, str(args.viewers)],
                stdout=subprocess.PIPE,
            )  # fmt: skip
            assert viewer.stdout is not None and viewer.stdout.readline() == b"open\n"
            before = feed.n_computed if feed else 0
            rates["page open"].append(run_map(client, args.tasks))
            computed += (feed.n_computed if feed else 0) - before
            viewer.terminate()
            viewer.wait()
    print(
        f"map of {args.tasks:,} no-op tasks, 2 worker processes x 1 thread, best of "
        f"{args.repeat}; page open = {args.viewers} live streams in another process"
    )
    for name, values in rates.items():
        print(
            f"  {name:10s} best {max(values):8,.0f} tasks/s   median "
            f"{statistics.median(values):8,.0f} tasks/s"
        )
    ratio = statistics.median(rates["page open"]) / statistics.median(rates["no page"])
    print(
        f"  page open / no page (medians): {ratio:.3f}; snapshots computed while open: {computed}"
    )


def _feed_key() -> Any:
    from shoal.http.apps import FEED

    return FEED


if __name__ == "__main__":
    main()
