"""SchedulerState: one test per path, events in, instructions and state checked."""

from __future__ import annotations

import msgspec
import pytest

from shoal.errors import FutureLostError, InvalidTransition, KilledWorker
from shoal.scheduler.events import (
    ClientConnected,
    ClientDisconnected,
    DataMissing,
    DataScattered,
    KeysCancelled,
    KeysDesired,
    KeysReleased,
    NewTask,
    RetryRequested,
    SchedulerEvent,
    StealResponded,
    TaskSeceded,
    WhoHasRefreshRequested,
    WorkerAddedKeys,
    WorkerReleasedKey,
    WorkerStatusChanged,
)
from shoal.scheduler.instructions import (
    ComputeTask,
    FreeKeys,
    KeyErred,
    KeyInMemory,
    KeyLost,
    KeyRetried,
    KeysCancelledForClient,
    RefreshWhoHas,
)
from shoal.scheduler.policy import capacity
from shoal.scheduler.state import SchedulerState

from .helpers import (
    computes,
    erred,
    finished,
    handle,
    join,
    leave,
    new_state,
    of_type,
    one_compute,
    sid,
    started,
    submit,
    task,
)

CAP1 = capacity(1, 0.005, 0.0005)  # tasks admitted onto a 1-thread worker by default


def run_to_memory(state: SchedulerState, ct: ComputeTask, nbytes: int = 8) -> list[object]:
    return list(handle(state, finished(ct, nbytes=nbytes)))


# -- submission and the happy path -----------------------------------------------------------


def test_single_task_is_sent_to_the_worker() -> None:
    s = new_state()
    handle(s, join("w1"))
    ct = one_compute(handle(s, submit([task("x", priority=(1, 2))], ["x"])))
    assert (ct.worker, ct.key, ct.run_spec, ct.priority) == ("w1", "x", ("spec", "x"), (1, 2))
    assert ct.who_has == {} and ct.run_id > 0
    assert s.tasks["x"].state == "processing"
    out = handle(s, finished(ct, nbytes=123))
    assert out == [
        KeyInMemory(
            stimulus_id=out[0].stimulus_id, client="c1", key="x", type_name="int", who_has=("w1",)
        )
    ]  # the holders travel with it: the client fetches without asking who has it
    assert s.tasks["x"].nbytes == 123
    assert s.who_has() == {"x": ["w1"]} and s.has_what() == {"w1": ["x"]}


def test_chain_runs_in_order_and_frees_inputs() -> None:
    s = new_state()
    handle(s, join("w1"))
    ct = one_compute(handle(s, submit([task("a"), task("b", "a"), task("c", "b")], ["c"])))
    assert ct.key == "a"
    ct = one_compute(handle(s, finished(ct)))
    assert ct.key == "b" and ct.who_has == {"a": ("w1",)} and ct.nbytes == {"a": 8}
    out = handle(s, finished(ct))
    ct = one_compute(out)
    assert of_type(out, FreeKeys) == [
        FreeKeys(stimulus_id=out[0].stimulus_id, worker="w1", keys=("a",))
    ]
    out = handle(s, finished(ct))
    assert [type(i) for i in out] == [KeyInMemory, FreeKeys]
    assert {k: ts.state for k, ts in s.tasks.items()} == {
        "a": "released",
        "b": "released",
        "c": "memory",
    }
    assert s.n_tasks_by_state() == {"released": 2, "memory": 1}


def test_task_referring_to_an_existing_key() -> None:
    s = new_state()
    handle(s, join("w1"))
    ct = one_compute(handle(s, submit([task("a")], ["a"])))
    handle(s, finished(ct))
    ct = one_compute(handle(s, submit([NewTask(key="a", run_spec=None), task("b", "a")], ["b"])))
    assert ct.key == "b" and ct.who_has == {"a": ("w1",)}


def test_unwanted_graph_tasks_are_forgotten() -> None:
    s = new_state()
    handle(s, join("w1"))
    assert handle(s, submit([task("a"), task("b")], [])) == []
    assert s.tasks == {}


def test_dependency_unknown_to_the_scheduler_errs_its_dependent() -> None:
    s = new_state()
    handle(s, join("w1"))
    out = handle(s, submit([task("b", "gone")], ["b"]))
    (msg,) = of_type(out, KeyErred)
    assert msg.key == "b" and isinstance(msg.exception, FutureLostError)
    assert s.tasks["b"].exception_blame is s.tasks["gone"]


# -- placement -------------------------------------------------------------------------------


def two_inputs_on_two_workers(s: SchedulerState, big: int, small: int) -> None:
    handle(s, join("w1"), join("w2"))
    cts = computes(
        handle(s, submit([task("x", workers=("w1",)), task("y", workers=("w2",))], ["x", "y"]))
    )
    for ct in cts:
        handle(s, finished(ct, nbytes=big if ct.key == "x" else small))


def test_fan_in_goes_to_the_worker_holding_most_input_bytes() -> None:
    s = new_state()
    two_inputs_on_two_workers(s, big=50_000_000, small=10)
    ct = one_compute(handle(s, submit([task("z", "x", "y")], ["z"])))
    assert ct.worker == "w1"
    assert ct.who_has == {"x": ("w1",), "y": ("w2",)}


def test_placement_weighs_input_bytes_against_queued_work() -> None:
    s = new_state()
    two_inputs_on_two_workers(s, big=100, small=10)
    # w1 holds the bigger input, but two queued tasks there outweigh moving 100 bytes
    busy = [task(f"busy-{i}", workers=("w1",)) for i in range(2)]
    handle(s, submit(busy, [t.key for t in busy]))
    ct = one_compute(handle(s, submit([task("z", "x", "y")], ["z"])))
    assert ct.worker == "w2"


