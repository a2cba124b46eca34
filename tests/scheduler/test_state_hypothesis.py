"""Random event sequences against SchedulerState, with every invariant checked after each event.

The test plays clients and workers. Workers only report on tasks the machine actually
sent them (sometimes replaying an old attempt's report late); at the end every worker
is brought back, every outstanding task is completed, and every key a client still wants
must have ended in memory or erred.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from shoal.scheduler.events import (
    ClientDisconnected,
    DataMissing,
    DataScattered,
    GraphSubmitted,
    KeysCancelled,
    KeysDesired,
    KeysReleased,
    NewTask,
    RetryRequested,
    SchedulerEvent,
    StealResponded,
    TaskErred,
    TaskFinished,
    TaskRejoined,
    TaskSeceded,
    TaskStarted,
    WorkerAddedKeys,
    WorkerJoined,
    WorkerLeft,
    WorkerReleasedKey,
    WorkerStatusChanged,
)
from shoal.scheduler.instructions import ComputeTask, FreeKeys, SchedulerInstruction
from shoal.scheduler.state import SchedulerState
from shoal.scheduler.state_speculation import is_speculative
from shoal.scheduler.state_transitions import ACTIVE

WORKERS = ("w0", "w1", "w2", "w3")  # w3 is the only one with a GPU
CLIENTS = ("c1", "c2")
RESTRICTIONS: st.SearchStrategy[dict[str, Any]] = st.sampled_from(
    [
        {},
        {},
        {},
        {"workers": ("w1",)},
        {"workers": ("w2",), "allow_other_workers": True},
        {"resources": {"GPU": 1}},
    ]
)


class SchedulerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # no latency to cover: one task per thread, so the queue is used a lot;
        # two unexpected deaths are enough to kill a task
        self.s = SchedulerState(
            validate=True, rng=random.Random(0), latency=0.0, allowed_failures=2
        )
        self.counter = 0
        #: what each live worker was told to run: key → run_id
        self.running: dict[str, dict[str, int]] = {}
        #: reports that could still arrive late: (worker, key, run_id)
        self.old_runs: list[tuple[str, str, int]] = []
        #: every key ever submitted or scattered
        self.keys: list[str] = []
        #: workers that registered again: their current incarnation
        self.incarnations: dict[str, int] = {}

    # -- plumbing ---------------------------------------------------------------------------

    def sid(self) -> str:
        self.counter += 1
        return f"s{self.counter}"

    def feed(self, *events: SchedulerEvent) -> None:
        self.apply(self.s.handle_stimulus(*events))

    def apply(self, out: list[SchedulerInstruction]) -> None:
        for inst in out:
            if isinstance(inst, ComputeTask):
                assert inst.worker in self.running, inst
                self.running[inst.worker][str(inst.key)] = inst.run_id
            elif isinstance(inst, FreeKeys) and inst.worker in self.running:
                self.check_copy_freed_only_when_surplus(inst)
                for key in inst.keys:
                    run_id = self.running[inst.worker].pop(str(key), None)
                    if run_id is not None:
                        self.old_runs.append((inst.worker, str(key), run_id))

    def check_copy_freed_only_when_surplus(self, inst: FreeKeys) -> None:
        """A copy freed while its key stays in memory was surplus: no task running on that
        worker needs it, and another copy remains."""
        ws = self.s.workers[inst.worker]
        for key in inst.keys:
            ts = self.s.tasks.get(key)
            if ts is None or ts.state != "memory" or ws in ts.who_has:
                continue
            if str(key) in self.running[inst.worker]:
                continue  # an attempt called off (another worker had the result), not a copy
            assert ts.who_has, key
            if ws.status == "running" and ts.processing_on is None:
                assert not any(ts in dts.dependencies for dts in ws.processing), (key, ws)

    def fresh_key(self, prefix: str) -> str:
        self.counter += 1
        key = f"{prefix}-{self.counter}"
        self.keys.append(key)
        return key

    def busy_workers(self) -> list[str]:
        return sorted(w for w, tasks in self.running.items() if self.runnable(w))

    def runnable(self, worker: str) -> list[str]:
        """What ``worker`` may report on: a speculative task waits there for its input and
        is neither started nor finished before the input is (as on a real worker)."""
        ws = self.s.workers.get(worker)
        return [
            key
            for key in self.running[worker]
            if ws is None or (ts := self.s.tasks.get(key)) is None or not is_speculative(ts)
        ]

    def take(self, worker: str, key: str) -> int:
        run_id = self.running[worker].pop(key)
        self.old_runs.append((worker, key, run_id))
        return run_id

    # -- workers ----------------------------------------------------------------------------

    @rule(data=st.data(), nthreads=st.integers(1, 3))
    def join(self, data: st.DataObject, nthreads: int) -> None:
        free = [w for w in WORKERS if w not in self.running]
        if not free:
            return
        address = data.draw(st.sampled_from(free))
        self.running[address] = {}
        resources = {"GPU": 1.0} if address == "w3" else {}
        self.feed(
            WorkerJoined(
                stimulus_id=self.sid(),
                address=address,
                name=address,
                nthreads=nthreads,
                resources=resources,
            )
        )

    @precondition(lambda self: self.running)
    @rule(data=st.data(), expected=st.booleans())
    def leave(self, data: st.DataObject, expected: bool) -> None:
        address = data.draw(st.sampled_from(sorted(self.running)))
        del self.running[address]
        self.feed(
            WorkerLeft(stimulus_id=self.sid(), address=address, reason="test", expected=expected)
        )

    @precondition(lambda self: self.running)
    @rule(data=st.data())
    def register_again(self, data: st.DataObject) -> None:
        """A live worker registers again as a new incarnation (its stream dropped, or the
        scheduler removed it), reporting held keys: known, unknown, or still to compute."""
        address = data.draw(st.sampled_from(sorted(self.running)))
        for key, run_id in self.running[address].items():
            self.old_runs.append((address, key, run_id))
        self.running[address] = {}
        self.counter += 1
        self.incarnations[address] = self.counter
        held = (
            data.draw(st.lists(st.sampled_from(self.keys), unique=True, max_size=4))
            if self.keys
            else []
        )
        self.feed(
            WorkerJoined(
                stimulus_id=self.sid(),
                address=address,
                name=address,
                nthreads=2,
                resources={"GPU": 1.0} if address == "w3" else {},
                incarnation=self.incarnations[address],
                held=tuple((key, 8) for key in held),
            )
        )

    @precondition(lambda self: self.incarnations and self.old_runs)
    @rule(data=st.data())
    def fenced_report(self, data: st.DataObject) -> None:
        """A report from an older incarnation changes nothing and instructs nothing."""
        worker, key, run_id = data.draw(st.sampled_from(self.old_runs))
        before = {k: ts.state for k, ts in self.s.tasks.items()}
        out = self.s.handle_stimulus(
            finished(self.sid(), worker, key, run_id, 8, incarnation=-1)  # never current
        )
        assert out == [] and {k: ts.state for k, ts in self.s.tasks.items()} == before

    @precondition(lambda self: self.running)
    @rule(data=st.data(), status=st.sampled_from(["paused", "running", "closing_gracefully"]))
    def change_status(self, data: st.DataObject, status: str) -> None:
        address = data.draw(st.sampled_from(sorted(self.running)))
        self.feed(WorkerStatusChanged(stimulus_id=self.sid(), worker=address, status=status))

    @precondition(lambda self: self.busy_workers())
    @rule(
        data=st.data(),
        report=st.sampled_from(
            ["finish"] * 3 + ["err", "start", "start", "secede", "rejoin", "stolen", "kept"]
        ),
    )
    def report(self, data: st.DataObject, report: str) -> None:
        worker = data.draw(st.sampled_from(self.busy_workers()))
        key = data.draw(st.sampled_from(sorted(self.runnable(worker))))
        run_id = self.running[worker][key]
        sid = self.sid()
        if report == "finish":
            self.take(worker, key)
            self.feed(finished(sid, worker, key, run_id, data.draw(st.integers(0, 100))))
        elif report == "err":
            self.take(worker, key)
            self.feed(
                TaskErred(
                    stimulus_id=sid,
                    worker=worker,
                    key=key,
                    run_id=run_id,
                    exception=ValueError(key),
                    traceback=None,
                    exception_text="ValueError",
                    traceback_text="",
                )
            )
        elif report == "start":
            self.feed(TaskStarted(stimulus_id=sid, worker=worker, key=key, run_id=run_id))
        elif report == "secede":
            self.feed(TaskSeceded(stimulus_id=sid, worker=worker, key=key, run_id=run_id))
        elif report == "rejoin":
            self.feed(TaskRejoined(stimulus_id=sid, worker=worker, key=key, run_id=run_id))
        else:  # the worker answers a steal request: it gave the task up, or kept it
            state = "ready" if report == "stolen" else "executing"
            if report == "stolen":
                self.take(worker, key)
            self.feed(StealResponded(stimulus_id=sid, worker=worker, key=key, state=state))

    @precondition(lambda self: self.old_runs)
    @rule(data=st.data(), erred=st.booleans())
    def stale_report(self, data: st.DataObject, erred: bool) -> None:
        worker, key, run_id = data.draw(st.sampled_from(self.old_runs))
        if erred:
            self.feed(
                TaskErred(
                    stimulus_id=self.sid(),
                    worker=worker,
                    key=key,
                    run_id=run_id,
                    exception=None,
                    traceback=None,
                    exception_text="",
                    traceback_text="",
                )
            )
        else:
            self.feed(finished(self.sid(), worker, key, run_id, 8))

    @precondition(lambda self: self.running and self.keys)
    @rule(data=st.data(), kind=st.sampled_from(["released", "added", "missing"]))
    def replicas(self, data: st.DataObject, kind: str) -> None:
        worker = data.draw(st.sampled_from(sorted(self.running)))
        key = data.draw(st.sampled_from(self.keys))
        if kind == "released":
            self.feed(WorkerReleasedKey(stimulus_id=self.sid(), worker=worker, key=key))
        elif kind == "added":
            self.feed(WorkerAddedKeys(stimulus_id=self.sid(), worker=worker, keys=(key,)))
        else:
            self.feed(
                DataMissing(stimulus_id=self.sid(), worker="w9", key=key, errant_worker=worker)
            )

    # -- clients ----------------------------------------------------------------------------

    @rule(data=st.data(), client=st.sampled_from(CLIENTS), n=st.integers(1, 8))
    def submit(self, data: st.DataObject, client: str, n: int) -> None:
        existing = sorted(self.s.tasks)[:20]
        new: list[str] = []
        tasks: list[NewTask] = []
        for _ in range(n):
            pool = new + existing
            deps = (
                data.draw(st.lists(st.sampled_from(pool), max_size=3, unique=True)) if pool else []
            )
            key = self.fresh_key(data.draw(st.sampled_from(["inc", "sum"])))
            tasks.append(
                NewTask(
                    key=key,
                    run_spec=("spec", key),
                    dependencies=tuple(deps),
                    priority=(data.draw(st.integers(0, 3)), self.counter),
                    token=key,
                    retries=data.draw(st.sampled_from([0, 0, 1])),
                    **data.draw(RESTRICTIONS),
                )
            )
            new.append(key)
        refs = {d for t in tasks for d in t.dependencies if d in existing}
        tasks.extend(NewTask(key=key, run_spec=None) for key in sorted(refs, key=str))
        if existing and data.draw(st.booleans()):  # type: ignore[arg-type]  # a conflicting definition
            tasks.append(NewTask(key=existing[0], run_spec="other", token="other"))
        wanted = data.draw(st.lists(st.sampled_from(new + existing[:1]), unique=True))
        self.feed(
            GraphSubmitted(
                stimulus_id=self.sid(), client=client, tasks=tuple(tasks), wanted=tuple(wanted)
            )
        )

    @precondition(lambda self: self.keys)
    @rule(
        data=st.data(),
        client=st.sampled_from(CLIENTS),
        kind=st.sampled_from(["release", "desire", "cancel", "force", "retry", "bye"]),
    )
    def client_keys(self, data: st.DataObject, client: str, kind: str) -> None:
        keys = tuple(data.draw(st.lists(st.sampled_from(self.keys), min_size=1, max_size=4)))
        sid = self.sid()
        if kind == "bye":
            self.feed(ClientDisconnected(stimulus_id=sid, client=client))
        elif kind == "release":
            self.feed(KeysReleased(stimulus_id=sid, client=client, keys=keys))
        elif kind == "desire":
            self.feed(KeysDesired(stimulus_id=sid, client=client, keys=keys))
        elif kind == "retry":
            self.feed(RetryRequested(stimulus_id=sid, client=client, keys=keys))
        else:
            self.feed(
                KeysCancelled(stimulus_id=sid, client=client, keys=keys, force=kind == "force")
            )

    @precondition(lambda self: self.running)
    @rule(data=st.data(), client=st.sampled_from(CLIENTS), reuse=st.booleans())
    def scatter(self, data: st.DataObject, client: str, reuse: bool) -> None:
        holders = data.draw(
            st.lists(st.sampled_from(sorted(self.running)), min_size=1, max_size=2, unique=True)
        )
        key = data.draw(st.sampled_from(self.keys)) if reuse and self.keys else None
        key = key or self.fresh_key("data")
        self.feed(
            DataScattered(
                stimulus_id=self.sid(),
                client=client,
                who_has={key: tuple(holders)},
                nbytes={key: 50},
            )
        )

    # -- checks -----------------------------------------------------------------------------

    @invariant()
    def workers_run_exactly_what_the_scheduler_assigned(self) -> None:
        for address, ws in self.s.workers.items():
            assigned = {str(ts.key): ts.run_id for ts in ws.processing}
            assert assigned == self.running[address], address
        assert set(self.s.workers) == set(self.running)

    def teardown(self) -> None:
        for address in WORKERS:
            if address not in self.running:
                self.running[address] = {}
                resources = {"GPU": 1.0} if address == "w3" else {}
                self.feed(
                    WorkerJoined(
                        stimulus_id=self.sid(),
                        address=address,
                        name=address,
                        nthreads=2,
                        resources=resources,
                    )
                )
            self.feed(WorkerStatusChanged(stimulus_id=self.sid(), worker=address, status="running"))
        for _ in range(10_000):
            busy = self.busy_workers()
            if not busy:
                break
            key = self.runnable(busy[0])[0]
            run_id = self.running[busy[0]][key]
            self.take(busy[0], key)
            self.feed(finished(self.sid(), busy[0], key, run_id, 8))
        stuck = {k: ts.state for k, ts in self.s.tasks.items() if ts.state in ACTIVE}
        assert not stuck, stuck
        for cs in self.s.clients.values():
            for ts in cs.wants_what:
                assert ts.state in ("memory", "erred"), (cs.id, ts)


def finished(
    sid: str, worker: str, key: str, run_id: int, nbytes: int, incarnation: int | None = None
) -> TaskFinished:
    return TaskFinished(
        stimulus_id=sid,
        worker=worker,
        key=key,
        run_id=run_id,
        nbytes=nbytes,
        type_name="int",
        start=0.0,
        stop=0.0001,
        incarnation=incarnation,
    )


SchedulerMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestSchedulerMachine = SchedulerMachine.TestCase


class SpareCopyMachine(SchedulerMachine):
    """The same rules with spare copies on (every result is small): kept inputs and copies
    in flight keep their invariants (``validate``), and once every client is gone nothing
    is kept and nothing is left."""

    def __init__(self) -> None:
        super().__init__()
        self.s = SchedulerState(
            validate=True,
            rng=random.Random(0),
            latency=0.0,
            allowed_failures=2,
            spare_copy_bytes=1000,
        )

    def teardown(self) -> None:
        super().teardown()
        for client in sorted(self.s.clients):
            self.feed(ClientDisconnected(stimulus_id=self.sid(), client=client))
        assert len(self.s.engine.kept) == 0 and not self.s.engine.spare_in_flight
        assert not self.s.tasks, self.s.tasks


SpareCopyMachine.TestCase.settings = SchedulerMachine.TestCase.settings
TestSpareCopyMachine = SpareCopyMachine.TestCase
