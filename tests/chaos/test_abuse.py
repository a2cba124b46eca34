"""Chaos: live protocol abuse on the scheduler, worker and dashboard ports while a
client runs 1,000 tasks (random bytes, length lies, a pickle canary, slowloris, 1,100
idle connections per port). Loopback only; every peer is bounded in count and time."""

from __future__ import annotations

import random
import threading
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.chaos import abuse
from tests.chaos.conftest import SEED, SOAK, connect
from tests.chaos.dag import random_dag
from tests.chaos.faults import FaultThread
from tests.chaos.runner import figures_on_failure, report, run_dag

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900 if SOAK else 300)]
IDLE = 1_100


def port_of(address: str) -> int:
    port = urlsplit(address).port
    assert port is not None, address
    return port


def hostile(ports: dict[str, int], canary: str, rng: random.Random, stats: dict[str, int]) -> Any:
    """Rounds of abuse on every port until stopped (bounded: a few rounds)."""

    def action(stop: threading.Event) -> None:
        for _ in range(20 if SOAK else 3):
            for name, port in ports.items():
                http = name == "dashboard"
                payloads = (
                    abuse.http_payloads(canary)
                    if http
                    else abuse.canary_payloads(canary) + abuse.length_lies()
                )
                for payload in payloads:
                    if stop.is_set():
                        return
                    abuse.send_and_close(port, payload)
                    stats["payloads"] += 1
                stats["payloads"] += abuse.random_bytes(port, rng, 20, stop)
                dribble = (
                    b"GET / HTTP/1.1\r\nHost: x\r\nX-a: "
                    if http
                    else abuse.U64.pack(1) + abuse.U64.pack(64)
                )
                stats["slowloris_closed"] += abuse.slowloris(port, dribble, 50, 5.0, stop)
                stats["slowloris"] += 50

    return action


def test_protocol_abuse_while_computing(make_cluster: Any, tmp_path: Any) -> None:
    """Hostile peers on every port change no result, never get a pickle unpickled, and
    never lock out a new client, even with 1,100 idle connections held on each port of
    processes whose soft fd limit is the common 1,024."""
    canary = str(tmp_path / "CANARY-unpickled")
    cluster = make_cluster(nofile_soft=1024)
    cluster.start_node(2)
    dag = random_dag(SEED + 2, 1_000, width=100)
    with connect(cluster, 2) as client:
        info = client.scheduler_info()
        assert info["dashboard"], "the scheduler serves no dashboard"
        ports = {
            "scheduler": port_of(cluster.address),
            "worker": port_of(sorted(info["workers"])[0]),
            "dashboard": port_of(info["dashboard"]),
        }
        idle = {name: abuse.IdleConnections(port, IDLE) for name, port in ports.items()}
        stats = {"payloads": 0, "slowloris": 0, "slowloris_closed": 0}
        try:
            with (
                figures_on_failure("abuse", cluster.ledger, stats),
                FaultThread(hostile(ports, canary, random.Random(SEED), stats)) as fault,
            ):
                result = run_dag(
                    client, dag, cluster.ledger, "abuse", timeout=240, tick=fault.check
                )
            fault.check()
            # still held: a new client (and its workers' peers) must get in
            with connect(cluster, 2, timeout=30) as second:
                assert second.submit(abs, -7).result(timeout=60) == 7
        finally:
            opened = {name: conns.opened for name, conns in idle.items()}
            for conns in idle.values():
                conns.close()
        result.faults = {**stats, **{f"idle_{k}": v for k, v in opened.items()}}
        report(result, dag.seed)
        assert not abuse.canary_exists(canary), (
            "a pickle from an unauthenticated peer was unpickled"
        )
        assert result.executions == result.n_tasks, result.line(None)
