"""WorkerState: fetching inputs from peers, one path at a time (validate=True throughout)."""

from __future__ import annotations

from shoal._types import Key
from shoal.worker.events import (
    BusyWorkerRetryDue,
    MissingRefreshDue,
    ReplicasRequested,
    WorkerPaused,
    WorkerUnpaused,
)
from shoal.worker.instructions import (
    AddKeysMsg,
    Execute,
    GatherDep,
    MissingDataMsg,
    RequestRefreshWhoHasMsg,
    RetryBusyWorkerLater,
    TaskErredMsg,
)

from .state_helpers import (
    A,
    B,
    C,
    assign,
    busy,
    error_info,
    freed,
    gathered,
    kinds,
    network_failed,
    new_state,
    of,
    refreshed,
    sid,
)

# -- fetching -------------------------------------------------------------------------------


def test_dependencies_from_one_peer_travel_in_one_gather() -> None:
    ws = new_state()
    event = assign("y", deps={"a": [A], "b": [A], "c": [A]}, nbytes={"a": 1, "b": 2, "c": 3})
    out = ws.handle_stimulus(event)
    assert out == [
        GatherDep(
            worker=A, keys=frozenset({"a", "b", "c"}), total_nbytes=6, stimulus_id=event.stimulus_id
        )
    ]
    assert {ws.tasks[k].state for k in "abc"} == {"flight"}
    assert ws.in_flight_workers == {A: {"a", "b", "c"}}
    assert ws.in_flight_tasks == 3 and ws.comm_bytes == 6
    assert ws.has_what == {A: {"a", "b", "c"}}
    assert ws.tasks["y"].state == "waiting"

    arrived = gathered(A, "abc")
    out = ws.handle_stimulus(arrived)
    assert kinds(out) == ["StoreValue"] * 3 + ["AddKeysMsg", "Execute", "TaskStartedMsg"]
    add = of(out, AddKeysMsg)[0]
    assert set(add.keys) == {"a", "b", "c"} and add.nbytes == {"a": 20, "b": 20, "c": 20}
    assert all(inst.stimulus_id == arrived.stimulus_id for inst in out)
    assert ws.in_flight_workers == {} and ws.comm_bytes == 0 and ws.in_flight_tasks == 0


def test_events_of_one_batch_share_gathers() -> None:
    ws = new_state()
    out = ws.handle_stimulus(assign("y1", deps={"a": [A]}), assign("y2", deps={"b": [A]}))
    assert of(out, GatherDep) == [
        GatherDep(
            worker=A, keys=frozenset({"a", "b"}), total_nbytes=20, stimulus_id=out[0].stimulus_id
        )
    ]


def test_dependencies_on_several_peers() -> None:
    ws = new_state()
    out = ws.handle_stimulus(assign("y", deps={"a": [A], "b": [B]}))
    assert {(g.worker, g.keys) for g in of(out, GatherDep)} == {
        (A, frozenset({"a"})),
        (B, frozenset({"b"})),
    }
    out = ws.handle_stimulus(gathered(A, ["a"]))
    assert of(out, Execute) == []
    out = ws.handle_stimulus(gathered(B, ["b"]))
    assert [inst.key for inst in of(out, Execute)] == ["y"]


def test_a_peer_busy_with_a_transfer_to_us_is_not_asked_again() -> None:
    ws = new_state()
    ws.handle_stimulus(assign("y1", deps={"a": [A]}))
    out = ws.handle_stimulus(assign("y2", deps={"b": [A, B]}))
    assert of(out, GatherDep) == [
        GatherDep(worker=B, keys=frozenset({"b"}), total_nbytes=10, stimulus_id=out[0].stimulus_id)
    ]
    out = ws.handle_stimulus(assign("y3", deps={"c": [A]}))
    assert of(out, GatherDep) == []  # A is sending a already: c waits for it
    assert list(ws.pending_data_per_worker[A]) == ["c"]
    out = ws.handle_stimulus(gathered(A, ["a"]))
    assert [(g.worker, g.keys) for g in of(out, GatherDep)] == [(A, frozenset({"c"}))]


def test_gather_takes_best_priority_first_within_its_byte_budget() -> None:
    ws = new_state(gather_nbytes_limit=25)
    ws.handle_stimulus(WorkerPaused(stimulus_id=sid()))
    ws.handle_stimulus(
        assign("late", priority=(9,), deps={"z": [A]}, nbytes={"z": 10}),
        assign("soon", priority=(1,), deps={"a": [A]}, nbytes={"a": 10}),
        assign("mid", priority=(5,), deps={"m": [A]}, nbytes={"m": 10}),
    )
    assert list(ws.data_needed) == ["a", "m", "z"]
    assert list(ws.pending_data_per_worker[A]) == ["a", "m", "z"]
    out = ws.handle_stimulus(WorkerUnpaused(stimulus_id=sid()))
    assert [(g.keys, g.total_nbytes) for g in of(out, GatherDep)] == [(frozenset("am"), 20)]