def test_placement_ties_go_to_the_least_busy_worker() -> None:
    s = new_state()
    handle(s, join("w1", nthreads=2), join("w2", nthreads=2))
    cts = computes(
        handle(s, submit([task(f"t-{i}") for i in range(4)], [f"t-{i}" for i in range(4)]))
    )
    assert sorted(ct.worker for ct in cts) == ["w1", "w1", "w2", "w2"]


# -- admission control -----------------------------------------------------------------------


def test_a_big_map_is_admitted_a_worker_round_trip_at_a_time() -> None:
    s = new_state(validate=False)
    handle(s, join("w1"), join("w2"))
    keys = [f"inc-{i}" for i in range(1000)]
    cts = computes(handle(s, submit([task(k, priority=(i,)) for i, k in enumerate(keys)], keys)))
    assert len(cts) == 2 * CAP1 == 22
    assert {ct.key for ct in cts} == set(keys[:22])  # best priorities first
    assert len(s.queued) == 1000 - 22 and s.n_tasks_by_state()["queued"] == 978
    s.validate()
    # one finishes: exactly one more is admitted, onto the worker that has room
    new = one_compute(handle(s, finished(cts[0])))
    assert new.worker == cts[0].worker and new.key == keys[22]
    assert len(s.queued) == 977


def test_admission_follows_measured_durations() -> None:
    s = new_state()
    handle(s, join("w1"))
    keys = [f"slow-{i}" for i in range(30)]
    cts = computes(handle(s, submit([task(k, priority=(i,)) for i, k in enumerate(keys)], keys)))
    assert len(cts) == CAP1
    # it took a whole second: a round trip is covered by one queued task per thread
    assert computes(handle(s, finished(cts[0], duration=1.0))) == []
    assert capacity(1, 0.005, s.prefixes["slow"].duration) == 2
    for ct in cts[1:9]:
        assert computes(handle(s, finished(ct, duration=1.0))) == []
    assert len(s.workers["w1"].processing) == 2
    assert len(computes(handle(s, finished(cts[9], duration=1.0)))) == 1


def test_queued_tasks_are_handed_out_by_priority() -> None:
    s = new_state()
    handle(s, join("w1"))
    keys = [f"t-{i}" for i in range(CAP1 + 5)]
    prios = {k: (-i,) for i, k in enumerate(keys)}  # the last key is the most urgent
    cts = computes(handle(s, submit([task(k, priority=prios[k]) for k in keys], keys)))
    assert {ct.key for ct in cts} == set(keys[5:])
    order = []
    for ct in cts[:5]:
        order.append(one_compute(handle(s, finished(ct))).key)
    assert order == ["t-4", "t-3", "t-2", "t-1", "t-0"]


def test_a_finished_tasks_dependent_goes_before_queued_siblings() -> None:
    s = new_state()
    handle(s, join("w1"))
    roots = [f"r-{i}" for i in range(CAP1 + 3)]
    tasks = [task(k, priority=(1, i)) for i, k in enumerate(roots)]
    tasks.append(task("sum-0", roots[0], priority=(0,)))
    cts = computes(handle(s, submit(tasks, ["sum-0", *roots])))
    assert cts[0].key == "r-0"
    assert one_compute(handle(s, finished(cts[0]))).key == "sum-0"


def test_popping_the_queue_prefers_tasks_whose_inputs_are_local() -> None:
    s = new_state()
    two_inputs_on_two_workers(s, big=1000, small=1000)
    fill = [task(f"f-{i}", priority=(0, i)) for i in range(2 * CAP1)]
    cts = computes(handle(s, submit(fill, [t.key for t in fill])))
    assert len(cts) == 2 * CAP1  # both workers full
    later = [task("on-y", "y", priority=(1, 0)), task("on-x", "x", priority=(1, 1))]
    assert computes(handle(s, submit(later, ["on-y", "on-x"]))) == []
    w1_task = next(ct for ct in cts if ct.worker == "w1")
    nxt = one_compute(handle(s, finished(w1_task)))
    assert (nxt.key, nxt.worker) == ("on-x", "w1")


def test_seceded_task_gives_its_worker_room() -> None:
    s = new_state()
    handle(s, join("w1"))
    keys = [f"t-{i}" for i in range(CAP1 + 2)]
    cts = computes(handle(s, submit([task(k, priority=(i,)) for i, k in enumerate(keys)], keys)))
    ev = TaskSeceded(stimulus_id=sid(), worker="w1", key=cts[0].key, run_id=cts[0].run_id)
    assert one_compute(handle(s, ev)).key == keys[CAP1]
    assert s.workers["w1"].long_running == {s.tasks[cts[0].key]: None}


def test_paused_worker_gets_no_new_tasks_until_it_runs_again() -> None:
    s = new_state()
    handle(s, join("w1"))
    handle(s, WorkerStatusChanged(stimulus_id=sid(), worker="w1", status="paused"))
    assert computes(handle(s, submit([task("a")], ["a"]))) == []
    assert s.tasks["a"].state == "no-worker"
    ct = one_compute(
        handle(s, WorkerStatusChanged(stimulus_id=sid(), worker="w1", status="running"))
    )
    assert ct.key == "a"


def test_no_workers_means_no_worker_until_one_joins() -> None:
    s = new_state()
    handle(s, submit([task("a"), task("b")], ["a", "b"]))
    assert s.n_tasks_by_state() == {"no-worker": 2}
    assert {ct.key for ct in computes(handle(s, join("w1")))} == {"a", "b"}


def test_queued_tasks_wait_for_a_worker_that_joins_later() -> None:
    s = new_state()
    handle(s, join("w1"))
    keys = [f"t-{i}" for i in range(CAP1 + 4)]
    handle(s, submit([task(k) for k in keys], keys))
    assert len(computes(handle(s, join("w2")))) == 4
    assert not s.queued


