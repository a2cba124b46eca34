"""Chaos: a worker frozen by SIGSTOP, briefly and past the scheduler's worker TTL."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.chaos import ledger
from tests.chaos.cluster import ChaosCluster, wait_until
from tests.chaos.conftest import SOAK, connect
from tests.chaos.dag import Dag
from tests.chaos.faults import FaultThread, frozen
from tests.chaos.runner import figures_on_failure, report, run_dag

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900 if SOAK else 300)]
TTL = 4.0


def freeze_once(
    cluster: ChaosCluster, client: Any, dag: Dag, seconds: float, stats: dict[str, Any]
) -> Any:
    """Once a fifth of the DAG ran, SIGSTOP one worker process for ``seconds``; records
    whether the scheduler dropped it meanwhile."""
    line_bytes = len("chaos-0000\n")

    def action(stop: threading.Event) -> None:
        wait_until(
            lambda: stop.is_set() or ledger.size(cluster.ledger) > dag.n_tasks * line_bytes / 5,
            120,
            "a fifth of the DAG to run",
        )
        if stop.is_set():
            return
        pids = cluster.worker_pids()
        victim = sorted(pids)[0]
        before = client.scheduler_info()["workers"]
        stats["victim"] = next((a for a, w in before.items() if w["pid"] == victim), None)
        with frozen(cluster, victim):
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                workers = client.scheduler_info()["workers"]
                if stats["victim"] not in workers:
                    stats["removed"] = True
                time.sleep(0.2)
        stats["frozen_s"] = seconds

    return action


def test_short_freeze_needs_no_recomputation(
    make_cluster: Any, baseline: Any, small_dag: Dag
) -> None:
    """SIGSTOP 2 s, well within the TTL: the worker keeps its place and its data; every
    task runs exactly once."""
    baseline(small_dag)
    cluster = make_cluster(worker_ttl="30s")
    cluster.start_node(4)
    stats: dict[str, Any] = {"removed": False}
    with connect(cluster, 4) as client:
        with (
            figures_on_failure("freeze-2s", cluster.ledger, stats),
            FaultThread(freeze_once(cluster, client, small_dag, 2.0, stats)) as fault,
        ):
            result = run_dag(
                client, small_dag, cluster.ledger, "freeze-2s", timeout=300, tick=fault.check
            )
        fault.check()
        result.faults = stats
        report(result, small_dag.seed)
        assert "frozen_s" in stats, "the DAG finished before the freeze"
        assert not stats["removed"], "a 2 s freeze removed the worker"
        assert result.executions == result.n_tasks, result.line(None)


def test_freeze_past_ttl_rejoins_as_new_incarnation(
    make_cluster: Any, baseline: Any, small_dag: Dag
) -> None:
    """SIGSTOP past the TTL: the scheduler removes the worker and recomputes its data;
    after SIGCONT the same process comes back and rejoins, so 4 workers serve again."""
    baseline(small_dag)
    cluster = make_cluster(worker_ttl=f"{TTL}s")
    cluster.start_node(4)
    stats: dict[str, Any] = {"removed": False}
    with connect(cluster, 4) as client:
        with (
            figures_on_failure("freeze-ttl", cluster.ledger, stats),
            FaultThread(freeze_once(cluster, client, small_dag, TTL * 2.5, stats)) as fault,
        ):
            result = run_dag(
                client, small_dag, cluster.ledger, "freeze-ttl", timeout=300, tick=fault.check
            )
        fault.check()
        result.faults = stats
        report(result, small_dag.seed)
        assert "frozen_s" in stats, "the DAG finished before the freeze ended"
        assert stats["removed"], f"a {TTL * 2.5}s freeze did not remove the worker (TTL {TTL}s)"
        assert result.executions <= 3 * result.n_tasks, result.line(None)
        wait_until(
            lambda: len(client.scheduler_info()["workers"]) == 4,
            60,
            f"the frozen worker to rejoin: {sorted(client.scheduler_info()['workers'])}",
        )
