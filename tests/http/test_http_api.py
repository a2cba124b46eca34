"""The scheduler's and workers' HTTP endpoints against the cluster's real state.

One in-process cluster (2 workers x 1 thread) runs a known workload once: 20 ``inc``
tasks, one task that fails, and one value moved from worker 0 to worker 1. Every
endpoint's numbers are then checked against the scheduler's and the workers' own state.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shoal.client import Client, Future, wait
from shoal.cluster import LocalCluster
from shoal.http.auth import cookie_name
from shoal.worker.server import Worker
from tests.conftest import wait_until
from tests.http.helpers import base_of, first_event, get, post_form


def inc(x: int) -> int:
    return x + 1


def fail(x: int) -> int:
    raise ValueError(f"bad {x}")


def make_bytes(n: int) -> bytes:
    return b"x" * n


def length(data: bytes) -> int:
    return len(data)


@dataclass
class Workload:
    cluster: LocalCluster
    client: Client
    base: str
    token: str
    incs: list[Future]
    bad: Future
    moved: Future
    sender: Worker
    receiver: Worker


@pytest.fixture(scope="module")
def workload() -> Iterator[Workload]:
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        sender, receiver = cluster.workers
        incs = client.map(inc, range(20))
        assert client.gather(incs) == list(range(1, 21))
        bad = client.submit(fail, 1)
        source = client.submit(make_bytes, 10_000, workers=[sender.address])
        moved = client.submit(length, source, workers=[receiver.address])
        assert moved.result() == 10_000
        wait([bad])
        assert bad.status == "error"
        del source  # its task may be forgotten now; its transfer stays recorded
        token = cluster.security.token
        assert token is not None and cluster.dashboard_link is not None
        data = Workload(
            cluster, client, base_of(cluster.dashboard_link), token, incs, bad, moved,
            sender, receiver,
        )  # fmt: skip
        wait_until(lambda: _heartbeats_caught_up(data))
        yield data


def _heartbeats_caught_up(w: Workload) -> bool:
    """The scheduler's heartbeat metrics show the workload (transfer and managed bytes)."""
    extra = w.cluster.scheduler.worker_extra
    for worker in (w.sender, w.receiver):
        metrics = extra[worker.address]["metrics"]
        if metrics.get("managed_bytes") != worker.metrics()["managed_bytes"]:
            return False
        log = worker.transfer_log
        if metrics.get("transfer_incoming_bytes") != log.incoming_bytes:
            return False
        if metrics.get("transfer_outgoing_count") != log.outgoing_count:
            return False
    return w.cluster.scheduler.task_stream.n_transfers == 1


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text as ``{(sample name, labels): value}``."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def metric(table: dict[Any, float], name: str, **labels: str) -> float:
    return table[(name, frozenset(labels.items()))]


# -- /health and the token ---------------------------------------------------------------------
SCHEDULER_PATHS = [
    "/status", "/", "/static/dashboard.js", "/metrics", "/api/v1/workers", "/api/v1/tasks",
    "/api/v1/task-stream", "/api/v1/story/inc-1", "/api/v1/snapshot", "/api/v1/stream",
]  # fmt: skip


def test_health_needs_no_token(workload: Workload) -> None:
    reply = get(workload.base, "/health")
    assert (reply.status, reply.text) == (200, "ok")
    for worker in workload.cluster.workers:
        reply = get(f"http://127.0.0.1:{worker.service_ports['http']}", "/health")
        assert (reply.status, reply.text) == (200, "ok")


@pytest.mark.parametrize("path", SCHEDULER_PATHS)
def test_scheduler_paths_refuse_requests_without_the_token(workload: Workload, path: str) -> None:
    assert get(workload.base, path).status == 401
    assert get(workload.base, path, token="not-the-token").status == 401
    assert get(workload.base, path + "?token=wrong").status == 401


@pytest.mark.parametrize("path", ["/metrics", "/api/v1/info"])
def test_worker_paths_refuse_requests_without_the_token(workload: Workload, path: str) -> None:
    base = f"http://127.0.0.1:{workload.sender.service_ports['http']}"
    assert get(base, path).status == 401
    assert get(base, path, token="not-the-token").status == 401
    assert get(base, path, token=workload.token).status == 200


def test_login_link_sets_a_session_cookie_and_drops_the_token(workload: Workload) -> None:
    reply = get(workload.base, f"/status?token={workload.token}")
    assert reply.status == 303
    assert reply.headers["Location"] == "/status"
    port = int(workload.base.rsplit(":", 1)[1])
    name, _, rest = reply.headers["Set-Cookie"].partition("=")
    assert name == cookie_name(port)
    value = rest.split(";")[0]
    assert workload.token not in reply.headers["Set-Cookie"]
    page = get(workload.base, "/status", cookie=f"{name}={value}")
    assert page.status == 200 and "shoal dashboard" in page.text
    assert get(workload.base, "/api/v1/tasks", cookie=f"{name}={value}").status == 200
    assert get(workload.base, "/status", cookie=f"{name}=forged").status == 401


