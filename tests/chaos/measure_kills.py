"""Measure what a SIGKILL costs: extra executions per kill on a seeded DAG (issue 12).

Not a test (pytest does not collect it): a script for the figures in reports, run as
``python -m tests.chaos.measure_kills --tasks 8000 --interval 2 5`` (needs nothing but
loopback). It prints one ``CHAOS`` line and ``extra_per_kill``: executions beyond the
task count, divided by the kills that hit the run.

Rules of this file: the cluster is a ``ChaosCluster`` in a temporary folder, closed (and
checked for leftovers) at the end; every wait has a deadline.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

from tests.chaos import ledger
from tests.chaos.cluster import ChaosCluster
from tests.chaos.conftest import connect
from tests.chaos.dag import Dag, key_of, random_dag
from tests.chaos.faults import FaultThread, kill_storm
from tests.chaos.runner import run_dag


def print_where(dag: Dag, ledger_dir: Path) -> None:
    """Extra executions by layer of the DAG (a cascade to the roots shows in layer 0),
    sinks (wanted by the client) apart."""
    counts = ledger.executions(ledger_dir)
    sinks = set(dag.sinks())
    by_layer: dict[int, list[int]] = {}
    for i in range(dag.n_tasks):
        key = key_of(i)
        row = by_layer.setdefault(i // 400, [0, 0])
        row[key in sinks] += counts[key] - 1
    print("extra by layer (non-sinks, sinks):", by_layer, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--interval", type=float, nargs=2, default=(2.0, 5.0))
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    dag = random_dag(args.seed, args.tasks)
    with tempfile.TemporaryDirectory(prefix="shoal-kills-") as tmp:
        cluster = ChaosCluster(Path(tmp) / "c")
        try:
            cluster.start_scheduler()
            cluster.start_node(4)
            stats: dict[str, int] = {"kills": 0}
            with connect(cluster, 4) as client:
                storm = FaultThread(
                    kill_storm(cluster, random.Random(args.seed), tuple(args.interval), stats)
                )
                with storm:
                    result = run_dag(
                        client, dag, cluster.ledger, "kills", args.timeout, tick=storm.check
                    )
            result.faults = dict(stats)
            print(result.line(None))
            extra = result.executions - result.n_tasks
            print(f"extra_per_kill={extra / max(stats['kills'], 1):.0f}", flush=True)
            print_where(dag, cluster.ledger)
        finally:
            left = cluster.close()
            assert left == {"processes": [], "folders": []}, f"left behind: {left}"


if __name__ == "__main__":
    main()
