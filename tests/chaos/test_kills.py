"""Chaos: the fault-free baseline, a SIGKILL storm on workers (K1), and node loss."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest

from tests.chaos.conftest import SEED, SOAK, connect
from tests.chaos.dag import Dag
from tests.chaos.faults import FaultThread, after, kill_storm
from tests.chaos.runner import figures_on_failure, report, run_dag

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900 if SOAK else 600)]

MIN_KILLS = 60 if SOAK else 20
NODE_LOSSES = 3


def test_fault_free_run_executes_each_task_once(baseline: Any, k1_dag: Dag) -> None:
    """The baseline the other figures compare against; each task runs exactly once."""
    wall = baseline(k1_dag)
    assert wall > 0


def test_k1_sigkill_storm_on_workers(make_cluster: Any, baseline: Any, k1_dag: Dag) -> None:
    """>= 20 SIGKILLs of random worker processes (nannies live) during a ~17k-task DAG on
    4 workers: the answer is right and total executions stay within 3x the task count."""
    fault_free_wall = baseline(k1_dag)
    # 2-5 s between kills (the storm), compressed when the fault-free run is
    # too short for 20 of them at that pace (the storm must hit the DAG >= 20 times), but
    # never below 1-2.5 s: faster, workers die before they finish starting again, which
    # is a different scenario (a restart loop), not a storm a cluster can ride out
    scale = max(0.5, min(1.0, fault_free_wall / (MIN_KILLS * 3.5)))
    interval = (2.0 * scale, 5.0 * scale)
    cluster = make_cluster()
    cluster.start_node(4)
    stats: dict[str, int] = {"kills": 0}
    with connect(cluster, 4) as client:
        storm = FaultThread(kill_storm(cluster, random.Random(SEED), interval, stats))
        with figures_on_failure("K1", cluster.ledger, stats), storm:
            result = run_dag(
                client, k1_dag, cluster.ledger, "K1", timeout=360 if SOAK else 300,
                tick=storm.check,
            )  # fmt: skip
    result.faults = {**stats, "interval": f"{interval[0]:.1f}-{interval[1]:.1f}s"}
    report(result, k1_dag.seed)
    assert stats["kills"] >= MIN_KILLS, (
        f"only {stats['kills']} kills hit the DAG: {result.line(None)}"
    )
    assert result.executions <= 3 * result.n_tasks, result.line(fault_free_wall)


def test_node_loss_three_times(make_cluster: Any, baseline: Any, small_dag: Dag) -> None:
    """A whole node (nanny and worker processes) SIGKILLed 3 times, a fresh node started
    each time: the answer is right, re-executions bounded."""
    fault_free_wall = baseline(small_dag)
    cluster = make_cluster()
    for _ in range(2):
        cluster.start_node(2)
    stats = {"node_losses": 0}
    gap = max(2.0, fault_free_wall / (NODE_LOSSES + 1))

    def lose_nodes(stop: threading.Event) -> None:
        for _ in range(NODE_LOSSES):
            if not after(gap, stop):
                return
            victim = cluster.nodes[stats["node_losses"] % len(cluster.nodes)]
            cluster.kill_node(victim)
            stats["node_losses"] += 1
            cluster.start_node(2)

    with connect(cluster, 4) as client:
        start = time.monotonic()
        with (
            figures_on_failure("node-loss", cluster.ledger, stats),
            FaultThread(lose_nodes) as faults,
        ):
            result = run_dag(
                client, small_dag, cluster.ledger, "node-loss", timeout=300, tick=faults.check
            )
            # the DAG may finish before the last loss: let the losses complete, then
            # check the cluster is whole again (a fresh node replaced each lost one)
            deadline = time.monotonic() + NODE_LOSSES * gap + 30
            while stats["node_losses"] < NODE_LOSSES and time.monotonic() < deadline:
                faults.check()
                time.sleep(0.2)
        faults.check()
        result.faults = {**stats, "elapsed": f"{time.monotonic() - start:.0f}s"}
        report(result, small_dag.seed)
        assert stats["node_losses"] == NODE_LOSSES
        assert result.executions <= 3 * result.n_tasks, result.line(fault_free_wall)
        connect(cluster, 4).close()