# -- restrictions and resources --------------------------------------------------------------


def test_worker_restrictions_by_address_and_name() -> None:
    s = new_state()
    handle(s, join("tcp://a:1", name="alice"), join("tcp://b:1", name="bob"))
    out = handle(
        s, submit([task("x", workers=("bob",)), task("y", workers=("tcp://a:1",))], ["x", "y"])
    )
    assert {ct.key: ct.worker for ct in computes(out)} == {"x": "tcp://b:1", "y": "tcp://a:1"}


def test_unsatisfiable_restriction_waits_in_no_worker() -> None:
    s = new_state()
    handle(s, join("w1"))
    assert computes(handle(s, submit([task("x", workers=("w9",))], ["x"]))) == []
    assert s.tasks["x"].state == "no-worker" and s.tasks["x"] in s.unrunnable
    assert computes(handle(s, join("w3"))) == []
    assert one_compute(handle(s, join("w9"))).worker == "w9"


def test_allow_other_workers_relaxes_restrictions() -> None:
    s = new_state()
    handle(s, join("w1"))
    out = handle(s, submit([task("x", workers=("w9",), allow_other_workers=True)], ["x"]))
    assert one_compute(out).worker == "w1"


def test_restricted_worker_leaving_sends_queued_tasks_to_no_worker() -> None:
    s = new_state()
    handle(s, join("w1"), join("w2"))
    keys = [f"t-{i}" for i in range(CAP1 + 2)]
    handle(s, submit([task(k, workers=("w2",)) for k in keys], keys))
    assert len(s.queued) == 2
    handle(s, leave("w2", expected=True))
    assert s.n_tasks_by_state() == {"no-worker": len(keys)}


def test_resources_wait_for_a_big_enough_worker() -> None:
    s = new_state()
    handle(s, join("w1", resources={"GPU": 1}))
    out = handle(s, submit([task("g", resources={"GPU": 2})], ["g"]))
    assert computes(out) == [] and s.tasks["g"].state == "no-worker"
    ct = one_compute(handle(s, join("w2", resources={"GPU": 2})))
    assert ct.worker == "w2" and ct.resources == {"GPU": 2}
    assert s.workers["w2"].used_resources == {"GPU": 2}
    handle(s, finished(ct))
    assert s.workers["w2"].used_resources == {}


# -- failures ---------------------------------------------------------------------------------


def test_retries_run_the_task_again() -> None:
    s = new_state()
    handle(s, join("w1"))
    ct = one_compute(handle(s, submit([task("x", retries=1)], ["x"])))
    out = handle(s, erred(ct))
    assert isinstance(out[0], FreeKeys) and out[0].keys == ("x",)
    again = one_compute(out)
    assert again.run_id > ct.run_id and s.tasks["x"].retries == 0
    (msg,) = of_type(handle(s, erred(again)), KeyErred)
    assert isinstance(msg.exception, ZeroDivisionError)
    assert s.tasks["x"].state == "erred"


def test_errors_propagate_to_dependents_and_name_the_culprit() -> None:
    s = new_state()
    handle(s, join("w1"))
    ct = one_compute(handle(s, submit([task("a"), task("b", "a"), task("c", "b")], ["a", "c"])))
    out = handle(s, erred(ct, ValueError("bad")))
    msgs = of_type(out, KeyErred)
    assert [m.key for m in msgs] == ["a", "c"]
    assert all(isinstance(m.exception, ValueError) for m in msgs)
    assert msgs[1].traceback_text == "Traceback ..."
    assert s.tasks["c"].exception_blame is s.tasks["a"]
    assert s.tasks["b"].state == "erred" and s.tasks["b"].exception_blame is s.tasks["a"]


def test_new_task_on_an_erred_key_errs_at_once() -> None:
    s = new_state()
    handle(s, join("w1"))
    ct = one_compute(handle(s, submit([task("a")], ["a"])))
    handle(s, erred(ct))
    out = handle(s, submit([NewTask(key="a", run_spec=None), task("d", "a")], ["d"]))
    (msg,) = of_type(out, KeyErred)
    assert msg.key == "d" and s.tasks["d"].exception_blame is s.tasks["a"]
    assert computes(out) == []


def test_retry_requested_reruns_erred_key_and_erred_dependencies() -> None:
    s = new_state()
    handle(s, join("w1"))
    ct = one_compute(handle(s, submit([task("a"), task("b", "a")], ["b"])))
    handle(s, erred(ct))
    out = handle(s, RetryRequested(stimulus_id=sid(), client="c1", keys=("b",)))
    assert of_type(out, KeyRetried) == [
        KeyRetried(stimulus_id=out[0].stimulus_id, client="c1", key="b")
    ]
    assert one_compute(out).key == "a"
    assert s.tasks["b"].state == "waiting" and s.tasks["b"].exception is None


def test_stale_run_ids_are_ignored() -> None:
    s = new_state()
    handle(s, join("w1"))
    ct = one_compute(handle(s, submit([task("x", retries=1)], ["x"])))
    again = one_compute(handle(s, erred(ct)))
    assert handle(s, finished(ct)) == []  # the first attempt, reported late
    assert handle(s, erred(ct)) == []
    assert s.tasks["x"].state == "processing" and s.tasks["x"].run_id == again.run_id
    assert of_type(handle(s, finished(again)), KeyInMemory)


def test_completion_of_a_forgotten_task_frees_it_on_the_worker() -> None:
    s = new_state()
    handle(s, join("w1"))
    ct = one_compute(handle(s, submit([task("x")], ["x"])))
    out = handle(s, KeysReleased(stimulus_id=sid(), client="c1", keys=("x",)))
    assert out == [FreeKeys(stimulus_id=out[0].stimulus_id, worker="w1", keys=("x",))]
    assert "x" not in s.tasks
    out = handle(s, finished(ct))
    assert out == [FreeKeys(stimulus_id=out[0].stimulus_id, worker="w1", keys=("x",))]


