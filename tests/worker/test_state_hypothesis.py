"""WorkerState under random event sequences (hypothesis ``RuleBasedStateMachine``).

The test plays everyone around the worker:

* the **scheduler**: assigns tasks whose inputs are available (held here, or held by a
  peer and not being computed here), frees keys together with the tasks here that need
  them, steals, asks for replicas, answers who-has requests (truthfully or stale);
* the **executor**: completes only executions the machine started (``Execute``), with
  success or failure, sometimes seceding first (and rejoining: the thread then blocks
  until ``GrantThread``), and sends stale completions as noise;
* the **peers**: answer only transfers the machine started (``GatherDep``) from a ground
  truth of who holds what: all data, some missing, busy, network failure, unreadable.

After every step the machine validates itself (``validate=True``) and the test checks
that the shell's view (stored values, running executions, open transfers) matches the
machine's. At the end everything outstanding is driven to completion ("drain") and every
key the scheduler still wants here must be in memory or in error: nothing hangs.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from shoal._types import Address, Key
from shoal.worker.events import (
    BusyWorkerRetryDue,
    ErrorInfo,
    ExecuteFailed,
    ExecuteSucceeded,
    GatherDepBusy,
    GatherDepNetworkFailed,
    GatherDepSucceeded,
    KeysFreed,
    MemoryPressureDetected,
    MissingRefreshDue,
    ReplicasRequested,
    StealRequested,
    TaskAssigned,
    TaskRejoined,
    TaskSeceded,
    WhoHasRefreshed,
    WorkerEvent,
    WorkerPaused,
    WorkerUnpaused,
)
from shoal.worker.instructions import (
    AddKeysMsg,
    DeleteValue,
    Execute,
    GatherDep,
    GrantThread,
    LongRunningMsg,
    ReleaseWorkerDataMsg,
    RequestRefreshWhoHasMsg,
    RetryBusyWorkerLater,
    StealResponseMsg,
    StoreValue,
    TaskErredMsg,
    TaskFinishedMsg,
    TaskRejoinedMsg,
    TaskStartedMsg,
    WorkerInstruction,
)
from shoal.worker.state import WorkerState

ME = "tcp://me:1"
PEERS = ("tcp://p0:1", "tcp://p1:1", "tcp://p2:1")
#: computed tasks and their inputs (x*: data held by peers from the start)
DEPS: dict[Key, tuple[Key, ...]] = {
    "t0": (),
    "t1": ("x0",),
    "t2": ("x1", "x2"),
    "t3": ("t0",),
    "t4": ("t1", "x3"),
    "t5": ("x0", "x1"),
    "t6": ("t3", "x2"),
    "t7": ("t2", "t0"),
    "t8": (),
    "t9": (),
}
RESOURCES: dict[Key, dict[str, float]] = {"t2": {"R": 1}, "t5": {"R": 2}, "t6": {"R": 1}}
TASKS = tuple(DEPS)
DATA = ("x0", "x1", "x2", "x3")
NBYTES: dict[Key, int] = {"x0": 30, "x1": 50, "x2": 10, "x3": 80}
ERROR = ErrorInfo(exception=ValueError("x"), traceback=None, exception_text="E", traceback_text="")


def dependents_of(key: Key) -> set[Key]:
    """Tasks that take ``key`` as an input, transitively."""
    found: set[Key] = set()
    frontier = [key]
    while frontier:
        current = frontier.pop()
        for task, deps in DEPS.items():
            if current in deps and task not in found:
                found.add(task)
                frontier.append(task)
    return found


class WorkerStateMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ws = WorkerState(
            address=ME,
            nthreads=2,
            resources={"R": 2},
            total_out_connections=2,
            total_comm_nbytes=100,
            gather_nbytes_limit=60,
            validate=True,
        )
        self.step = 0
        # -- the world: which peer really holds which key
        self.truth: dict[Key, set[Address]] = {key: set() for key in (*TASKS, *DATA)}
        self.truth.update(
            x0={PEERS[0]}, x1={PEERS[1], PEERS[2]}, x2={PEERS[2]}, x3={PEERS[0], PEERS[1]}
        )
        # -- the scheduler's view
        self.assigned: dict[Key, int] = {}
        #: assigned keys whose last attempt erred (the scheduler may retry them)
        self.erred: set[Key] = set()
        self.held_here: set[Key] = set()
        self.replicas: set[Key] = set()
        self.refresh_requested: set[Key] = set()
        self.next_run_id = 1
        # -- the shell's view: what the instructions started
        self.data: dict[Key, object] = {}
        self.executions: dict[Key, int] = {}
        self.seceded: set[Key] = set()
        #: seceded executions whose thread is blocked in rejoin() until GrantThread
        self.rejoining: set[Key] = set()
        self.transfers: dict[Address, frozenset[Key]] = {}
        self.busy: set[Address] = set()

    # -- plumbing ---------------------------------------------------------------------------

    def send(self, *events: WorkerEvent) -> list[WorkerInstruction]:
        out = self.ws.handle_stimulus(*events)
        for inst in out:
            self.apply(inst)
        return out

    def sid(self, what: str) -> dict[str, Any]:
        self.step += 1
        return {"stimulus_id": f"{what}-{self.step}", "now": float(self.step)}

    def apply(self, inst: WorkerInstruction) -> None:
        if isinstance(inst, Execute):
            assert inst.key not in self.executions, f"second Execute of {inst.key}"
            self.executions[inst.key] = inst.run_id
        elif isinstance(inst, GatherDep):
            assert inst.worker not in self.transfers, f"second GatherDep to {inst.worker}"
            assert inst.keys
            self.transfers[inst.worker] = inst.keys
        elif isinstance(inst, RetryBusyWorkerLater):
            self.busy.add(inst.worker)
        elif isinstance(inst, StoreValue):
            assert inst.key not in self.data, f"{inst.key} stored twice"
            self.data[inst.key] = inst.value
        elif isinstance(inst, DeleteValue):
            del self.data[inst.key]
        elif isinstance(inst, GrantThread):
            assert inst.key in self.rejoining, f"{inst.key} granted a thread it did not ask for"
            self.rejoining.discard(inst.key)
            self.seceded.discard(inst.key)
        elif isinstance(
            inst,
            (TaskFinishedMsg, TaskErredMsg, TaskStartedMsg, LongRunningMsg, TaskRejoinedMsg),
        ):
            assert self.assigned.get(inst.key) == inst.run_id, inst
            if isinstance(inst, TaskFinishedMsg):
                self.held_here.add(inst.key)
                self.erred.discard(inst.key)
            elif isinstance(inst, TaskErredMsg):
                self.erred.add(inst.key)
        elif isinstance(inst, AddKeysMsg):
            self.held_here.update(inst.keys)
        elif isinstance(inst, ReleaseWorkerDataMsg):
            self.held_here.discard(inst.key)
            self.replicas.discard(inst.key)  # a copy dropped under memory pressure
        elif isinstance(inst, RequestRefreshWhoHasMsg):
            self.refresh_requested.update(inst.keys)

    def available(self, key: Key) -> bool:
        """From the scheduler's view: in memory somewhere and not being computed here."""
        return key in self.held_here or (key not in self.assigned and bool(self.truth[key]))

    def who_has(self, key: Key, stale: Address | None) -> tuple[Address, ...]:
        holders = set(self.truth[key])
        if stale is not None:
            holders ^= {stale}
        return tuple(sorted(holders))

    # -- the scheduler ----------------------------------------------------------------------

    def assignable(self) -> list[Key]:
        """Tasks the scheduler may (re)assign here: new or erred, inputs available, and
        not an input of a task here (the scheduler would not recompute that)."""
        return [
            key
            for key in TASKS
            if (key not in self.assigned or key in self.erred)
            and all(self.available(dep) for dep in DEPS[key])
            and not dependents_of(key) & set(self.assigned)
        ]

    @precondition(lambda self: bool(self.assignable()))
    @rule(data=st.data(), stale=st.none() | st.sampled_from(PEERS))
    def assign(self, data: st.DataObject, stale: Address | None) -> None:
        key = data.draw(st.sampled_from(self.assignable()))
        self.erred.discard(key)
        run_id = self.next_run_id
        self.next_run_id += 1
        self.assigned[key] = run_id
        deps = DEPS[key]
        event = TaskAssigned(
            key=key,
            run_id=run_id,
            run_spec=("spec", key),
            priority=(data.draw(st.integers(0, 3)), TASKS.index(key)),
            who_has={dep: self.who_has(dep, stale) for dep in deps},
            nbytes={dep: NBYTES.get(dep, 20) for dep in deps},
            resource_restrictions=RESOURCES.get(key, {}),
            **self.sid("assign"),  # type: ignore[arg-type]
        )
        self.send(event)

    @precondition(lambda self: bool(self.assigned or self.held_here or self.replicas))
    @rule(data=st.data())
    def free(self, data: st.DataObject) -> None:
        candidates = sorted(set(self.assigned) | self.held_here | self.replicas)
        key = data.draw(st.sampled_from(candidates))
        keys = {key} | (dependents_of(key) & (set(self.assigned) | self.held_here))
        for freed in keys:
            self.assigned.pop(freed, None)
            self.held_here.discard(freed)
            self.replicas.discard(freed)
            self.erred.discard(freed)
        self.send(KeysFreed(keys=tuple(sorted(keys)), **self.sid("free")))  # type: ignore[arg-type]

    @rule(data=st.data())
    def steal(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from([*sorted(self.assigned), "x0", "nothing"]))
        task = self.ws.tasks.get(key)
        before = None if task is None else task.state
        out = self.send(StealRequested(key=key, **self.sid("steal")))  # type: ignore[arg-type]
        responses = [inst for inst in out if isinstance(inst, StealResponseMsg)]
        assert [(r.key, r.state) for r in responses] == [(key, before)]
        if before in ("waiting", "ready", "constrained"):
            del self.assigned[key]
            self.erred.discard(key)

    @rule(key=st.sampled_from((*DATA, *TASKS)))
    def replicate(self, key: Key) -> None:
        if key in self.assigned or not self.truth[key]:
            return
        self.replicas.add(key)
        event = ReplicasRequested(
            who_has={key: self.who_has(key, None)},
            nbytes={key: NBYTES.get(key, 20)},
            **self.sid("replicate"),
        )
        self.send(event)

    @rule(nbytes=st.integers(1, 200))
    def memory_pressure(self, nbytes: int) -> None:
        replicas = {k for k in self.ws.replicas if not self.ws.tasks[k].dependents}
        out = self.send(MemoryPressureDetected(nbytes=nbytes, **self.sid("memory")))  # type: ignore[arg-type]
        dropped = {inst.key for inst in out if isinstance(inst, DeleteValue)}
        assert dropped <= replicas, "memory pressure dropped something that is not a copy"
        assert dropped or not replicas, "memory pressure dropped no copy though some could go"
        for key in dropped:
            assert key not in self.assigned and key not in self.ws.tasks

    @precondition(lambda self: bool(self.refresh_requested))
    @rule(truthful=st.booleans())
    def answer_refresh(self, truthful: bool) -> None:
        keys = sorted(self.refresh_requested)
        self.refresh_requested.clear()
        who_has = {key: self.who_has(key, None) if truthful else () for key in keys}
        self.send(WhoHasRefreshed(who_has=who_has, **self.sid("refresh")))  # type: ignore[arg-type]

    @rule()
    def missing_refresh_due(self) -> None:
        self.send(MissingRefreshDue(**self.sid("find-missing")))  # type: ignore[arg-type]

    @rule(key=st.sampled_from(TASKS), peer=st.sampled_from(PEERS))
    def peer_computes(self, key: Key, peer: Address) -> None:
        """The scheduler had ``key`` computed on another worker."""
        if key not in self.assigned:
            self.truth[key].add(peer)

    def cancelled_here(self) -> list[Key]:
        return sorted(k for k, t in self.ws.tasks.items() if t.state == "cancelled" and k in DEPS)

    @precondition(lambda self: bool(self.cancelled_here()))
    @rule(data=st.data(), peer=st.sampled_from(PEERS))
    def peer_computes_a_key_cancelled_here(self, data: st.DataObject, peer: Address) -> None:
        """Steers toward a task cancelled here that becomes an input again."""
        self.truth[data.draw(st.sampled_from(self.cancelled_here()))].add(peer)

    @rule(key=st.sampled_from((*DATA, *TASKS)), peer=st.sampled_from(PEERS))
    def peer_loses(self, key: Key, peer: Address) -> None:
        """A peer drops a copy; another copy always survives."""
        if peer in self.truth[key] and len(self.truth[key]) > 1:
            self.truth[key].discard(peer)

    @rule(pause=st.booleans())
    def pause(self, pause: bool) -> None:
        event = WorkerPaused if pause else WorkerUnpaused
        self.send(event(**self.sid("pause")))  # type: ignore[arg-type]

    # -- the executor -----------------------------------------------------------------------

    def running_freely(self) -> list[Key]:
        """Executions whose thread is not blocked in rejoin()."""
        return sorted(set(self.executions) - self.rejoining)

    @precondition(lambda self: bool(self.running_freely()))
    @rule(data=st.data(), succeed=st.booleans(), seconds=st.sampled_from((0.0001, 1.0)))
    def finish_execution(self, data: st.DataObject, succeed: bool, seconds: float) -> None:
        key = data.draw(st.sampled_from(self.running_freely()))
        self.complete_execution(key, succeed, seconds)

    def inputs_running(self) -> list[Key]:
        """Executions of tasks computed here only as inputs (resumed after a cancel)."""
        return sorted(k for k in self.running_freely() if not self.ws.tasks[k].assigned)

    @precondition(lambda self: bool(self.inputs_running()))
    @rule(data=st.data())
    def fail_input_execution(self, data: st.DataObject) -> None:
        """Steers toward an input whose computation fails here: fetched instead."""
        self.complete_execution(data.draw(st.sampled_from(self.inputs_running())), False)

    def complete_execution(self, key: Key, succeed: bool, seconds: float = 1.0) -> None:
        assert key not in self.rejoining, f"{key}: its thread is blocked in rejoin()"
        run_id = self.executions.pop(key)
        self.seceded.discard(key)
        if succeed:
            event: WorkerEvent = ExecuteSucceeded(
                key=key,
                run_id=run_id,
                value=f"value-{key}",
                nbytes=20,
                type_name="str",
                start=0.0,
                stop=seconds,
                **self.sid("done"),
            )
        else:
            event = ExecuteFailed(
                key=key, run_id=run_id, error=ERROR, start=0.0, stop=1.0, **self.sid("failed")
            )
        self.send(event)

    @precondition(lambda self: bool(set(self.executions) - self.seceded))
    @rule(data=st.data())
    def secede(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(set(self.executions) - self.seceded)))
        self.seceded.add(key)
        self.send(TaskSeceded(key=key, **self.sid("secede")))  # type: ignore[arg-type]

    @precondition(lambda self: bool(self.seceded - self.rejoining))
    @rule(data=st.data())
    def rejoin(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.seceded - self.rejoining)))
        self.rejoining.add(key)
        self.send(TaskRejoined(key=key, **self.sid("rejoin")))  # type: ignore[arg-type]

    @rule(key=st.sampled_from(TASKS), offset=st.integers(1, 3), succeed=st.booleans())
    def stale_completion(self, key: Key, offset: int, succeed: bool) -> None:
        run_id = self.executions.get(key, 0) - 1000 * offset
        event: WorkerEvent
        if succeed:
            event = ExecuteSucceeded(
                key=key,
                run_id=run_id,
                value="stale",
                nbytes=1,
                type_name="str",
                start=0.0,
                stop=1.0,
                **self.sid("stale"),  # type: ignore[arg-type]
            )
        else:
            event = ExecuteFailed(
                key=key, run_id=run_id, error=ERROR, start=0.0, stop=1.0, **self.sid("stale")
            )  # type: ignore[arg-type]
        assert self.send(event) == []

    # -- the peers --------------------------------------------------------------------------

    @precondition(lambda self: bool(self.transfers))
    @rule(
        data=st.data(),
        outcome=st.sampled_from(["ok", "ok", "ok", "busy", "network", "unreadable"]),
    )
    def finish_transfer(self, data: st.DataObject, outcome: str) -> None:
        worker = data.draw(st.sampled_from(sorted(self.transfers)))
        self.complete_transfer(worker, outcome)

    def complete_transfer(self, worker: Address, outcome: str) -> None:
        keys = self.transfers.pop(worker)
        event: WorkerEvent
        if outcome == "busy":
            event = GatherDepBusy(worker=worker, requested=keys, **self.sid("busy"))  # type: ignore[arg-type]
        elif outcome == "network":
            event = GatherDepNetworkFailed(worker=worker, requested=keys, **self.sid("network"))  # type: ignore[arg-type]
        else:
            held = sorted(key for key in keys if worker in self.truth[key])
            unreadable = {held[0]: ERROR} if outcome == "unreadable" and held else {}
            values = {key: f"data-{key}" for key in held if key not in unreadable}
            event = GatherDepSucceeded(
                worker=worker,
                requested=keys,
                data=values,
                nbytes=dict.fromkeys(values, 20),
                unreadable=unreadable,
                **self.sid("gathered"),  # type: ignore[arg-type]
            )
        self.send(event)

    @precondition(lambda self: bool(self.busy))
    @rule(data=st.data())
    def busy_retry_due(self, data: st.DataObject) -> None:
        worker = data.draw(st.sampled_from(sorted(self.busy)))
        self.busy.discard(worker)
        self.send(BusyWorkerRetryDue(worker=worker, **self.sid("retry")))  # type: ignore[arg-type]

    # -- checks -----------------------------------------------------------------------------

    @invariant()
    def shell_matches_machine(self) -> None:
        ws = self.ws
        in_memory = {key for key, task in ws.tasks.items() if task.state == "memory"}
        assert set(self.data) == in_memory
        running = {key: task.exec_run_id for key, task in ws.tasks.items() if task.exec_run_id}
        assert running == self.executions
        assert {w: frozenset(keys) for w, keys in ws.in_flight_workers.items()} == self.transfers
        assert set(ws.rejoining) == self.rejoining
        if len(ws.executing) < ws.nthreads:
            assert not self.rejoining, "a thread is free but a rejoining task waits"

    def teardown(self) -> None:
        self.drain()
        ws = self.ws
        for key in self.assigned:
            assert ws.tasks[key].state in ("memory", "error"), ws.story(key)
        for key in self.replicas - set(self.assigned):
            assert ws.tasks[key].state in ("memory", "error"), ws.story(key)
        assert not self.executions and not self.transfers
        assert ws.executing == set() and ws.long_running == set()
        assert ws.in_flight_tasks == 0 and ws.comm_bytes == 0
        assert ws.available_resources == ws.total_resources
        # the scheduler frees everything: nothing is left behind
        everything = sorted(set(self.assigned) | self.held_here | self.replicas)
        self.send(KeysFreed(keys=tuple(everything), **self.sid("free-all")))  # type: ignore[arg-type]
        assert ws.tasks == {} and self.data == {} and ws.has_what == {}

    def drain(self) -> None:
        """Complete everything outstanding, successfully, until nothing moves."""
        if self.ws.paused:
            self.send(WorkerUnpaused(**self.sid("unpause")))  # type: ignore[arg-type]
        for _ in range(100):
            moved = bool(self.executions or self.transfers or self.busy)
            for key in self.running_freely():
                self.complete_execution(key, succeed=True)
            for worker in sorted(self.transfers):
                self.complete_transfer(worker, "ok")
            for worker in sorted(self.busy):
                self.busy.discard(worker)
                self.send(BusyWorkerRetryDue(worker=worker, **self.sid("retry")))  # type: ignore[arg-type]
            if self.ws.missing:
                moved = True
                self.send(MissingRefreshDue(**self.sid("find-missing")))  # type: ignore[arg-type]
                self.answer_refresh(truthful=True)
            if not moved:
                return
        raise AssertionError("drain did not settle")


WorkerStateMachine.TestCase.settings = settings(
    max_examples=600,
    stateful_step_count=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestWorkerStateMachine = WorkerStateMachine.TestCase


class RunAheadStateMachine(WorkerStateMachine):
    """The same world with a nanny (no task-started) and prefixes known to be quick, so
    tasks also run ahead, queued behind busy threads; a slow run makes a prefix slow."""

    def __init__(self) -> None:
        super().__init__()
        self.ws.report_started = False
        self.ws.nthreads = 1  # one thread: more tasks find it busy
        self.ws.run_ahead = 2
        self.ws.durations.update((str(key), 0.0001) for key in TASKS)


RunAheadStateMachine.TestCase.settings = WorkerStateMachine.TestCase.settings
TestRunAheadStateMachine = RunAheadStateMachine.TestCase