def test_no_auth_cluster_needs_no_token() -> None:
    from shoal.comm import Security

    with LocalCluster(n_workers=1, processes=False, security=Security(token=None)) as cluster:
        assert cluster.dashboard_link is not None
        base = base_of(cluster.dashboard_link)
        assert get(base, "/api/v1/tasks").json()["total"] == 0
        assert cluster.dashboard_login_link == cluster.dashboard_link


# -- JSON API ----------------------------------------------------------------------------------
def test_workers_endpoint_matches_the_cluster(workload: Workload) -> None:
    w = workload
    rows = {row["address"]: row for row in get(w.base, "/api/v1/workers", w.token).json()}
    assert set(rows) == set(w.cluster.scheduler.state.workers)
    has_what = w.client.has_what()
    for worker in w.cluster.workers:
        row = rows[worker.address]
        assert row["name"] == worker.name
        assert row["nthreads"] == 1
        assert row["status"] == "running"
        assert (row["processing"], row["executing"], row["running"]) == (0, 0, [])
        assert row["in_memory"] == len(has_what[worker.address])
        assert row["services"] == {"http": worker.service_ports["http"]}
        assert row["memory_limit"] == worker.memory_limit
        assert row["memory"]["managed"] == worker.metrics()["managed_bytes"] > 0
        log = worker.transfer_log
        assert row["transfer"]["incoming_bytes"] == log.incoming_bytes
        assert row["transfer"]["incoming_count"] == log.incoming_count
    assert rows[w.receiver.address]["transfer"]["incoming_count"] == 1
    assert rows[w.receiver.address]["transfer"]["incoming_bytes"] > 0
    # outgoing counts every get_data served: to the peer, and to the client's gather
    sent = w.sender.transfer_log
    assert rows[w.sender.address]["transfer"]["outgoing_count"] == sent.outgoing_count >= 1
    assert rows[w.sender.address]["transfer"]["outgoing_bytes"] == sent.outgoing_bytes > 0


def test_tasks_endpoint_counts_by_prefix_and_state(workload: Workload) -> None:
    w = workload
    tasks = get(w.base, "/api/v1/tasks", w.token).json()
    assert tasks["by_prefix"]["inc"] == {"memory": 20}
    assert tasks["by_prefix"]["fail"] == {"erred": 1}
    assert tasks["by_prefix"]["length"] == {"memory": 1}
    assert tasks["by_state"] == w.cluster.scheduler.state.n_tasks_by_state()
    assert tasks["total"] == len(w.cluster.scheduler.state.tasks)
    assert tasks["finished_total"] == 22  # 20 inc, make_bytes and length; fail never finished


def test_task_stream_endpoint_lists_who_ran_what(workload: Workload) -> None:
    w = workload
    stream = get(w.base, "/api/v1/task-stream", w.token).json()
    assert stream["finished_total"] == 22
    tasks = stream["tasks"]
    assert len(tasks) == 22
    who_has = w.client.who_has(w.incs)
    incs = [t for t in tasks if t["prefix"] == "inc"]
    assert {t["key"] for t in incs} == {f.key for f in w.incs}
    for t in incs:
        assert t["worker"] in who_has[t["key"]]
        assert t["start"] <= t["stop"]
    [transfer] = stream["transfers"]
    assert (transfer["worker"], transfer["sender"]) == (w.receiver.address, w.sender.address)
    assert transfer["keys"] == 1 and transfer["nbytes"] > 0
    last = get(w.base, "/api/v1/task-stream?n=3", w.token).json()["tasks"]
    assert last == tasks[-3:]
    assert get(w.base, "/api/v1/task-stream?n=many", w.token).status == 400


def test_story_endpoint_matches_the_scheduler(workload: Workload) -> None:
    w = workload
    key = w.incs[0].key
    reply = get(w.base, f"/api/v1/story/{key}", w.token).json()
    assert reply["key"] == key
    steps = [(s["start"], s["finish"]) for s in reply["story"]]
    expected = [(e[1], e[2]) for e in w.cluster.scheduler.state.story(key) if e[0] == key]
    assert steps == expected
    assert steps[-1] == ("processing", "memory")
    assert [s["stimulus_id"] for s in reply["story"]] == [
        e[3] for e in w.cluster.scheduler.state.story(key) if e[0] == key
    ]
    assert get(w.base, "/api/v1/story/no-such-key", w.token).json()["story"] == []