def test_second_copy_of_a_result_becomes_a_replica() -> None:
    s = new_state()
    handle(s, join("w1"), join("w2"))
    ct = one_compute(handle(s, submit([task("x")], ["x"])))
    handle(s, finished(ct))
    assert handle(s, finished(msgspec.structs.replace(ct, worker="w2"))) == []
    assert sorted(s.who_has()["x"]) == ["w1", "w2"]


# -- releasing and forgetting -----------------------------------------------------------------


def test_releasing_many_keys_sends_each_worker_one_free_keys() -> None:
    s = new_state()
    handle(s, join("w1"), join("w2"))
    keys = [f"x-{i}" for i in range(20)]
    pending = computes(handle(s, submit([task(k) for k in keys], keys)))
    while pending:  # queued tasks are handed out as others finish
        pending += computes(handle(s, finished(pending.pop())))
    assert all(ts.state == "memory" for ts in s.tasks.values())
    held = {w: sorted(k for k in keys if s.who_has([k])[k] == [w]) for w in ("w1", "w2")}
    assert held["w1"] and held["w2"]
    out = handle(s, KeysReleased(stimulus_id=sid(), client="c1", keys=tuple(keys)))
    frees = of_type(out, FreeKeys)
    assert sorted((f.worker, sorted(f.keys)) for f in frees) == sorted(held.items())
    assert s.tasks == {}


def test_release_frees_memory_on_every_holder_and_forgets() -> None:
    s = new_state()
    handle(s, join("w1"), join("w2"))
    ct = one_compute(handle(s, submit([task("x")], ["x"])))
    handle(s, finished(ct))
    handle(s, WorkerAddedKeys(stimulus_id=sid(), worker="w2", keys=("x",)))
    out = handle(s, KeysReleased(stimulus_id=sid(), client="c1", keys=("x",)))
    assert sorted(f.worker for f in of_type(out, FreeKeys)) == ["w1", "w2"]
    assert s.tasks == {} and s.workers["w1"].nbytes == 0


def test_release_walks_up_dependencies() -> None:
    s = new_state()
    handle(s, join("w1"))
    ct = one_compute(handle(s, submit([task("a"), task("b", "a")], ["b"])))
    handle(s, finished(handle_one(s, ct)))
    assert set(s.tasks) == {"a", "b"}
    handle(s, KeysReleased(stimulus_id=sid(), client="c1", keys=("b",)))
    assert s.tasks == {}


def handle_one(s: SchedulerState, ct: ComputeTask) -> ComputeTask:
    return one_compute(handle(s, finished(ct)))


def test_released_queued_and_no_worker_tasks_leave_quietly() -> None:
    s = new_state()
    handle(s, join("w1"))
    keys = [f"t-{i}" for i in range(CAP1 + 2)]
    handle(s, submit([*(task(k) for k in keys), task("r", workers=("w9",))], [*keys, "r"]))
    queued = [ts.key for ts in s.queued]
    out = handle(s, KeysReleased(stimulus_id=sid(), client="c1", keys=(*queued, "r")))
    assert out == [] and not s.queued and not s.unrunnable


def test_two_clients_keep_a_key_alive_until_both_release() -> None:
    s = new_state()
    handle(s, join("w1"))
    ct = one_compute(handle(s, submit([task("x")], ["x"], client="c1")))
    handle(s, submit([task("x")], ["x"], client="c2"))
    out = handle(s, finished(ct))
    assert sorted(m.client for m in of_type(out, KeyInMemory)) == ["c1", "c2"]
    assert handle(s, KeysReleased(stimulus_id=sid(), client="c1", keys=("x",))) == []
    assert of_type(handle(s, ClientDisconnected(stimulus_id=sid(), client="c2")), FreeKeys)
    assert s.tasks == {} and "c2" not in s.clients


def test_keys_desired_after_memory_or_error_tells_the_client() -> None:
    s = new_state()
    handle(s, join("w1"), ClientConnected(stimulus_id=sid(), client="c2"))
    cts = computes(handle(s, submit([task("x"), task("y")], ["x", "y"])))
    handle(s, finished(cts[0]), erred(cts[1]))
    out = handle(s, KeysDesired(stimulus_id=sid(), client="c2", keys=("x", "y", "nope")))
    assert [(type(m).__name__, m.key) for m in out] == [  # type: ignore[attr-defined]
        ("KeyInMemory", "x"),
        ("KeyErred", "y"),
        ("KeyErred", "nope"),
    ]
    assert isinstance(of_type(out, KeyErred)[1].exception, FutureLostError)
    assert of_type(out, KeyInMemory)[0].who_has == ("w1",)  # a late client learns the holders


def test_keys_desired_for_released_data_recomputes_it() -> None:
    s = new_state()
    handle(s, join("w1"))
    ct = one_compute(handle(s, submit([task("a"), task("b", "a")], ["b"])))
    handle(s, finished(handle_one(s, ct)))
    assert s.tasks["a"].state == "released"
    ct = one_compute(handle(s, KeysDesired(stimulus_id=sid(), client="c1", keys=("a",))))
    assert ct.key == "a"


def test_cancel_releases_for_that_client_or_everyone() -> None:
    s = new_state()
    handle(s, join("w1"))
    handle(s, submit([task("x")], ["x"], client="c1"), submit([task("x")], ["x"], client="c2"))
    out = handle(s, KeysCancelled(stimulus_id=sid(), client="c1", keys=("x",)))
    assert [(m.client, m.keys) for m in out] == [("c1", ("x",))]  # type: ignore[attr-defined]
    assert s.tasks["x"].state == "processing"
    out = handle(s, KeysCancelled(stimulus_id=sid(), client="c1", keys=("x",), force=True))
    msgs = of_type(out, KeysCancelledForClient)
    assert [(m.client, m.keys) for m in msgs] == [("c2", ("x",))] and "forced" in msgs[0].reason
    assert of_type(out, FreeKeys) and s.tasks == {}


