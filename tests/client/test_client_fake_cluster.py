"""The client against a fake network: what it sends, and how futures follow the replies."""

from __future__ import annotations

import gc
import pickle
import threading
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

from shoal.client import Client, Future, default_client, set_default_client
from shoal.client import data as data_module
from shoal.client.tasks import MAX_ROWS_PER_MESSAGE
from shoal.errors import (
    CancelledError,
    CommClosedError,
    FutureLostError,
    SerializationError,
    ShoalTimeoutError,
)
from shoal.protocol.serialize import serialize
from tests.client.client_fakes import SCHEDULER, WORKERS, FakeTransport, barrier
from tests.conftest import wait_until


def inc(x: int) -> int:
    return x + 1


def add(x: int, y: int) -> int:
    return x + y


def user_function_that_fails(x: int) -> int:
    raise ValueError(f"bad value {x}")


@pytest.fixture
def fake() -> FakeTransport:
    return FakeTransport()


@pytest.fixture
def client(fake: FakeTransport) -> Iterator[Client]:
    c = Client._from_transport(fake)
    yield c
    c.close()


# -- submitting ----------------------------------------------------------------------------------


def test_submit_sends_one_update_graph_and_returns_a_pending_future(
    client: Client, fake: FakeTransport
) -> None:
    future = client.submit(inc, 1)
    assert future.status == "pending" and not future.done()
    [msg] = fake.messages("update-graph")
    [(key, _, deps, _, token)] = msg["tasks"]
    assert key == future.key and deps == () and isinstance(token, str)
    assert msg["wanted"] == [future.key] and msg["restrictions"] == {}


def test_a_finished_future_fetches_its_result_from_the_worker(
    client: Client, fake: FakeTransport
) -> None:
    future = client.submit(inc, 1)
    fake.compute()
    assert future.status == "finished" and future.type == "int"
    fake.calls.clear()
    assert future.result() == 2
    # key-in-memory named the holder: one rpc, straight to it, no who_has first
    assert fake.rpc_ops() == [(WORKERS[0], "get_data")]
    assert repr(future).startswith("<Future: finished, type: int, key: inc-")


def test_a_map_of_up_to_a_part_sends_all_tasks_in_one_message(
    client: Client, fake: FakeTransport
) -> None:
    n = MAX_ROWS_PER_MESSAGE
    futures = client.map(inc, range(n))
    assert len(futures) == n
    [msg] = fake.messages("update-graph")
    assert len(msg["tasks"]) == n and fake.sent_apart == 0
    fake.compute()
    assert client.gather(futures) == list(range(1, n + 1))


def test_a_big_map_goes_in_parts_each_apart_and_wanting_its_own_keys(
    client: Client, fake: FakeTransport
) -> None:
    held = client.submit(inc, 0, key="held")
    n = 2 * MAX_ROWS_PER_MESSAGE + 5
    futures = client.map(inc, range(n))
    keys = [f.key for f in futures]
    parts = fake.messages("update-graph")[1:]
    assert [len(msg["tasks"]) for msg in parts] == [MAX_ROWS_PER_MESSAGE] * 2 + [5]
    assert [row[0] for msg in parts for row in msg["tasks"]] == keys  # in call order
    assert [msg["wanted"] for msg in parts[:2]] == [
        [row[0] for row in msg["tasks"]] for msg in parts[:2]
    ]
    assert parts[2]["wanted"] == keys[-5:]
    assert fake.sent_apart == 3
    # a key held already is not sent again, and the last part still wants it
    fresh = [f"fresh-{i}" for i in range(MAX_ROWS_PER_MESSAGE + 1)]
    again = client.map(inc, [*range(len(fresh)), 0], key=[*fresh, "held"])
    assert again[-1].key == held.key
    more = fake.messages("update-graph")[4:]
    assert [len(msg["tasks"]) for msg in more] == [MAX_ROWS_PER_MESSAGE, 1]
    assert more[1]["wanted"] == [fresh[-1], "held"]
    fake.compute()
    assert client.gather(futures) == list(range(1, n + 1))