def test_snapshot_and_stream_carry_workers_and_progress(workload: Workload) -> None:
    w = workload
    for snap in (
        get(w.base, "/api/v1/snapshot", w.token).json(),
        first_event(w.base, "/api/v1/stream", w.token),
    ):
        assert {row["address"] for row in snap["workers"]} == set(w.cluster.scheduler.state.workers)
        assert snap["progress"]["inc"] == [0, 0, 20, 0]
        assert snap["progress"]["fail"] == [0, 0, 0, 1]
        assert snap["finished_total"] == 22
        assert snap["scheduler"] == w.cluster.scheduler_address


# -- /metrics ----------------------------------------------------------------------------------
def test_scheduler_metrics_match_the_cluster(workload: Workload) -> None:
    w = workload
    reply = get(w.base, "/metrics", w.token)
    assert reply.headers["Content-Type"].startswith("text/plain")
    table = samples(reply.text)
    counts = w.cluster.scheduler.state.n_tasks_by_state()
    assert metric(table, "shoal_scheduler_tasks", state="memory") == counts["memory"]
    assert metric(table, "shoal_scheduler_tasks", state="erred") == 1
    assert metric(table, "shoal_scheduler_tasks", state="processing") == 0
    assert metric(table, "shoal_scheduler_tasks_finished_total") == 22
    assert metric(table, "shoal_scheduler_workers", status="running") == 2
    assert metric(table, "shoal_scheduler_threads") == 2
    assert metric(table, "shoal_scheduler_clients") == 1
    managed = sum(worker.metrics()["managed_bytes"] for worker in w.cluster.workers)
    assert metric(table, "shoal_scheduler_memory_bytes", type="managed") == managed
    assert metric(table, "shoal_scheduler_memory_bytes", type="spilled") == 0
    incoming = sum(worker.transfer_log.incoming_bytes for worker in w.cluster.workers)
    assert metric(table, "shoal_scheduler_transfer_bytes_total", direction="incoming") == incoming
    assert metric(table, "shoal_scheduler_transfers_total", direction="incoming") == 1
    assert metric(table, "shoal_scheduler_workers_added_total") == 2
    assert metric(table, "shoal_scheduler_workers_removed_total") == 0
    assert metric(table, "shoal_scheduler_worker_restarts_total") == 0
    assert metric(table, "shoal_scheduler_worker_reconnects_total") == 0
    assert metric(table, "shoal_scheduler_client_reconnects_total") == 0
    assert metric(table, "shoal_scheduler_fenced_events_total") == 0
    assert metric(table, "shoal_scheduler_event_loop_lag_seconds") >= 0


def test_worker_metrics_match_the_worker(workload: Workload) -> None:
    w = workload
    worker = w.receiver
    base = f"http://127.0.0.1:{worker.service_ports['http']}"
    table = samples(get(base, "/metrics", w.token).text)
    assert metric(table, "shoal_worker_threads") == 1
    assert metric(table, "shoal_worker_tasks_executed_total") == worker.state.executed_count
    in_memory = sum(1 for ts in worker.state.tasks.values() if ts.state == "memory")
    assert metric(table, "shoal_worker_tasks", state="memory") == in_memory
    log = worker.transfer_log
    assert metric(table, "shoal_worker_transfer_bytes_total", direction="incoming") == (
        log.incoming_bytes
    )
    assert metric(table, "shoal_worker_transfers_total", direction="incoming") == 1
    managed = worker.metrics()["managed_bytes"]
    assert metric(table, "shoal_worker_memory_bytes", type="managed") == managed
    info = get(base, "/api/v1/info", w.token).json()
    assert (info["address"], info["nthreads"]) == (worker.address, 1)
    assert info["in_memory"] == len(worker.data)


# -- where the dashboard is --------------------------------------------------------------------
def test_client_reports_the_dashboard_link(workload: Workload) -> None:
    w = workload
    link = w.cluster.dashboard_link
    assert link is not None and link.startswith("http://127.0.0.1:") and link.endswith("/status")
    assert w.token not in link
    # a cluster this process started: the client's link (and repr) logs the user in
    login = w.cluster.dashboard_login_link
    assert login == f"{link}?token={w.token}"
    assert w.client.dashboard_link == login
    assert w.client.scheduler_info()["dashboard"] == link
    assert f"dashboard: {login}" in repr(w.client)
    # a cluster known only by its address stays bare: its 401 page asks for the token
    with Client(w.cluster.scheduler_address, set_as_default=False) as remote:
        assert remote.dashboard_link == link
        assert w.token not in repr(remote)
    base = base_of(link)
    page = get(base, "/status")
    assert page.status == 401 and 'name="token"' in page.text and w.token not in page.text
    logged_in = post_form(base, "/status", {"token": w.token})
    assert logged_in.status == 303 and logged_in.headers["Location"] == "/status"
    cookie = logged_in.headers["Set-Cookie"].split(";", 1)[0]
    assert get(base, "/status", cookie=cookie).status == 200
    assert post_form(base, "/status", {"token": "wrong"}).status == 401