def test_cancel_with_a_reason_tells_clients_that_reason() -> None:
    s = new_state()
    handle(s, join("w1"))
    handle(s, submit([task("x")], ["x"], client="c1"), submit([task("y")], ["y"], client="c2"))
    reason = "the cluster was restarted"
    event = KeysCancelled(
        stimulus_id=sid(), client="scheduler", keys=("x", "y"), force=True, reason=reason
    )
    msgs = of_type(handle(s, event), KeysCancelledForClient)
    assert sorted((m.client, m.keys, m.reason) for m in msgs) == [
        ("c1", ("x",), reason),
        ("c2", ("y",), reason),
    ]
    assert s.tasks == {}


def test_conflicting_token_is_refused() -> None:
    s = new_state()
    handle(s, join("w1"))
    ct = one_compute(handle(s, submit([task("x", token="t1")], ["x"])))
    out = handle(s, submit([task("x", token="t2")], ["x"], client="c2"))
    (msg,) = out
    assert isinstance(msg, KeyErred) and msg.client == "c2"
    assert isinstance(msg.exception, ValueError) and "already defined differently" in str(
        msg.exception
    )
    assert s.tasks["x"].token == "t1" and list(s.tasks["x"].who_wants) == ["c1"]
    assert handle(s, submit([task("x", token="t1")], ["x"], client="c2")) == []
    assert of_type(handle(s, finished(ct)), KeyInMemory)


def test_a_forgotten_key_may_be_redefined() -> None:
    s = new_state()
    handle(s, join("w1"))
    ct = one_compute(handle(s, submit([task("x", token="t1")], ["x"])))
    handle(s, KeysReleased(stimulus_id=sid(), client="c1", keys=("x",)), finished(ct))
    assert one_compute(handle(s, submit([task("x", token="t2")], ["x"]))).key == "x"


# -- scattered data ---------------------------------------------------------------------------


def scatter(s: SchedulerState, key: str, *workers: str) -> list[object]:
    ev = DataScattered(
        stimulus_id=sid(),
        client="c1",
        who_has={key: workers},
        nbytes={key: 100},
        type_names={key: "ndarray"},
    )
    return list(handle(s, ev))


def test_scattered_data_is_in_memory_at_once() -> None:
    s = new_state()
    handle(s, join("w1"), join("w2"))
    out = scatter(s, "d", "w1", "w2")
    assert [type(m) for m in out] == [KeyInMemory]
    assert s.tasks["d"].state == "memory" and sorted(s.who_has()["d"]) == ["w1", "w2"]
    ct = one_compute(handle(s, submit([task("e", "d")], ["e"])))
    assert ct.who_has["d"] and ct.nbytes == {"d": 100}


def test_scattered_data_lost_with_its_last_holder_errs() -> None:
    s = new_state()
    handle(s, join("w1"), join("w2"))
    scatter(s, "d", "w1")
    handle(s, submit([task("e", "d", workers=("w2",)), task("f", "e")], ["f"]))
    out = handle(s, leave("w1"))
    msgs = of_type(out, KeyErred)
    assert [m.key for m in msgs] == ["d", "f"]
    assert isinstance(msgs[0].exception, FutureLostError) and "lost" in msgs[0].exception_text
    assert of_type(out, FreeKeys) == [
        FreeKeys(stimulus_id=out[0].stimulus_id, worker="w2", keys=("e",))
    ]


def test_released_scattered_data_is_freed_and_forgotten() -> None:
    s = new_state()
    handle(s, join("w1"))
    scatter(s, "d", "w1")
    handle(s, KeysReleased(stimulus_id=sid(), client="c1", keys=("d",)))
    assert s.tasks == {}


# -- workers leaving ------------------------------------------------------------------------


def test_worker_leaving_reschedules_its_tasks() -> None:
    s = new_state()
    handle(s, join("w1"))
    ct = one_compute(handle(s, submit([task("x")], ["x"])))
    handle(s, join("w2"))
    out = handle(s, leave("w1", expected=True))
    again = one_compute(out)
    assert again.worker == "w2" and again.run_id > ct.run_id
    assert not of_type(out, FreeKeys)  # nothing is sent to the departed worker
    assert s.tasks["x"].suspicious == 0
    assert handle(s, finished(ct)) == []  # the dead worker's report is ignored


def test_worker_leaving_recomputes_lost_inputs() -> None:
    s = new_state()
    handle(s, join("w1"), join("w2"))
    ct = one_compute(handle(s, submit([task("a", workers=("w1",))], ["a"])))
    handle(s, finished(ct))
    ct_b = one_compute(handle(s, submit([task("b", "a", workers=("w2",)), task("c", "b")], ["c"])))
    out = handle(s, leave("w1"))
    # b was running on w2 with an input that is gone: cancelled, waits for a again
    assert of_type(out, FreeKeys) == [
        FreeKeys(stimulus_id=out[0].stimulus_id, worker="w2", keys=("b",))
    ]
    assert s.tasks["a"].state == "no-worker"  # restricted to the worker that left
    assert s.tasks["b"].state == "waiting" and s.tasks["b"].waiting_on == {s.tasks["a"]}
    ct_a = one_compute(handle(s, join("w1")))
    assert ct_a.key == "a"
    ct_b2 = one_compute(handle(s, finished(ct_a)))
    assert ct_b2.key == "b" and ct_b2.run_id > ct_b.run_id