def test_total_out_connections_limits_concurrent_gathers() -> None:
    ws = new_state(total_out_connections=2)
    peers = [f"tcp://p{i}:1" for i in range(4)]
    deps: dict[Key, list[str]] = {f"d{i}": [peer] for i, peer in enumerate(peers)}
    out = ws.handle_stimulus(assign("y", deps=deps))
    gathers = of(out, GatherDep)
    assert len(gathers) == 2 and len(ws.in_flight_workers) == 2
    out = ws.handle_stimulus(gathered(gathers[0].worker, gathers[0].keys))
    assert len(of(out, GatherDep)) == 1 and len(ws.in_flight_workers) == 2


def test_total_comm_nbytes_limits_bytes_in_flight() -> None:
    ws = new_state(total_comm_nbytes=100)
    out = ws.handle_stimulus(assign("y", deps={"a": [A], "b": [B]}, nbytes={"a": 60, "b": 60}))
    [first] = of(out, GatherDep)  # a and b share y's priority: either goes first
    assert first.total_nbytes == 60 and ws.comm_bytes == 60
    out = ws.handle_stimulus(gathered(first.worker, first.keys))
    [second] = of(out, GatherDep)
    assert {first.worker, second.worker} == {A, B} and second.total_nbytes == 60


def test_one_key_larger_than_the_cap_travels_alone() -> None:
    ws = new_state(total_comm_nbytes=100, gather_nbytes_limit=50)
    out = ws.handle_stimulus(
        assign("y", priority=(0,), deps={"big": [A]}, nbytes={"big": 500}),
        assign("z", priority=(1,), deps={"small": [B]}, nbytes={"small": 10}),
    )
    assert [(g.worker, g.keys, g.total_nbytes) for g in of(out, GatherDep)] == [
        (A, frozenset({"big"}), 500)
    ]
    assert ws.comm_bytes == 500
    out = ws.handle_stimulus(gathered(A, ["big"]))
    assert [(g.worker, g.keys) for g in of(out, GatherDep)] == [(B, frozenset({"small"}))]


def test_busy_peer_is_retried_later_and_other_holders_are_used_meanwhile() -> None:
    ws = new_state()
    ws.handle_stimulus(assign("y", deps={"a": [A]}))
    event = busy(A, ["a"])
    out = ws.handle_stimulus(event)
    assert out == [RetryBusyWorkerLater(worker=A, stimulus_id=event.stimulus_id)]
    assert ws.tasks["a"].state == "fetch" and ws.busy_workers == {A}
    # a second holder appears: used at once while A is busy
    out = ws.handle_stimulus(refreshed({"a": [A, B]}))
    assert [(g.worker, g.keys) for g in of(out, GatherDep)] == [(B, frozenset({"a"}))]
    out = ws.handle_stimulus(busy(B, ["a"]))
    assert kinds(out) == ["RetryBusyWorkerLater"]
    out = ws.handle_stimulus(BusyWorkerRetryDue(worker=A, stimulus_id=sid()))
    assert [(g.worker, g.keys) for g in of(out, GatherDep)] == [(A, frozenset({"a"}))]
    assert ws.busy_workers == {B}


def test_network_failure_then_other_holder_then_missing_then_refresh() -> None:
    ws = new_state()
    out = ws.handle_stimulus(assign("y", deps={"a": [A, B], "b": [A]}))
    assert [(g.worker, g.keys) for g in of(out, GatherDep)] == [(A, frozenset({"a", "b"}))]

    event = network_failed(A, ["a", "b"])
    out = ws.handle_stimulus(event)
    assert out == [
        RequestRefreshWhoHasMsg(keys=("b",), stimulus_id=event.stimulus_id),
        GatherDep(worker=B, keys=frozenset({"a"}), total_nbytes=10, stimulus_id=event.stimulus_id),
    ]
    assert A not in ws.has_what and ws.tasks["b"].state == "missing" and ws.missing == {"b"}

    out = ws.handle_stimulus(network_failed(B, ["a"]))
    assert kinds(out) == ["RequestRefreshWhoHasMsg"] and out[0].keys == ("a",)  # type: ignore[attr-defined]
    assert ws.missing == {"a", "b"} and ws.has_what == {}

    out = ws.handle_stimulus(refreshed({"a": [C], "b": [C]}))
    assert [(g.worker, g.keys) for g in of(out, GatherDep)] == [(C, frozenset({"a", "b"}))]
    out = ws.handle_stimulus(gathered(C, ["a", "b"]))
    assert [inst.key for inst in of(out, Execute)] == ["y"]


