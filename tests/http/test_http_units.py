"""The small parts of shoal.http on their own: records, the live feed, addresses, keys."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shoal.http.auth import session_value
from shoal.http.listen import split_address
from shoal.http.live import LiveFeed
from shoal.http.records import ClusterCounters, TaskStream, TransferLog
from shoal.http.views import memory_of, parse_key, progress


def test_task_stream_is_bounded_and_counts_everything() -> None:
    stream = TaskStream(maxlen=20)
    for i in range(25):
        stream.task_finished(f"inc-{i}", "tcp://w:1", float(i), i + 0.5)
    assert stream.n_finished == 25
    assert len(stream.tasks) == 20
    assert [t[0] for t in stream.recent_tasks(2)] == ["inc-23", "inc-24"]
    assert stream.recent_tasks(0) == []
    assert len(stream.recent_tasks(100)) == 20


def test_task_stream_takes_transfers_and_ignores_junk() -> None:
    stream = TaskStream()
    stream.transfers_reported("tcp://b:1", [["tcp://a:1", 2, 300, 1.0, 2.0], "junk", [1, 2]])
    stream.transfers_reported("tcp://b:1", None)
    assert stream.recent_transfers(5) == [("tcp://b:1", "tcp://a:1", 2, 300, 1.0, 2.0)]
    assert stream.n_transfers == 1


def test_transfer_log_reports_each_transfer_once() -> None:
    log = TransferLog()
    log.received("tcp://a:1", 1, 100, 1.0, 2.0)
    log.sent(50)
    assert (log.incoming_bytes, log.incoming_count, log.outgoing_bytes) == (100, 1, 50)
    assert log.take_unsent() == [("tcp://a:1", 1, 100, 1.0, 2.0)]
    assert log.take_unsent() == []


def test_cluster_counters_see_a_restart_by_name() -> None:
    counters = ClusterCounters()
    counters.worker_joined("a")
    counters.worker_left("a", expected=False)
    counters.worker_joined("a")
    counters.worker_joined("b")
    assert (counters.workers_added, counters.workers_removed) == (3, 1)
    assert (counters.workers_lost, counters.restarts) == (1, 1)


def test_live_feed_computes_once_per_interval_for_every_viewer() -> None:
    made: list[int] = []

    def make() -> dict[str, Any]:
        made.append(len(made))
        return {"n": len(made)}

    async def scenario() -> None:
        feed = LiveFeed(make, interval=3600)  # the ticker computes once, then sleeps
        queues = [feed.subscribe() for _ in range(3)]
        payloads = [await q.get() for q in queues]
        assert payloads == [b'{"n":1}'] * 3
        assert feed.latest() == b'{"n":1}'  # fresh enough: not computed again
        assert made == [0] and feed.n_computed == 1
        await feed.close()
        assert [await q.get() for q in queues] == [None] * 3
        assert feed.n_subscribers == 0

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (":8687", ("10.0.0.1", 8687)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("8687", ("10.0.0.1", 8687)),
        ("http://[::1]:9000", ("::1", 9000)),
    ],
)
def test_split_address(text: str, expected: tuple[str, int]) -> None:
    assert split_address(text, "10.0.0.1") == expected


def test_split_address_refuses_junk() -> None:
    with pytest.raises(ValueError, match="host:port"):
        split_address("host:port", "127.0.0.1")


def test_keys_in_urls_and_memory_and_progress() -> None:
    assert parse_key("inc-1") == "inc-1"
    assert parse_key("('x', 0)") == ("x", 0)
    assert parse_key("(not python") == "(not python"
    assert memory_of({"memory": 100, "managed_bytes": 30, "spilled_bytes": 5}) == {
        "managed": 30, "spilled": 5, "unmanaged": 70, "process": 100,
    }  # fmt: skip
    assert progress({"inc": {"queued": 2, "waiting": 1, "processing": 3, "memory": 4}}) == {
        "inc": [3, 3, 4, 0]
    }
    assert session_value("token") != session_value("other") and "token" not in session_value(
        "token"
    )


def test_a_taken_dashboard_port_falls_back_to_a_free_one() -> None:
    import socket

    from shoal.scheduler.server import Scheduler

    async def scenario() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            async with Scheduler(port=0, dashboard_address=f"127.0.0.1:{port}") as scheduler:
                assert scheduler.http is not None
                assert scheduler.http.port != port
                assert scheduler.dashboard_link == f"http://127.0.0.1:{scheduler.http.port}/status"

    asyncio.run(scenario())


def test_a_dashboard_served_later_answers_what_came_before_it_served() -> None:
    """``start(dashboard_later=True)`` binds the port at once and serves once aiohttp is
    imported: a request sent in between waits in the backlog and is answered."""
    from shoal.scheduler.server import Scheduler
    from tests.http.helpers import get

    async def scenario() -> None:
        scheduler = Scheduler(port=0, dashboard_address="127.0.0.1:0")
        await scheduler.start(dashboard_later=True)
        try:
            link = scheduler.dashboard_link
            assert link is not None and link.endswith("/status")
            base = link.removesuffix("/status")
            early = asyncio.ensure_future(asyncio.to_thread(get, base, "/health"))
            await scheduler.dashboard_served()
            assert scheduler.http is not None and base.endswith(f":{scheduler.http.port}")
            reply = await asyncio.wait_for(early, 30)
            assert reply.status == 200
        finally:
            await scheduler.close()

    asyncio.run(scenario())


def test_closing_before_the_dashboard_serves_leaves_nothing_open() -> None:
    from shoal.scheduler.server import Scheduler

    async def scenario() -> int:
        scheduler = Scheduler(port=0, dashboard_address="127.0.0.1:0")
        await scheduler.start(dashboard_later=True)
        link = scheduler.dashboard_link
        assert link is not None
        await asyncio.wait_for(scheduler.close(), 30)
        return int(link.removesuffix("/status").rsplit(":", 1)[1])

    port = asyncio.run(scenario())
    import socket

    with socket.socket() as probe:  # nobody listens there any more
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_a_dashboard_that_cannot_serve_raises_to_whoever_waits_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shoal.http.apps
    from shoal.scheduler.server import Scheduler

    async def broken(*args: object) -> None:
        raise RuntimeError("no dashboard today")

    monkeypatch.setattr(shoal.http.apps, "start_scheduler_http", broken)

    async def scenario() -> None:
        scheduler = Scheduler(port=0, dashboard_address="127.0.0.1:0")
        try:
            with pytest.raises(RuntimeError, match="no dashboard today"):
                await scheduler.start()
        finally:
            await scheduler.close()

    asyncio.run(scenario())