def test_wanted_key_lost_with_its_worker_is_recomputed_elsewhere() -> None:
    s = new_state()
    handle(s, join("w1"))
    handle(s, finished(one_compute(handle(s, submit([task("x")], ["x"])))))
    handle(s, join("w2"))
    out = handle(s, leave("w1"))
    ct = one_compute(out)
    assert (ct.key, ct.worker) == ("x", "w2") and s.tasks["x"].suspicious == 0
    # the client hears that its finished key is pending again (it must not fetch it)
    assert [(m.client, m.key) for m in of_type(out, KeyLost)] == [("c1", "x")]


def test_a_released_key_is_not_reported_lost() -> None:
    s = new_state()
    handle(s, join("w1"))
    handle(s, finished(one_compute(handle(s, submit([task("x")], ["x"])))))
    out = handle(s, KeysReleased(stimulus_id=sid(), client="c1", keys=("x",)))
    assert not of_type(out, KeyLost)


def test_killed_worker_after_three_unexpected_deaths_blames_only_the_started_task() -> None:
    s = new_state()
    handle(s, join("w0"))
    keys = ["bad", *(f"ok-{i}" for i in range(CAP1 - 1))]
    cts = {ct.key: ct for ct in computes(handle(s, submit([task(k) for k in keys], keys)))}
    for death in range(1, 4):
        address = cts["bad"].worker
        handle(s, started(cts["bad"]))
        out = handle(s, join(f"w{death}"), leave(address, reason="segfault"))
        if death < 3:
            cts = {ct.key: ct for ct in computes(out)}
            assert s.tasks["bad"].suspicious == death
    (msg,) = of_type(out, KeyErred)
    assert msg.key == "bad" and isinstance(msg.exception, KilledWorker)
    assert msg.exception.key == "bad" and msg.exception.deaths == 3
    assert "bad" in msg.exception_text and "segfault" in msg.exception_text
    assert all(s.tasks[k].suspicious == 0 for k in keys[1:])
    assert all(s.tasks[k].state == "processing" for k in keys[1:])


def test_without_a_known_started_task_the_first_assigned_are_suspected() -> None:
    s = new_state()
    handle(s, join("w1", nthreads=2), join("w2", nthreads=2))
    handle(
        s,
        submit(
            [task(f"t-{i}", workers=("w1",), allow_other_workers=True) for i in range(5)],
            [f"t-{i}" for i in range(5)],
        ),
    )
    handle(s, leave("w1"))
    assert [s.tasks[f"t-{i}"].suspicious for i in range(5)] == [1, 1, 0, 0, 0]


def test_the_tasks_its_nanny_read_as_running_are_the_only_suspects() -> None:
    s = new_state()
    handle(s, join("w1", nthreads=2), join("w2", nthreads=2))
    keys = [f"t-{i}" for i in range(5)]
    tasks = [task(k, workers=("w1",), allow_other_workers=True) for k in keys]
    cts = {ct.key: ct for ct in computes(handle(s, submit(tasks, keys)))}
    handle(s, started(cts["t-0"]))  # what it said it started is not what the nanny read
    running = (("t-3", cts["t-3"].run_id), ("t-1", cts["t-1"].run_id + 7), ("nope", 1))
    handle(s, leave("w1", running=running))
    assert [s.tasks[k].suspicious for k in keys] == [0, 0, 0, 1, 0]  # stale run_id: not t-1


def test_nothing_matching_in_the_nannys_read_falls_back_to_the_first_assigned() -> None:
    s = new_state()
    handle(s, join("w1", nthreads=2), join("w2", nthreads=2))
    keys = [f"t-{i}" for i in range(5)]
    handle(s, submit([task(k, workers=("w1",), allow_other_workers=True) for k in keys], keys))
    handle(s, leave("w1", running=()))
    assert [s.tasks[k].suspicious for k in keys] == [1, 1, 0, 0, 0]


def test_expected_departure_blames_nobody() -> None:
    s = new_state(allowed_failures=1)
    handle(s, join("w1"), join("w2"))
    ct = one_compute(
        handle(s, submit([task("x", workers=("w1",), allow_other_workers=True)], ["x"]))
    )
    handle(s, started(ct))
    assert one_compute(handle(s, leave("w1", expected=True))).worker == "w2"


# -- replicas reported by workers ------------------------------------------------------------


def test_worker_released_last_replica_of_needed_key_recomputes() -> None:
    s = new_state()
    handle(s, join("w1"))
    ct = one_compute(handle(s, submit([task("x")], ["x"])))
    handle(s, finished(ct))
    out = handle(s, WorkerReleasedKey(stimulus_id=sid(), worker="w1", key="x"))
    assert one_compute(out).key == "x" and not of_type(out, FreeKeys)


def test_worker_added_keys_adds_replicas_and_refuses_unknown_ones() -> None:
    s = new_state()
    handle(s, join("w1"), join("w2"))
    ct = one_compute(handle(s, submit([task("x")], ["x"])))
    handle(s, finished(ct))
    out = handle(s, WorkerAddedKeys(stimulus_id=sid(), worker="w2", keys=("x", "junk")))
    assert out == [FreeKeys(stimulus_id=out[0].stimulus_id, worker="w2", keys=("junk",))]
    assert sorted(s.who_has(["x"])["x"]) == ["w1", "w2"]


def test_data_missing_drops_the_errant_replica() -> None:
    s = new_state()
    handle(s, join("w1"), join("w2"))
    ct = one_compute(handle(s, submit([task("x")], ["x"])))
    handle(s, finished(ct))
    handle(s, WorkerAddedKeys(stimulus_id=sid(), worker="w2", keys=("x",)))
    ev = DataMissing(stimulus_id=sid(), worker="w3", key="x", errant_worker="w2")
    assert handle(s, ev) == [] and s.who_has()["x"] == ["w1"]
    ev = DataMissing(stimulus_id=sid(), worker="w3", key="x", errant_worker="w1")
    assert one_compute(handle(s, ev)).key == "x"


