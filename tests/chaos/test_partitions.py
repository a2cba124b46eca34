"""Chaos: network partitions between namespaces (root only): short, longer than the
worker TTL, one-way, and worker-to-worker while both still reach the scheduler."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.chaos import ledger, netns
from tests.chaos.cluster import ChaosCluster, wait_until
from tests.chaos.conftest import SOAK
from tests.chaos.dag import Dag
from tests.chaos.runner import RunResult, report

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900 if SOAK else 300)]
REASON = netns.available()
TTL = 4.0
#: the issue's long partition (soak tier): the result came 64 s after the heal when peer
#: fetches and rpcs had no deadline; it must come within this many seconds of it
LONG_PARTITION = 150.0
PROMPT_AFTER_HEAL = 20.0


@pytest.fixture
def lab() -> Iterator[netns.NetLab]:
    if REASON:
        pytest.skip(REASON)
    made = netns.NetLab()
    try:
        for host in ("sched", "w0", "w1", "client"):
            made.add_host(host)
        yield made
    finally:
        left = made.close()
        assert not left, f"namespaces left behind: {left}"


@pytest.fixture
def lab_cluster(lab: netns.NetLab, make_cluster: Any) -> ChaosCluster:
    """Scheduler in ``sched``, a node of 2 workers in each of ``w0`` and ``w1``."""
    cluster: ChaosCluster = make_cluster(
        worker_ttl=f"{TTL}s",
        prefix_scheduler=lab.exec_prefix("sched"),
        scheduler_host=lab.hosts["sched"],
    )
    for host in ("w0", "w1"):
        cluster.start_node(2, prefix=lab.exec_prefix(host), host=lab.hosts[host])
    return cluster


def partitioned_run(
    lab: netns.NetLab,
    cluster: ChaosCluster,
    dag: Dag,
    name: str,
    block: tuple[str, list[str], str],
    seconds: float,
) -> dict[str, Any]:
    """Run ``dag`` from the client namespace; once a fifth of it ran, partition for
    ``seconds``, heal; the driver's JSON report."""
    out = cluster.root / f"{name}.json"
    driver = subprocess.Popen(
        [*lab.exec_prefix("client"), sys.executable, "-m", "tests.chaos.driver",
         "--scheduler-file", str(cluster.scheduler_file), "--seed", str(dag.seed),
         "--tasks", str(dag.n_tasks), "--ledger", str(cluster.ledger), "--workers", "4",
         "--out", str(out)],
        cwd=cluster.root, env=cluster._environ(),
    )  # fmt: skip
    try:
        line_bytes = len("chaos-0000\n")
        wait_until(
            lambda: (
                driver.poll() is not None
                or ledger.size(cluster.ledger) > dag.n_tasks * line_bytes / 5
            ),
            120,
            "a fifth of the DAG to run",
        )
        host, peers, direction = block
        lab.block(host, peers, direction)
        try:
            time.sleep(seconds)  # the partition's length: a fault, not a wait for a state
        finally:
            lab.heal(host)
            healed_at = time.time()
        driver.wait(timeout=420)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert out.exists(), f"the driver wrote no report (exit {driver.returncode})\n{cluster.tail()}"
    report_: dict[str, Any] = json.loads(out.read_text())
    assert "error" not in report_, f"{name}: {report_['error']}\n{cluster.tail()}"
    report_["after_heal"] = max(0.0, report_["done_at"] - healed_at)
    result = RunResult(**report_["result"])
    result.scenario = name
    result.faults = {
        "partition": f"{seconds}s {direction} {host}-x-{'+'.join(peers)}",
        "ttl": TTL,
        "result_after_heal": f"{report_['after_heal']:.1f}s",
        "fenced_events": report_["fenced_events"],
    }
    report(result, dag.seed)
    assert result.executions <= 3 * result.n_tasks, result.line(None)
    assert "rejoin_error" not in report_, (
        f"{name}: the cluster did not heal: {report_['rejoin_error']}"
    )
    in_flight = report_["in_flight"]
    assert isinstance(in_flight, dict), f"{name}: workers did not answer: {in_flight}"
    stuck = {w: s["in_flight"] for w, s in in_flight.items() if s["in_flight"]}
    assert not stuck, f"{name}: tasks stuck in flight after the run: {stuck}"
    return report_


def test_short_partition(
    lab: netns.NetLab, lab_cluster: ChaosCluster, small_dag: Dag, baseline: Any
) -> None:
    """Half the TTL: nobody is removed, the run finishes, the answer is right."""
    baseline(small_dag)  # the fault-free wall time the figures compare against
    partitioned_run(
        lab,
        lab_cluster,
        small_dag,
        "partition-short",
        ("w0", ["sched", "w1", "client"], "both"),
        TTL / 2,
    )


def test_partition_longer_than_ttl(
    lab: netns.NetLab, lab_cluster: ChaosCluster, small_dag: Dag, baseline: Any
) -> None:
    """w0 cut off from everyone past the TTL: its work is recomputed on w1, and after the
    heal w0's workers come back (new incarnations) and the cluster has 4 workers again."""
    baseline(small_dag)  # the fault-free wall time the figures compare against
    partitioned_run(
        lab,
        lab_cluster,
        small_dag,
        "partition-ttl",
        ("w0", ["sched", "w1", "client"], "both"),
        TTL * 2.5,
    )


def test_one_way_partition(
    lab: netns.NetLab, lab_cluster: ChaosCluster, small_dag: Dag, baseline: Any
) -> None:
    """w0 hears everyone but nothing it sends gets out, past the TTL."""
    baseline(small_dag)  # the fault-free wall time the figures compare against
    partitioned_run(
        lab,
        lab_cluster,
        small_dag,
        "partition-one-way",
        ("w0", ["sched", "w1", "client"], "out"),
        TTL * 2.5,
    )


def test_worker_to_worker_partition(
    lab: netns.NetLab, lab_cluster: ChaosCluster, small_dag: Dag, baseline: Any
) -> None:
    """w0 and w1 cannot reach each other, both reach the scheduler: fetches between them
    fail or wait, no task stays in flight, the run finishes right."""
    baseline(small_dag)  # the fault-free wall time the figures compare against
    partitioned_run(lab, lab_cluster, small_dag, "partition-w2w", ("w0", ["w1"], "both"), 12.0)


@pytest.mark.skipif(not SOAK, reason="soak tier only (SHOAL_CHAOS_SOAK=1): a 150 s partition")
def test_long_partition_result_comes_promptly_after_heal(
    lab: netns.NetLab, lab_cluster: ChaosCluster, small_dag: Dag, baseline: Any
) -> None:
    """w0 cut off from everyone for 150 s (the issue's table): w0's workers are removed,
    their work recomputed on w1; the result comes during the partition or promptly after
    the heal, and is right (the oracle): nothing w0's old incarnations send counts."""
    baseline(small_dag)  # the fault-free wall time the figures compare against
    report_ = partitioned_run(
        lab,
        lab_cluster,
        small_dag,
        "partition-150s",
        ("w0", ["sched", "w1", "client"], "both"),
        LONG_PARTITION,
    )
    assert report_["after_heal"] <= PROMPT_AFTER_HEAL, (
        f"the result came {report_['after_heal']:.1f}s after the heal"
    )