def test_network_failure_forgets_everything_the_peer_held() -> None:
    ws = new_state(total_out_connections=1)
    ws.handle_stimulus(assign("y1", deps={"a": [A]}, priority=(0,)))
    ws.handle_stimulus(assign("y2", deps={"b": [B, A]}, priority=(1,)))
    assert ws.has_what == {A: {"a", "b"}, B: {"b"}}
    out = ws.handle_stimulus(network_failed(A, ["a"]))
    assert ws.tasks["b"].who_has == {B}
    assert ws.has_what == {B: {"b"}}
    assert A not in ws.pending_data_per_worker
    assert [(g.worker, g.keys) for g in of(out, GatherDep)] == [(B, frozenset({"b"}))]


def test_refresh_with_no_holder_does_not_ask_again() -> None:
    ws = new_state()
    ws.handle_stimulus(assign("y", deps={"a": []}))
    assert ws.tasks["a"].state == "missing"
    assert ws.handle_stimulus(refreshed({"a": []})) == []
    event = MissingRefreshDue(stimulus_id=sid())
    assert ws.handle_stimulus(event) == [
        RequestRefreshWhoHasMsg(keys=("a",), stimulus_id=event.stimulus_id)
    ]


def test_missing_data_from_an_errant_peer() -> None:
    ws = new_state()
    ws.handle_stimulus(assign("y", deps={"a": [A, B]}))
    event = gathered(A, ["a"], data={})
    out = ws.handle_stimulus(event)
    assert out == [
        MissingDataMsg(key="a", errant_worker=A, stimulus_id=event.stimulus_id),
        GatherDep(worker=B, keys=frozenset({"a"}), total_nbytes=10, stimulus_id=event.stimulus_id),
    ]
    assert ws.tasks["a"].who_has == {B} and A not in ws.has_what

    event = gathered(B, ["a"], data={})
    out = ws.handle_stimulus(event)
    assert out == [
        MissingDataMsg(key="a", errant_worker=B, stimulus_id=event.stimulus_id),
        RequestRefreshWhoHasMsg(keys=("a",), stimulus_id=event.stimulus_id),
    ]
    assert ws.tasks["a"].state == "missing"


def test_unreadable_value_errs_only_the_tasks_waiting_for_it() -> None:
    ws = new_state(nthreads=2)
    ws.handle_stimulus(assign("y1", deps={"a": [A], "b": [A]}), assign("y2", deps={"b": [A]}))
    info = error_info("cannot unpickle")
    event = gathered(A, ["a", "b"], data={"b": 2}, unreadable={"a": info})
    out = ws.handle_stimulus(event)
    erred = of(out, TaskErredMsg)
    assert [(m.key, m.exception, m.exception_text) for m in erred] == [
        ("y1", info.exception, info.exception_text)
    ]
    assert ws.tasks["y1"].state == "error" and ws.tasks["y1"].error is info
    assert "a" not in ws.tasks  # the erred task needs it no more: the bad copy is dropped
    assert [inst.key for inst in of(out, Execute)] == ["y2"]
    assert ws.tasks["b"].state == "memory"
    # a later task needing ``a`` tries the transfer again
    out = ws.handle_stimulus(assign("y3", deps={"a": [B]}))
    assert [(g.worker, g.keys) for g in of(out, GatherDep)] == [(B, frozenset({"a"}))]


def test_replicas_are_fetched_announced_and_dropped_on_request() -> None:
    ws = new_state()
    event = ReplicasRequested(stimulus_id=sid(), who_has={"r": (A,)}, nbytes={"r": 7})
    out = ws.handle_stimulus(event)
    assert [(g.worker, g.keys, g.total_nbytes) for g in of(out, GatherDep)] == [
        (A, frozenset({"r"}), 7)
    ]
    out = ws.handle_stimulus(gathered(A, ["r"]))
    assert kinds(out) == ["StoreValue", "AddKeysMsg"]
    out = ws.handle_stimulus(freed("r"))
    assert kinds(out) == ["DeleteValue"]  # the scheduler asked: no release message
    assert ws.tasks == {}


def test_values_a_peer_could_not_send_fail_their_dependents_and_are_not_fetched_again() -> None:
    # what the shell reports when the peer answered get_data with an error about the values
    ws = new_state(nthreads=2)
    ws.handle_stimulus(assign("y1", deps={"a": [A]}), assign("y2", deps={"a": [A], "b": [A]}))
    info = error_info("cannot pickle '_thread.lock' object")
    out = ws.handle_stimulus(gathered(A, ["a", "b"], data={}, unreadable=dict.fromkeys("ab", info)))
    assert sorted(m.key for m in of(out, TaskErredMsg)) == ["y1", "y2"]
    assert not of(out, GatherDep) and not of(out, RequestRefreshWhoHasMsg)
    assert ws.tasks["y1"].error is info and ws.tasks["y2"].error is info
    assert ws.in_flight_workers == {} and ws.comm_bytes == 0