def test_map_of_nothing_sends_nothing(client: Client, fake: FakeTransport) -> None:
    assert client.map(inc, []) == []
    assert fake.messages("update-graph") == []


def test_futures_as_arguments_become_dependencies(client: Client, fake: FakeTransport) -> None:
    a = client.submit(inc, 1)
    b = client.submit(inc, 2)
    total = client.submit(lambda xs, d: xs[0] + d["b"], [a], d={"b": b})
    last = fake.messages("update-graph")[-1]
    assert set(last["tasks"][0][2]) == {a.key, b.key}
    fake.compute()
    assert total.result() == 5


def test_restrictions_travel_per_task(client: Client, fake: FakeTransport) -> None:
    future = client.submit(inc, 1, workers=[WORKERS[1]], retries=2, resources={"GPU": 1})
    [msg] = fake.messages("update-graph")
    assert msg["restrictions"][future.key]["workers"] == [WORKERS[1]]
    assert msg["restrictions"][future.key]["retries"] == 2


def test_identical_resubmission_reuses_the_state(client: Client, fake: FakeTransport) -> None:
    first = client.submit(inc, 1)
    second = client.submit(inc, 1)
    assert first is not second and first._state is second._state
    assert len(fake.messages("update-graph")) == 1


def test_dropping_many_futures_releases_them_in_parts_each_apart(
    client: Client, fake: FakeTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shoal.client.core.RELEASE_BATCH", 3)
    futures = client.map(inc, range(8), pure=False)
    keys = [f.key for f in futures]
    fake.settle()
    del futures
    fake.settle()
    parts = fake.messages("client-releases-keys")
    assert [len(p["keys"]) for p in parts] == [3, 3, 2]
    assert sorted(k for p in parts for k in p["keys"]) == sorted(keys)
    assert fake.sent_apart == 3  # each part in a frame set of its own: one per loop turn


def test_another_task_under_a_live_key_is_refused(client: Client, fake: FakeTransport) -> None:
    kept = client.submit(inc, 1, key="mine")
    with pytest.raises(ValueError, match="'mine' is already used"):
        client.submit(inc, 2, key="mine")
    assert kept.status == "pending" and len(fake.messages("update-graph")) == 1


def test_a_key_can_be_reused_once_its_futures_are_gone(client: Client, fake: FakeTransport) -> None:
    first = client.submit(inc, 1, key="mine")
    del first
    second = client.submit(inc, 2, key="mine")
    assert fake.ops() == ["update-graph", "client-releases-keys", "update-graph"]
    fake.compute()
    assert second.result() == 3


def block_the_loop(client: Client) -> threading.Event:
    """Hold the client's loop in a callback until the returned event is set (or 30 s)."""
    loop = client._running_core().loop
    assert loop is not None
    blocked, release = threading.Event(), threading.Event()

    def block() -> None:
        blocked.set()
        release.wait(30)

    loop.call_soon_threadsafe(block)
    assert blocked.wait(10), "the client's loop never ran the blocking callback"
    return release


def test_submit_and_map_of_new_keys_do_not_wait_for_the_loop(
    client: Client, fake: FakeTransport
) -> None:
    release = block_the_loop(client)
    results: list[Any] = []
    submitter = threading.Thread(
        target=lambda: results.extend([client.submit(inc, 1), *client.map(inc, [10, 20])])
    )
    submitter.start()
    submitter.join(10)  # the loop is still blocked: a round trip to it could not finish
    alive = submitter.is_alive()
    release.set()
    submitter.join(10)
    assert not alive and [f.status for f in results] == ["pending"] * 3
    assert len(fake.messages("update-graph")) == 2  # sent once the loop ran again, in order
    fake.compute()
    assert [f.result() for f in results] == [2, 11, 21]


def test_compute_of_a_small_new_graph_does_not_wait_for_the_loop(
    client: Client, fake: FakeTransport
) -> None:
    import dask.array as da

    release = block_the_loop(client)
    results: list[Any] = []
    computer = threading.Thread(
        target=lambda: results.append(client.compute((da.ones(8, chunks=4) + 1).sum()))
    )
    computer.start()
    computer.join(10)  # the loop is still blocked: a round trip to it could not finish
    alive = computer.is_alive()
    release.set()
    computer.join(10)
    assert not alive and [f.status for f in results] == ["pending"]
    fake.settle()
    [graph] = fake.messages("update-graph")
    assert graph["wanted"] == [results[0].key]
    fake.compute()
    assert results[0].result() == 16


def test_an_input_released_meanwhile_is_released_after_the_update_graph_using_it(
    client: Client, fake: FakeTransport
) -> None:
    other = client.submit(inc, 0, key="other")
    first = client.submit(inc, 1, key="first")
    fake.settle()
    release = block_the_loop(client)
    del other  # a release flush is queued on the loop before the next submit's send
    gc.collect()
    second = client.submit(inc, first, key="second")
    del first  # dropped before the loop ran: its release must wait for "second"'s graph
    gc.collect()
    release.set()
    fake.settle()
    fake.settle()
    sent = [(m["op"], m.get("keys")) for m in fake.sent if m["op"] != "update-graph"]
    graphs = [i for i, m in enumerate(fake.sent) if m["op"] == "update-graph"]
    releases = [i for i, m in enumerate(fake.sent) if "first" in (m.get("keys") or ())]
    assert sent and releases and releases[0] > graphs[-1], fake.ops()
    fake.compute()
    assert second.result() == 3


def test_a_non_picklable_argument_fails_at_submit(client: Client, fake: FakeTransport) -> None:
    with pytest.raises(SerializationError, match="lock"):
        client.submit(inc, threading.Lock())
    assert fake.sent == []


# -- reference counting --------------------------------------------------------------------------


def test_dropping_the_last_future_releases_the_key(client: Client, fake: FakeTransport) -> None:
    a = client.submit(inc, 1)
    b = Future(a.key, client)
    key = a.key
    del a
    barrier()
    assert fake.messages("client-releases-keys") == []
    del b
    barrier()
    assert fake.messages("client-releases-keys") == [
        {"op": "client-releases-keys", "keys": [key], "stimulus_id": ""}
    ]


def test_releases_of_many_futures_are_batched(client: Client, fake: FakeTransport) -> None:
    futures = client.map(inc, range(100))
    keys = {f.key for f in futures}
    del futures
    barrier()
    released = [k for msg in fake.messages("client-releases-keys") for k in msg["keys"]]
    assert set(released) == keys
    assert len(fake.messages("client-releases-keys")) < len(keys) // 2  # batched, not one each


def test_futures_in_a_reference_cycle_are_released_by_the_collector(
    client: Client, fake: FakeTransport
) -> None:
    holder: list[Any] = [client.submit(inc, 1)]
    holder.append(holder)
    key = holder[0].key
    del holder
    gc.collect()
    barrier()
    assert [key] in [msg["keys"] for msg in fake.messages("client-releases-keys")]


def test_a_future_for_a_key_held_elsewhere_asks_the_scheduler(
    client: Client, fake: FakeTransport
) -> None:
    future = Future("someone-elses", client)
    barrier()
    assert fake.messages("client-desires-keys") == [
        {"op": "client-desires-keys", "keys": ["someone-elses"], "stimulus_id": ""}
    ]
    fake.deliver({"op": "key-in-memory", "key": "someone-elses", "type_name": "int"})
    assert future.done()


def test_an_unpickled_future_binds_to_the_default_client(fake: FakeTransport) -> None:
    client = Client._from_transport(fake, set_as_default=True)
    try:
        assert default_client() is client
        future = client.submit(inc, 1)
        copy = pickle.loads(pickle.dumps(future))
        assert copy is not future and copy._state is future._state
        assert client._table.count(future.key) == 2
    finally:
        client.close()
    with pytest.raises(ValueError, match="no shoal client"):
        default_client()


# -- failures, cancellation, retries -------------------------------------------------------------


def test_a_task_error_raises_its_original_type_with_the_remote_traceback(
    client: Client, fake: FakeTransport
) -> None:
    future = client.submit(user_function_that_fails, 3)
    fake.compute()
    assert future.status == "error"
    with pytest.raises(ValueError, match="bad value 3") as info:
        future.result()
    text = "".join(traceback.format_exception(info.type, info.value, info.tb))
    assert "user_function_that_fails" in text
    exc = future.exception()
    assert isinstance(exc, ValueError)
    tb = future.traceback()
    assert tb is not None
    assert any(frame.name == "user_function_that_fails" for frame in traceback.extract_tb(tb))


def test_gather_raises_the_first_error_or_skips_it(client: Client, fake: FakeTransport) -> None:
    good = client.submit(inc, 1)
    bad = client.submit(user_function_that_fails, 1)
    fake.compute()
    with pytest.raises(ValueError):
        client.gather([good, bad])
    assert client.gather([good, bad], errors="skip") == [2]
    assert client.gather({"g": good, "b": bad}, errors="skip") == {"g": 2}


def test_result_with_a_timeout_on_a_pending_future(client: Client) -> None:
    future = client.submit(inc, 1)
    with pytest.raises(ShoalTimeoutError, match=r"not done after 0\.1s"):
        future.result(timeout=0.1)
    with pytest.raises(TimeoutError):  # a ShoalTimeoutError is a TimeoutError too
        future.exception(timeout=0.01)


def test_cancel_cancels_at_once_and_tells_the_scheduler(
    client: Client, fake: FakeTransport
) -> None:
    future = client.submit(inc, 1)
    future.cancel()
    assert future.cancelled() and future.status == "cancelled"
    assert fake.messages("cancel-keys") == [
        {"op": "cancel-keys", "keys": [future.key], "force": False, "stimulus_id": ""}
    ]
    with pytest.raises(CancelledError):
        future.result()
    with pytest.raises(CancelledError):
        client.gather(future)


def test_a_cancelled_key_submitted_again_runs_again(client: Client, fake: FakeTransport) -> None:
    future = client.submit(inc, 1)
    client.cancel([future])
    again = client.submit(inc, 1)
    assert again.status == "pending" and len(fake.messages("update-graph")) == 2
    fake.compute()
    assert again.result() == 2


def test_cancelled_keys_from_the_scheduler(client: Client, fake: FakeTransport) -> None:
    future = client.submit(inc, 1)
    fake.deliver({"op": "cancelled-keys", "keys": [future.key], "reason": "worker refused"})
    with pytest.raises(CancelledError, match="worker refused"):
        future.result()


def test_retry_sends_erred_keys_and_makes_them_pending(client: Client, fake: FakeTransport) -> None:
    future = client.submit(user_function_that_fails, 1)
    fine = client.submit(inc, 1)
    fake.compute()
    client.retry([future, fine])
    assert fake.messages("retry") == [{"op": "retry", "keys": [future.key], "stimulus_id": ""}]
    assert future.status == "pending" and fine.status == "finished"
    fake.deliver({"op": "key-in-memory", "key": future.key, "type_name": "int"})
    assert future.status == "finished"


def test_task_retried_makes_a_future_pending_again(client: Client, fake: FakeTransport) -> None:
    future = client.submit(user_function_that_fails, 1)
    fake.compute()
    fake.deliver({"op": "task-retried", "key": future.key})
    assert future.status == "pending"


def test_gather_waits_for_a_key_whose_data_was_lost_and_is_recomputed(
    client: Client, fake: FakeTransport
) -> None:
    """The holder died after the key finished: gather finds no copy, the scheduler says
    ``lost-data`` (recomputing it), and gather waits for the new result instead of
    raising FutureLostError."""
    future = client.submit(inc, 1)
    (spec,) = fake.queue
    fake.compute()
    assert future.status == "finished"
    fake.data[WORKERS[0]].clear()  # its only holder is gone
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(client.gather(future)))
    waiter.start()
    wait_until(lambda: (SCHEDULER, "who_has") in fake.rpc_ops(), 30, "a who_has round")
    _recompute_elsewhere(fake, future, spec)
    waiter.join(30)
    assert got == [2] and future.status == "finished"