def test_who_has_refresh() -> None:
    s = new_state()
    handle(s, join("w1"))
    handle(s, finished(one_compute(handle(s, submit([task("x")], ["x"])))))
    out = handle(s, WhoHasRefreshRequested(stimulus_id=sid(), worker="w1", keys=("x", "y")))
    assert out == [
        RefreshWhoHas(stimulus_id=out[0].stimulus_id, worker="w1", who_has={"x": ("w1",), "y": ()})
    ]


def test_steal_response_is_harmless() -> None:
    s = new_state()
    handle(s, join("w1"))
    assert handle(s, StealResponded(stimulus_id=sid(), worker="w1", key="x", state=None)) == []


# -- bookkeeping ------------------------------------------------------------------------------


def test_story_follows_keys_and_stimuli() -> None:
    s = new_state()
    handle(s, join("w1"))
    ev = submit([task("x")], ["x"])
    ct = one_compute(handle(s, ev))
    done = finished(ct)
    handle(s, done)
    assert [(e[1], e[2]) for e in s.story("x")] == [
        ("released", "waiting"),
        ("waiting", "processing"),
        ("processing", "memory"),
    ]
    assert [e[2] for e in s.story(done.stimulus_id)] == ["memory"]
    assert s.story("x")[0][3] == ev.stimulus_id


def test_story_is_bounded() -> None:
    s = new_state(log_length=5)
    handle(s, join("w1"))
    handle(s, submit([task(f"t-{i}") for i in range(10)], [f"t-{i}" for i in range(10)]))
    assert len(s.transition_log) == 5


def test_an_illegal_transition_raises_with_the_story() -> None:
    s = new_state()
    handle(s, submit([task("x")], ["x"]))
    with pytest.raises(InvalidTransition) as info:
        s.engine.transition(s.tasks["x"], "memory")
    assert info.value.key == "x" and info.value.start == "no-worker"
    assert info.value.story and "no-worker" in str(info.value)


def test_validate_catches_a_broken_invariant() -> None:
    s = new_state()
    handle(s, join("w1"), submit([task("x")], ["x"]))
    s.tasks["x"].state = "memory"
    with pytest.raises(AssertionError, match="'x'"):
        s.validate()


def test_unknown_event_is_a_bug() -> None:
    s = new_state()
    with pytest.raises(TypeError):
        handle(s, SchedulerEvent(stimulus_id="x"))


def test_queries() -> None:
    s = new_state()
    handle(s, join("w1", nthreads=4), join("w2", nthreads=2))
    assert s.nthreads() == {"w1": 4, "w2": 2}
    assert s.has_what(["w2", "nope"]) == {"w2": [], "nope": []}
    assert s.who_has(["nope"]) == {"nope": []}
    handle(s, submit([task("x")], ["x"]))
    assert s.n_tasks_by_state() == {"processing": 1}
    assert list(s.clients["c1"].wants_what) == [s.tasks["x"]]
    assert repr(s.tasks["x"]) == "<SchedulerTask 'x' processing>"


def test_events_from_unknown_workers_are_ignored() -> None:
    s = new_state()
    handle(s, join("w1"))
    ct = one_compute(handle(s, submit([task("x")], ["x"])))
    ghost = ComputeTask(
        stimulus_id="g",
        worker="ghost",
        key="x",
        run_id=ct.run_id,
        run_spec=None,
        priority=(0,),
        who_has={},
        nbytes={},
    )
    assert handle(s, finished(ghost), erred(ghost), started(ghost), leave("ghost")) == []
    assert handle(s, WorkerStatusChanged(stimulus_id=sid(), worker="ghost", status="paused")) == []
    assert handle(s, join("w1")) == []  # a second join under a known address


# -- more corners -----------------------------------------------------------------------------


def test_restricted_tasks_queue_for_their_own_worker() -> None:
    s = new_state()
    handle(s, join("w1"), join("w2"))
    keys = [f"r-{i}" for i in range(CAP1 + 2)]
    cts = computes(
        handle(
            s, submit([task(k, workers=("w2",), priority=(i,)) for i, k in enumerate(keys)], keys)
        )
    )
    assert len(cts) == CAP1 and {ct.worker for ct in cts} == {"w2"}
    other = one_compute(handle(s, submit([task("free")], ["free"])))
    assert other.worker == "w1"
    assert computes(handle(s, finished(other))) == []  # w1's room is no use to them
    nxt = one_compute(handle(s, finished(cts[0])))
    assert (nxt.key, nxt.worker) == (keys[CAP1], "w2")


def test_scatter_without_known_holders_is_lost() -> None:
    s = new_state()
    out = scatter(s, "d", "nowhere")
    (msg,) = of_type(out, KeyErred)  # type: ignore[arg-type]
    assert isinstance(msg.exception, FutureLostError) and "d" not in s.tasks


def test_scatter_onto_data_in_memory_adds_replicas() -> None:
    s = new_state()
    handle(s, join("w1"), join("w2"))
    handle(s, finished(one_compute(handle(s, submit([task("x")], ["x"])))))
    out = scatter(s, "x", "w2")
    assert [type(m) for m in out] == [KeyInMemory] and len(s.who_has()["x"]) == 2


def test_scatter_over_a_running_task_cancels_it() -> None:
    s = new_state()
    handle(s, join("w1"), join("w2"))
    ct = one_compute(handle(s, submit([task("x")], ["x"])))
    out = scatter(s, "x", "w2")
    assert [type(m) for m in out] == [FreeKeys, KeyInMemory]
    assert s.tasks["x"].state == "memory" and s.who_has()["x"] == ["w2"]
    assert handle(s, finished(ct)) == []  # then a late result is a second replica
    assert sorted(s.who_has()["x"]) == sorted(["w1", "w2"])


def test_input_lost_while_its_dependent_still_waits() -> None:
    s = new_state()
    handle(s, join("w1"), join("w2"))
    ct_a = one_compute(handle(s, submit([task("a", workers=("w1",))], ["a"])))
    handle(s, finished(ct_a))
    handle(s, submit([task("b", workers=("w2",)), task("c", "a", "b")], ["c"]))
    assert s.tasks["c"].waiting_on == {s.tasks["b"]}
    handle(s, leave("w1"))
    assert s.tasks["c"].waiting_on == {s.tasks["a"], s.tasks["b"]}
    assert s.tasks["a"].state == "no-worker"


def test_input_lost_while_its_dependent_is_queued() -> None:
    s = new_state()
    handle(s, join("w1"), join("w2"))
    handle(s, finished(one_compute(handle(s, submit([task("a", workers=("w2",))], ["a"])))))
    fill = [task(f"f-{i}", workers=("w1",)) for i in range(CAP1)]
    handle(s, submit(fill, [t.key for t in fill]))
    handle(s, submit([task("b", "a", workers=("w1",))], ["b"]))
    assert s.tasks["b"].state == "queued"
    handle(s, leave("w2"))
    assert s.tasks["b"].state == "waiting" and s.tasks["b"] not in s.queued  # type: ignore[comparison-overlap]


def test_error_reported_by_a_worker_not_running_the_task() -> None:
    s = new_state()
    handle(s, join("w1"), join("w2"))
    ct = one_compute(handle(s, submit([task("x")], ["x"])))
    elsewhere = msgspec.structs.replace(ct, worker="w2" if ct.worker == "w1" else "w1")
    out = handle(s, erred(elsewhere))
    assert out == [FreeKeys(stimulus_id=out[0].stimulus_id, worker=elsewhere.worker, keys=("x",))]
    assert s.tasks["x"].state == "processing"


def test_retry_forgives_worker_deaths() -> None:
    s = new_state(allowed_failures=1)
    handle(s, join("w1"), join("w2"))
    ct = one_compute(handle(s, submit([task("x")], ["x"])))
    handle(s, started(ct))
    (msg,) = of_type(handle(s, leave(ct.worker)), KeyErred)
    assert isinstance(msg.exception, KilledWorker)
    out = handle(s, RetryRequested(stimulus_id=sid(), client="c1", keys=("x",)))
    assert s.tasks["x"].suspicious == 0 and one_compute(out).key == "x"


def test_unknown_keys_and_workers_in_client_and_replica_events_are_ignored() -> None:
    s = new_state()
    handle(s, join("w1"))
    assert handle(s, KeysCancelled(stimulus_id=sid(), client="c1", keys=("nope",))) == []
    assert handle(s, KeysReleased(stimulus_id=sid(), client="nobody", keys=("nope",))) == []
    assert handle(s, WorkerReleasedKey(stimulus_id=sid(), worker="w1", key="nope")) == []
    assert handle(s, WorkerAddedKeys(stimulus_id=sid(), worker="ghost", keys=("nope",))) == []
    ev = DataMissing(stimulus_id=sid(), worker="w1", key="nope", errant_worker="w1")
    assert handle(s, ev) == []
    out = handle(s, submit([], ["never-submitted"]))
    assert isinstance(of_type(out, KeyErred)[0].exception, FutureLostError)


def test_worker_reporting_a_fetched_copy_of_its_own_task_is_not_told_to_free_it() -> None:
    s = new_state()
    handle(s, join("w1"))
    ct = one_compute(handle(s, submit([task("x")], ["x"])))
    assert handle(s, WorkerAddedKeys(stimulus_id=sid(), worker="w1", keys=(ct.key,))) == []


# -- small results travel with key-in-memory ---------------------------------------------------


def test_compute_task_asks_for_an_inline_result_only_when_a_client_wants_the_key() -> None:
    s = new_state()
    handle(s, join("w1"))
    ct = one_compute(handle(s, submit([task("a"), task("b", "a")], ["b"])))
    assert ct.key == "a" and ct.inline_result is False  # an input nobody waits for
    ct = one_compute(handle(s, finished(ct)))
    assert ct.key == "b" and ct.inline_result is True


def test_a_fire_and_forget_key_gets_no_inline_result() -> None:
    from shoal.scheduler.state_records import FIRE_AND_FORGET_CLIENT

    s = new_state()
    handle(s, join("w1"))
    ct = one_compute(handle(s, submit([task("f")], ["f"], client=FIRE_AND_FORGET_CLIENT)))
    assert ct.key == "f" and ct.inline_result is False  # nobody to send the copy to


def test_key_in_memory_carries_the_value_from_task_finished_and_the_scheduler_keeps_none() -> None:
    s = new_state()
    handle(s, join("w1"))
    ct = one_compute(handle(s, submit([task("x")], ["x"], client="c1")))
    assert handle(s, submit([], ["x"], client="c2")) == []
    blob = object()  # opaque to the scheduler
    out = handle(s, msgspec.structs.replace(finished(ct), value=blob))
    msgs = of_type(out, KeyInMemory)
    assert sorted(m.client for m in msgs) == ["c1", "c2"]
    assert all(m.value is blob for m in msgs)
    assert all(blob is not getattr(s.tasks["x"], name, None) for name in s.tasks["x"].__slots__)
    # a later client asking for the key gets no value (the scheduler did not keep it)
    (late,) = of_type(handle(s, submit([], ["x"], client="c3")), KeyInMemory)
    assert late.value is None and late.who_has == ("w1",)