def _recompute_elsewhere(fake: FakeTransport, future: Future, spec: Any) -> None:
    """Play the scheduler after the holder's death: ``lost-data`` (the future is pending
    again), then the key computed anew on the other worker."""
    fake.data[WORKERS[0]].clear()
    fake.deliver({"op": "lost-data", "key": future.key})
    assert future.status == "pending"
    fake.queue = [spec]
    fake.compute(WORKERS[1])


def test_gather_outwaits_the_scheduler_finding_a_dead_holder(
    client: Client, fake: FakeTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The holder died with its nanny: the scheduler still names it until its grace period
    ends. Refused connections for more rounds than ``FETCH_ATTEMPTS`` are no loss; the
    ``lost-data`` that follows makes gather wait for the recomputed result."""
    monkeypatch.setattr(data_module, "MAX_PAUSE", 0.001)
    future = client.submit(inc, 1)
    (spec,) = fake.queue
    fake.compute()
    fake.unreachable.add(WORKERS[0])
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(client.gather(future)))
    waiter.start()
    rounds = lambda: fake.rpc_ops().count((WORKERS[0], "get_data"))  # noqa: E731
    wait_until(lambda: rounds() > 2 * data_module.FETCH_ATTEMPTS, 30, "refused rounds")
    assert waiter.is_alive() and future.status == "finished"
    _recompute_elsewhere(fake, future, spec)
    waiter.join(30)
    assert got == [2] and future.status == "finished"


def test_gather_declares_a_key_lost_when_no_holder_is_named(
    client: Client, fake: FakeTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data_module, "MAX_PAUSE", 0.001)
    future = client.submit(inc, 1)
    fake.compute()
    fake.data[WORKERS[0]].clear()  # gone, and the scheduler names nobody
    with pytest.raises(FutureLostError, match="no worker holds"):
        client.gather(future)
    assert fake.rpc_ops().count((SCHEDULER, "who_has")) == data_module.FETCH_ATTEMPTS - 1


def test_done_callbacks_run_once_in_another_thread(client: Client, fake: FakeTransport) -> None:
    future = client.submit(inc, 1)
    calls: list[tuple[Future, str]] = []
    called = threading.Event()

    def callback(f: Future) -> None:
        calls.append((f, threading.current_thread().name))
        called.set()

    future.add_done_callback(callback)
    fake.compute()
    assert called.wait(30)
    fake.deliver({"op": "key-in-memory", "key": future.key, "type_name": "int"})
    [(got, thread)] = calls
    assert got is future and thread.startswith("shoal-callbacks")


def test_a_callback_added_when_done_runs_at_once(client: Client, fake: FakeTransport) -> None:
    future = client.submit(inc, 1)
    fake.compute()
    called = threading.Event()
    future.add_done_callback(lambda f: called.set())
    assert called.wait(30)


# -- data ----------------------------------------------------------------------------------------


def test_gather_keeps_nested_structure(client: Client, fake: FakeTransport) -> None:
    a, b = client.map(inc, [1, 2])
    fake.compute()
    assert client.gather({"x": [a, (b, 7)], "y": {a}}) == {"x": [2, (3, 7)], "y": {2}}
    assert client.gather(a) == 2 and client.gather(5) == 5


def test_gather_fetches_per_worker_in_one_call(client: Client, fake: FakeTransport) -> None:
    futures = client.map(inc, range(10))
    fake.compute(worker=WORKERS[1])
    fake.calls.clear()
    client.gather(futures)
    assert fake.rpc_ops() == [(WORKERS[1], "get_data")]


def test_without_holders_in_key_in_memory_the_client_asks_who_has(
    client: Client, fake: FakeTransport
) -> None:
    fake.report_holders = False  # an older scheduler
    futures = client.map(inc, range(10))
    fake.compute(worker=WORKERS[1])
    fake.calls.clear()
    assert client.gather(futures) == list(range(1, 11))
    assert fake.rpc_ops() == [(SCHEDULER, "who_has"), (WORKERS[1], "get_data")]


def test_a_stale_holder_falls_back_to_asking_the_scheduler(
    client: Client, fake: FakeTransport
) -> None:
    future = client.submit(inc, 1)
    fake.compute(worker=WORKERS[0])
    fake.data[WORKERS[1]] = fake.data[WORKERS[0]]  # the result moved to the other worker
    fake.data[WORKERS[0]] = {}
    fake.calls.clear()
    assert future.result() == 2
    assert fake.rpc_ops() == [
        (WORKERS[0], "get_data"),  # the holder key-in-memory named no longer has it
        (SCHEDULER, "who_has"),
        (WORKERS[1], "get_data"),
    ]


def test_a_retried_key_forgets_its_old_holders(client: Client, fake: FakeTransport) -> None:
    future = client.submit(inc, 1)
    fake.compute(worker=WORKERS[0])
    state = future._state
    assert state.holders == (WORKERS[0],)
    state.reset()
    assert not state.holders


def test_gather_asks_a_busy_worker_again(client: Client, fake: FakeTransport) -> None:
    future = client.submit(inc, 1)
    fake.compute()
    fake.busy[WORKERS[0]] = 2
    assert future.result() == 2
    assert [op for _, op in fake.rpc_ops()].count("get_data") == 3


def test_scatter_round_robin_then_tells_the_scheduler(client: Client, fake: FakeTransport) -> None:
    futures = client.scatter([10, 20, 30, 40])
    assert all(f.status == "finished" for f in futures)
    assert sum(len(held) for held in fake.data.values()) == 4
    assert all(len(held) == 2 for held in fake.data.values())
    assert fake.rpc_ops()[-1] == (SCHEDULER, "update_data")
    _, _, kwargs = fake.calls[-1]
    assert kwargs["client"] == fake.client_id and set(kwargs["who_has"]) == {f.key for f in futures}
    assert client.gather(futures) == [10, 20, 30, 40]
    assert futures[0].type == "int"


def test_scatter_keeps_the_shape(client: Client, fake: FakeTransport) -> None:
    single = client.scatter(123)
    assert isinstance(single, Future) and single.result() == 123
    as_dict = client.scatter({"a": 1, "b": 2})
    assert set(as_dict) == {"a", "b"} and as_dict["a"].key == "a"
    as_tuple = client.scatter((1, 2))
    assert isinstance(as_tuple, tuple) and client.gather(as_tuple) == (1, 2)


def test_scatter_broadcast_and_worker_choice(client: Client, fake: FakeTransport) -> None:
    client.scatter([1], broadcast=True)
    assert all(len(held) == 1 for held in fake.data.values())
    client.scatter({"only-b": 5}, workers="1")  # a worker's name
    assert "only-b" in fake.data[WORKERS[1]] and "only-b" not in fake.data[WORKERS[0]]
    with pytest.raises(ValueError, match="no worker 'nope'"):
        client.scatter([1], workers=["nope"])


def test_scatter_with_hash_reuses_and_without_hash_does_not(
    client: Client, fake: FakeTransport
) -> None:
    a, b = client.scatter([[1, 2], [1, 2]])
    assert a.key == b.key and client._table.count(a.key) == 2
    c, d = client.scatter([[1, 2], [1, 2]], hash=False)
    assert c.key != d.key


def test_scattered_futures_feed_tasks(client: Client, fake: FakeTransport) -> None:
    x = client.scatter(41)
    y = client.submit(inc, x)
    fake.compute()
    assert y.result() == 42


def test_scatter_refuses_other_data_under_a_live_key(client: Client) -> None:
    kept = client.scatter({"k": 1})
    with pytest.raises(ValueError, match="'k' is already used"):
        client.scatter({"k": 2})
    assert kept["k"].result() == 1


def test_run_runs_on_every_or_some_workers(client: Client, fake: FakeTransport) -> None:
    assert client.run(add, 1, y=2) == {WORKERS[0]: 3, WORKERS[1]: 3}
    assert client.run(add, 1, 1, workers=[WORKERS[1]]) == {WORKERS[1]: 2}


# -- questions, life -----------------------------------------------------------------------------


def test_questions_go_to_the_scheduler(client: Client, fake: FakeTransport) -> None:
    future = client.submit(inc, 1)
    fake.compute()
    assert client.who_has([future]) == {future.key: [WORKERS[0]]}
    assert client.has_what() == {WORKERS[0]: [future.key], WORKERS[1]: []}
    assert client.nthreads() == {WORKERS[0]: 1, WORKERS[1]: 1}
    assert set(client.scheduler_info()["workers"]) == set(WORKERS)
    assert client.story(future)[0][0] == future.key


def test_repr_shows_the_cluster(client: Client) -> None:
    assert repr(client) == (f"<Client: {SCHEDULER!r} processes=2 threads=2, memory=2.00 GiB>")


def test_close_says_goodbye_and_cancels_pending_futures(fake: FakeTransport) -> None:
    client = Client._from_transport(fake)
    future = client.submit(inc, 1)
    client.close()
    assert fake.ops()[-1] == "close-client" and fake.closed
    assert future.cancelled() and client.status == "closed"
    with pytest.raises(CommClosedError):
        client.submit(inc, 2)
    del future  # dropping futures of a closed client sends nothing and does not fail
    assert repr(client) == f"<Client: {SCHEDULER!r} closed>"


def test_losing_the_scheduler_cancels_pending_futures(client: Client, fake: FakeTransport) -> None:
    done = client.submit(inc, 1)
    fake.compute()
    pending = client.submit(inc, 2)
    fake.lose_connection("connection reset by peer")
    assert done.status == "finished"
    with pytest.raises(CancelledError, match="lost the connection to the scheduler"):
        pending.result()


def test_a_client_is_a_context_manager_and_the_default_while_open(fake: FakeTransport) -> None:
    with Client._from_transport(fake, set_as_default=True) as client:
        assert default_client() is client
    assert client.status == "closed"
    with pytest.raises(ValueError):
        default_client()


def test_set_default_client_is_the_hook_for_workers(client: Client) -> None:
    set_default_client(client)
    try:
        assert default_client() is client
    finally:
        set_default_client(None)


# -- small results that came with key-in-memory ---------------------------------------------------


def test_a_value_sent_with_key_in_memory_is_the_result_without_any_rpc(
    client: Client, fake: FakeTransport
) -> None:
    future, other = client.submit(inc, 1), client.submit(inc, 2)
    fake.queue = []  # nothing runs: the values below are all the client gets
    fake.deliver(
        {"op": "key-in-memory", "key": future.key, "type_name": "list", "who_has": (WORKERS[0],),
         "value": serialize([1, 2])},
        {"op": "key-in-memory", "key": other.key, "type_name": "str", "who_has": (WORKERS[1],),
         "value": serialize("two")},
    )  # fmt: skip
    fake.calls.clear()
    first = future.result()
    assert first == [1, 2] and fake.rpc_ops() == []  # no get_data
    second = future.result()
    assert second == first and second is not first  # deserialized anew, like a fetch
    assert client.gather([future, other]) == [[1, 2], "two"] and fake.rpc_ops() == []


def test_a_value_is_forgotten_when_the_key_goes_back_to_pending(
    client: Client, fake: FakeTransport
) -> None:
    future = client.submit(inc, 1)
    fake.queue = []
    fake.deliver(
        {"op": "key-in-memory", "key": future.key, "type_name": "int", "value": serialize(-1)}
    )
    assert future.result() == -1
    fake.deliver({"op": "lost-data", "key": future.key})
    assert future.status == "pending" and future._state.value is None
    fake.data[WORKERS[1]][future.key] = 2  # recomputed; this report carries no value
    fake.deliver({"op": "key-in-memory", "key": future.key, "type_name": "int",
                  "who_has": (WORKERS[1],)})  # fmt: skip
    fake.calls.clear()
    assert future.result() == 2 and fake.rpc_ops() == [(WORKERS[1], "get_data")]
