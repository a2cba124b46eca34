"""WorkerState: the worker's pure sans-IO state machine.

################################################################################
# Rules of this file
################################################################################
#
# Rule 1: no IO. No asyncio, socket, threading, time, os or logging. Time arrives in
# events (``now``); the shell (``worker/server.py``) carries out the instructions.
#
# Rule 2: every change of a task's state goes through ``_transition``, which looks the
# (start, finish) pair up in ``state_transitions.TRANSITIONS``; an unknown pair is a bug
# and raises ``InvalidTransition`` with the key's story.
#
# Rule 3: every instruction carries the stimulus id of the event that caused it, and
# every event, transition and instruction is logged (bounded) with it.
#
# Theory of operation
# ===================
#
# A key lives here while it is *wanted*, for one of three reasons: the scheduler
# assigned it here (``assigned``: compute it, or keep what we computed), the scheduler
# asked for a copy here (``replica``), or it is an input of another task here
# (``dependents``). ``KeysFreed`` and a successful steal drop the scheduler's reasons;
# forgetting a task drops its inputs' last reason. A task wanted by nobody is released
# and forgotten at once, unless a thread or a transfer is still busy with it (states
# ``executing``, ``long-running``, ``flight``): then it is ``cancelled``, keeps its thread,
# resources or connection, and is released when that activity reports back.
#
# There is no ``resumed`` state. A cancelled task that becomes wanted again goes back to
# the activity it still has (``previous``): no second Execute, no second transfer. What
# happens when an activity ends is decided by the *current* reasons, not by history:
#
#   execution succeeds -> memory; TaskFinishedMsg if assigned, else AddKeysMsg
#   execution fails    -> error + TaskErredMsg if assigned, else fetch it from a peer
#   transfer succeeds  -> memory; TaskFinishedMsg if assigned (we were asked to compute
#                         it and got it cheaper), else AddKeysMsg
#   transfer fails     -> waiting (compute it) if assigned, else fetch from another
#                         holder, else missing (+ RequestRefreshWhoHasMsg)
#   cancelled          -> the outcome is dropped: released, forgotten
#
# Replicas: a key that arrives here without being assigned (fetched as an input, or
# computed as one) is announced with AddKeysMsg and becomes a ``replica``: the scheduler
# owns its lifetime from then on. It stays after its dependents here finish, so the next
# task here that needs it does not fetch it again, and goes when the scheduler frees it
# (KeysFreed: the key is released, or the copy is surplus). Under memory pressure
# (``MemoryPressureDetected``, or a store past ``memory_target``) replicas with no
# dependent here are dropped oldest first, with ReleaseWorkerDataMsg, before anything
# unique is spilled.
#
# Every Execute carries a run id, stored as ``exec_run_id`` while the thread runs; a
# completion is accepted only if it carries that id (a resumed task reports the
# scheduler's newer ``run_id``). Anything else is stale and dropped without a change.
#
# Threads: ``executing`` holds the keys occupying a thread (cancelled ones included, as
# their thread still runs); a seceded task moves to ``long_running`` and frees its thread
# but keeps its resources. A seceded task that calls ``rejoin()`` waits in ``rejoining``
# (its thread blocked) until a slot frees; rejoins are granted before any new task
# starts (``GrantThread``), paused or not, and the task is ``executing`` again. A task
# starts while ``len(executing) < nthreads`` and the worker is not paused; with a nanny,
# quick tasks also run ahead, queued behind busy threads (``state_run_ahead``). ``ready`` is a
# heap by priority; ``constrained`` is FIFO per resource need, and any need that fits
# ``available_resources`` may start (no head-of-line blocking); between the two, the
# better priority starts first.
#
# Transfers: an input held by peers waits in ``fetch``, queued in ``data_needed`` and in
# ``pending_data_per_worker[peer]`` of each holder. After each batch of events, peers
# that are neither busy nor already sending to us are served best-first: one GatherDep
# per peer takes keys highest priority first up to ``gather_nbytes_limit``; at most
# ``total_out_connections`` GatherDeps run at once and ``comm_bytes`` stays within
# ``total_comm_nbytes`` (a single key larger than that travels when nothing else does).
#
# Queues are lazy: leaving a queue is an O(1) discard; stale heap entries are skipped
# when they surface and compacted away in amortized O(1). No event scans all tasks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from itertools import count
from typing import Any, ClassVar

from shoal._types import Address, Key
from shoal.errors import InvalidTransition
from shoal.worker.events import (
    BusyWorkerRetryDue,
    DataReceived,
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
    GatherDep,
    GrantThread,
    LongRunningMsg,
    MissingDataMsg,
    RequestRefreshWhoHasMsg,
    RetryBusyWorkerLater,
    StealResponseMsg,
    TaskStartedMsg,
    WorkerInstruction,
)
from shoal.worker.state_effects import Effects
from shoal.worker.state_replicas import drop_replicas
from shoal.worker.state_run_ahead import RUN_AHEAD_PER_THREAD, ahead_limit, is_quick, note_duration
from shoal.worker.state_task import KeyHeap, Priority, WorkerTask, drop_has_what
from shoal.worker.state_transitions import (
    RUNNING_STATES,
    TASK_STATES,
    TRANSITIONS,
    report_memory,
)
from shoal.worker.state_validate import validate_state

__all__ = ["WorkerState", "WorkerTask"]

#: states whose task takes a new run spec, priority and inputs when assigned here
_ASSIGNABLE = frozenset({"released", "fetch", "missing", "error", "flight"})
#: states in which the scheduler's size figure must not overwrite ours
_SIZE_KNOWN = frozenset({"flight", "cancelled", "memory"})

ResourceNeed = tuple[tuple[str, float], ...]


class WorkerState:
    """The worker's tasks, queues, threads and transfers, changed only by events.

    ``handle_stimulus(*events)`` returns the instructions for the shell to carry out.
    Attribute names and meanings follow the worker description in
    ``shoal/seed/worker-description.txt``.
    """

    _HANDLERS: ClassVar[dict[type[WorkerEvent], Callable[[WorkerState, Any], None]]]

    def __init__(
        self,
        *,
        address: Address,
        nthreads: int,
        resources: Mapping[str, float] | None = None,
        total_out_connections: int = 4,
        total_comm_nbytes: int = 64 * 2**20,
        gather_nbytes_limit: int = 50 * 2**20,
        validate: bool = False,
        log_length: int = 100_000,
        memory_target: int | None = None,
    ) -> None:
        #: this worker's address (never a holder in ``who_has``)
        self.address = address
        #: say ``task-started`` for each task that starts (the scheduler then knows what
        #: runs, to blame after a death); off once a nanny reads the running keys instead
        self.report_started = True
        #: threads for running tasks
        self.nthreads = nthreads
        #: quick tasks each busy thread may be handed to run next (``state_run_ahead``);
        #: only while ``report_started`` is off; 0: never
        self.run_ahead = RUN_AHEAD_PER_THREAD
        #: abstract resources of this worker, e.g. {"GPU": 2}
        self.total_resources: dict[str, float] = dict(resources or {})
        #: what running tasks leave of ``total_resources``
        self.available_resources: dict[str, float] = dict(self.total_resources)
        #: most GatherDeps in flight at once (one per peer)
        self.total_out_connections = total_out_connections
        #: most bytes in flight at once (one larger key may travel alone)
        self.total_comm_nbytes = total_comm_nbytes
        #: most bytes asked of one peer in one GatherDep (one larger key may travel alone)
        self.gather_nbytes_limit = gather_nbytes_limit
        #: run ``validate()`` after every event (tests)
        self.validate_each_event = validate
        #: bounded record of events, transitions and instructions; see ``story``
        self.log: deque[tuple[Any, ...]] = deque(maxlen=log_length)
        #: called with (key, start, finish) for each transition (worker plugins), once the
        #: task's state is ``finish`` but before its containers follow; it must not raise
        #: and must not call back into this state
        self.transition_hook: Callable[[Key, str, str], None] | None = None
        #: every wanted key (and cancelled ones still running)
        self.tasks: dict[Key, WorkerTask] = {}
        #: tasks that finished running here (every outcome, dropped ones included)
        self.executed_count = 0
        #: memory is high: start no task, no transfer
        self.paused = False
        #: managed bytes past which replicas are dropped before a new value is stored
        #: (the spill buffer's target; None: never)
        self.memory_target = memory_target
        self._init_queues()
        self._init_scratch()

    def _init_queues(self) -> None:
        #: order of entry into every KeyHeap (ties between equal priorities: first come)
        self.heap_order = count()
        #: keys ready to run, by priority (a lazy heap; see KeyHeap)
        self.ready = KeyHeap(self.heap_order)
        #: constrained keys, one FIFO per resource need (``constrained`` merges them)
        self.constrained_by_need: dict[ResourceNeed, KeyHeap] = {}
        #: keys in ``fetch``, by priority
        self.data_needed = KeyHeap(self.heap_order)
        #: per peer: the keys in ``fetch`` it holds, by priority
        self.pending_data_per_worker: dict[Address, KeyHeap] = {}
        #: per peer: the keys we care about that we think it holds
        self.has_what: dict[Address, set[Key]] = {}
        #: keys in ``missing``: needed, with no known holder
        self.missing: set[Key] = set()
        #: keys occupying a thread: executing, or cancelled while executing
        self.executing: set[Key] = set()
        #: the keys in ``executing`` that were not quick when they started: while there is
        #: one, no task runs ahead (it could wait behind a long task)
        self.slow_executing: set[Key] = set()
        #: average run time in seconds per key prefix, of tasks that succeeded here
        self.durations: dict[str, float] = {}
        #: keys that seceded from their thread (long-running, or cancelled while so)
        self.long_running: set[Key] = set()
        #: seceded keys whose thread waits in ``rejoin()`` for a slot, first come first;
        #: always a subset of ``long_running``
        self.rejoining: dict[Key, None] = {}
        #: per peer: the keys of the one GatherDep in flight from it
        self.in_flight_workers: dict[Address, set[Key]] = {}
        #: per peer: the bytes counted for that GatherDep
        self.in_flight_nbytes: dict[Address, int] = {}
        #: number of keys in flight (cancelled ones included)
        self.in_flight_tasks = 0
        #: bytes in flight
        self.comm_bytes = 0
        #: peers that answered busy; skipped until BusyWorkerRetryDue
        self.busy_workers: set[Address] = set()
        #: size of each key in memory
        self.nbytes: dict[Key, int] = {}
        #: sum of ``nbytes``
        self.managed_nbytes = 0
        #: keys in memory only as copies the scheduler knows of (``replica`` and not
        #: ``assigned``), oldest first: the first to go under memory pressure
        self.replicas: dict[Key, None] = {}
        #: number of tasks per state (forgotten ones are not counted)
        self._state_counts: dict[str, int] = dict.fromkeys(TASK_STATES, 0)

    def _init_scratch(self) -> None:
        """Per-event working state: the event being handled and its pending effects."""
        #: the effects of the event being handled, handed to every transition step
        self._fx = Effects(self.log, self._transition)

    # -- views ------------------------------------------------------------------------------

    @property
    def executing_count(self) -> int:
        """Tasks occupying a thread now."""
        return len(self.executing)

    @property
    def waiting_for_data_count(self) -> int:
        """Tasks waiting for inputs to arrive."""
        return self._state_counts["waiting"]

    @property
    def constrained(self) -> deque[Key]:
        """Keys waiting for resources, first come first (a snapshot, for inspection)."""
        merged = [
            entry for heap in self.constrained_by_need.values() for entry in heap.live_entries()
        ]
        merged.sort(key=lambda entry: entry[1])
        return deque(entry[2] for entry in merged)

    def __repr__(self) -> str:
        return (
            f"<WorkerState {self.address} tasks={len(self.tasks)} "
            f"executing={len(self.executing)}/{self.nthreads} ready={len(self.ready)} "
            f"in_flight={self.in_flight_tasks} paused={self.paused}>"
        )

    # -- public API -------------------------------------------------------------------------

    def handle_stimulus(self, *events: WorkerEvent) -> list[WorkerInstruction]:
        """Apply ``events`` in order; return every instruction they produced, in order."""
        out: list[WorkerInstruction] = []
        fx = self._fx
        fx.out = out
        handlers = self._HANDLERS
        for event in events:
            handler = handlers.get(type(event))
            if handler is None:
                raise TypeError(f"WorkerState cannot handle {event!r}")
            fx.begin(event.stimulus_id, event.now)
            self.log.append(_event_record(event))
            handler(self, event)
            self._settle()
            if self.validate_each_event:
                self.validate()
        if events:
            self._ensure_communicating()
            if self.validate_each_event:
                self.validate()
        return out

    def story(self, *keys_or_stimulus_ids: object) -> list[tuple[Any, ...]]:
        """Every log record that mentions one of these keys or stimulus ids, oldest first."""
        wanted = set(keys_or_stimulus_ids)
        return [record for record in self.log if _mentions(record, wanted)]

    def validate(self) -> None:
        """Check every invariant; raise AssertionError with the story of the culprit."""
        validate_state(self)

    # -- the core ---------------------------------------------------------------------------

    def _transition(self, task: WorkerTask, finish: str, payload: object = None) -> None:
        start = task.state
        step = TRANSITIONS.get((start, finish))
        if step is None:
            story: list[object] = [*self.story(task.key)]
            raise InvalidTransition(task.key, start, finish, story)
        task.state = finish
        counts = self._state_counts
        counts[start] -= 1
        if finish != "forgotten":  # a forgotten task has left ``tasks``: not counted
            counts[finish] += 1
        fx = self._fx
        self.log.append((task.key, start, finish, fx.stimulus_id, fx.now))
        if self.transition_hook is not None:
            self.transition_hook(task.key, start, finish)
        step(self, task, payload, fx)

    def _ensure_task(self, key: Key) -> WorkerTask:
        task = self.tasks.get(key)
        if task is None:
            task = self.tasks[key] = WorkerTask(key, next(self.heap_order))
            self._state_counts["released"] += 1
        return task

    def _settle(self) -> None:
        """Finish an event: announce arrivals, forget what nobody wants, start tasks."""
        if self._fx.add_keys:
            keys = self._fx.add_keys
            self._fx.add_keys = {}
            self._fx.emit(
                AddKeysMsg(keys=tuple(keys), nbytes=keys, stimulus_id=self._fx.stimulus_id),
                frozenset(keys),
            )
        if self._fx.unwanted:
            self._drain_unwanted()
        if self._fx.refresh_keys:
            missing = tuple(self._fx.refresh_keys)
            self._fx.refresh_keys = []
            msg = RequestRefreshWhoHasMsg(keys=missing, stimulus_id=self._fx.stimulus_id)
            self._fx.emit(msg, frozenset(missing))
        self._ensure_computing()

    def _drain_unwanted(self) -> None:
        """Release and forget every task in ``_unwanted`` that nobody wants any more;
        cancel those a thread or transfer is still busy with. Iterative: forgetting a
        task may make its inputs unwanted, and chains can be long."""
        stack = self._fx.unwanted
        tasks = self.tasks
        while stack:
            task = stack.pop()
            if tasks.get(task.key) is not task:
                continue
            if task.assigned or task.replica or task.dependents:
                continue
            state = task.state
            if state in RUNNING_STATES:
                self._transition(task, "cancelled")
            elif state != "cancelled":
                if state != "released":
                    self._transition(task, "released")
                self._transition(task, "forgotten")

    # -- scheduler events -------------------------------------------------------------------

    def _on_task_assigned(self, ev: TaskAssigned) -> None:
        task = self._ensure_task(ev.key)
        task.run_id = ev.run_id
        task.assigned = True
        task.inline_result = ev.inline_result
        self.replicas.pop(task.key, None)  # computed (or kept) here at its request now
        state = task.state
        if state == "memory":
            report_memory(self, task, self._fx)
        elif state == "executing":
            msg = TaskStartedMsg(key=task.key, run_id=ev.run_id, stimulus_id=self._fx.stimulus_id)
            self._fx.emit(msg, task.key)
        elif state == "long-running":
            msg2 = LongRunningMsg(key=task.key, run_id=ev.run_id, stimulus_id=self._fx.stimulus_id)
            self._fx.emit(msg2, task.key)
        elif state in _ASSIGNABLE or state == "cancelled":
            if state != "cancelled" or task.previous == "flight":
                task.run_spec = ev.run_spec
                task.priority = tuple(ev.priority)
                task.resource_restrictions = ev.resource_restrictions
                task.annotations = ev.annotations
            self._link_dependencies(task, ev.who_has, ev.nbytes)
            if state == "cancelled":
                assert task.previous is not None, task
                self._transition(task, task.previous)
            elif state != "flight":  # a transfer in flight may still bring it
                self._transition(task, "waiting")
        # waiting, ready, constrained: already on its way; only the run id changed

    def _link_dependencies(
        self,
        task: WorkerTask,
        who_has: Mapping[Key, tuple[Address, ...]],
        nbytes: Mapping[Key, int],
    ) -> None:
        for key, holders in who_has.items():
            self._add_dependency(task, key, holders, nbytes.get(key))
        for key, size in nbytes.items():
            if key not in who_has:
                self._add_dependency(task, key, None, size)

    def _add_dependency(
        self, task: WorkerTask, key: Key, holders: tuple[Address, ...] | None, size: int | None
    ) -> None:
        if key == task.key:
            return
        dep = self._ensure_task(key)
        if size is not None and dep.state not in _SIZE_KNOWN:
            dep.nbytes = size
        if holders is not None:
            self._update_who_has(dep, holders)
        if task.priority < dep.priority:
            self._raise_priority(dep, task.priority)
        if dep not in task.dependencies:
            task.dependencies.add(dep)
            dep.dependents.add(task)
        if dep.state == "cancelled":
            assert dep.previous is not None, dep
            self._transition(dep, dep.previous)

    def _on_replicas_requested(self, ev: ReplicasRequested) -> None:
        for key, holders in ev.who_has.items():
            task = self._ensure_task(key)
            task.replica = True
            size = ev.nbytes.get(key)
            if size is not None and task.state not in _SIZE_KNOWN:
                task.nbytes = size
            self._update_who_has(task, holders)
            state = task.state
            if state == "error" and not task.assigned:
                self._transition(task, "released")
                state = "released"
            if state == "released":
                self._fetch_or_missing(task)
            elif state == "cancelled":
                assert task.previous is not None, task
                self._transition(task, task.previous)
            elif state == "memory":
                task.reported = True
                self._fx.add_keys[key] = task.fetch_nbytes()
                if not task.assigned:
                    self.replicas[key] = None

    def _on_data_received(self, ev: DataReceived) -> None:
        # the client that scattered the data tells the scheduler itself: a report from here
        # could overtake it, and the scheduler would answer an unknown key with free-keys
        for key, value in ev.data.items():
            task = self._ensure_task(key)
            task.replica = True
            if task.state != "released":
                continue  # already here, or on its way: the scattered copy is not needed
            task.nbytes = ev.nbytes.get(key, task.nbytes)
            task.type_name = type(value).__name__
            task.start = task.stop = self._fx.now
            self._transition(task, "memory", value)
            self._fx.add_keys.pop(key, None)

    def _on_keys_freed(self, ev: KeysFreed) -> None:
        for key in ev.keys:
            task = self.tasks.get(key)
            if task is not None:
                task.assigned = task.replica = task.reported = False
                self.replicas.pop(key, None)
                self._fx.unwanted.append(task)

    def _on_steal_requested(self, ev: StealRequested) -> None:
        task = self.tasks.get(ev.key)
        state = None if task is None else task.state
        if task is not None and state in ("waiting", "ready", "constrained"):
            task.assigned = False  # still computed if an input of another task here
            self._fx.unwanted.append(task)
            self._drain_unwanted()
        self._fx.emit(
            StealResponseMsg(key=ev.key, state=state, stimulus_id=self._fx.stimulus_id), ev.key
        )

    def _on_who_has_refreshed(self, ev: WhoHasRefreshed) -> None:
        self._fx.refresh_suppressed = True
        for key, holders in ev.who_has.items():
            task = self.tasks.get(key)
            if task is not None:
                self._update_who_has(task, holders)
        self._fx.refresh_suppressed = False

    def _on_missing_refresh_due(self, ev: MissingRefreshDue) -> None:
        if self.missing:
            keys = tuple(self.missing)
            msg = RequestRefreshWhoHasMsg(keys=keys, stimulus_id=self._fx.stimulus_id)
            self._fx.emit(msg, frozenset(keys))

    # -- executor events --------------------------------------------------------------------

    def _finished_attempt(self, key: Key, run_id: int) -> WorkerTask | None:
        """The task whose running attempt ``run_id`` just ended, or None if the report is
        stale or the task was cancelled (its outcome is dropped, its thread freed)."""
        task = self.tasks.get(key)
        if task is None or task.exec_run_id is None or task.exec_run_id != run_id:
            self.log.append(("stale-execute", key, run_id, self._fx.stimulus_id, self._fx.now))
            return None
        self.executed_count += 1
        if task.state == "cancelled":
            self._transition(task, "released")
            self._fx.unwanted.append(task)
            return None
        return task

    def _on_execute_succeeded(self, ev: ExecuteSucceeded) -> None:
        task = self._finished_attempt(ev.key, ev.run_id)
        if task is not None:
            task.nbytes = ev.nbytes
            task.type_name = ev.type_name
            task.start = ev.start
            task.stop = ev.stop
            note_duration(self, task, ev.stop - ev.start)
            self._fx.inline_value = ev.inline  # for this event's TaskFinishedMsg only
            self._transition(task, "memory", ev.value)
            self._fx.inline_value = None

    def _on_execute_failed(self, ev: ExecuteFailed) -> None:
        task = self._finished_attempt(ev.key, ev.run_id)
        if task is None:
            return
        if task.assigned:
            task.error = ev.error
            self._transition(task, "error")
        else:  # computed only as an input here: get it from a peer instead
            self._fetch_or_missing(task)

    def _on_task_seceded(self, ev: TaskSeceded) -> None:
        task = self.tasks.get(ev.key)
        if task is not None and task.state == "executing":
            self._transition(task, "long-running")
        elif task is not None and task.state == "cancelled" and task.previous == "executing":
            self._transition(task, "cancelled", "long-running")  # its thread seceded
        else:
            self.log.append(("stale-secede", ev.key, self._fx.stimulus_id, self._fx.now))

    def _on_task_rejoined(self, ev: TaskRejoined) -> None:
        task = self.tasks.get(ev.key)
        if task is not None and task.key in self.long_running:
            self.rejoining[task.key] = None  # granted by _ensure_computing
        else:  # it never seceded (or is unknown): its thread may simply go on
            self.log.append(("rejoin-not-seceded", ev.key, self._fx.stimulus_id, self._fx.now))
            self._fx.emit(GrantThread(key=ev.key, stimulus_id=self._fx.stimulus_id), ev.key)

    # -- transfer events --------------------------------------------------------------------

    def _end_gather(self, worker: Address) -> list[WorkerTask] | None:
        """Settle the accounting of the GatherDep from ``worker``; return its tasks."""
        keys = self.in_flight_workers.pop(worker, None)
        if keys is None:
            self.log.append(("stale-gather", worker, self._fx.stimulus_id, self._fx.now))
            return None
        self.comm_bytes -= self.in_flight_nbytes.pop(worker)
        self.in_flight_tasks -= len(keys)
        return [self.tasks[key] for key in keys]

    def _on_gather_succeeded(self, ev: GatherDepSucceeded) -> None:
        tasks = self._end_gather(ev.worker)
        for task in tasks or ():
            key = task.key
            if key in ev.data:
                self._transfer_arrived(task, ev.data[key], ev.nbytes.get(key))
            elif key in ev.unreadable:
                self._transfer_unreadable(task, ev.unreadable[key])
            else:
                self._drop_holder(task, ev.worker)
                msg = MissingDataMsg(
                    key=key, errant_worker=ev.worker, stimulus_id=self._fx.stimulus_id
                )
                self._fx.emit(msg, key)
                self._transfer_failed(task)

    def _transfer_arrived(self, task: WorkerTask, value: object, nbytes: int | None) -> None:
        if task.state == "cancelled":
            self._transition(task, "released")
            self._fx.unwanted.append(task)
            return
        if nbytes is not None:
            task.nbytes = nbytes
        # the only look at a value: its type's name, for the client's repr of a future
        task.type_name = type(value).__name__
        task.start = task.stop = self._fx.now
        self._transition(task, "memory", value)

    def _transfer_unreadable(self, task: WorkerTask, error: ErrorInfo) -> None:
        if task.state == "cancelled" or task.assigned:
            self._transfer_failed(task)
            return
        task.error = error
        self._transition(task, "error")
        # the tasks here waiting for it cannot run: they fail with the same error
        stack = [task]
        while stack:
            failed = stack.pop()
            for dependent in list(failed.dependents):
                if dependent.state == "waiting":
                    dependent.error = error
                    self._transition(dependent, "error")
                    if not dependent.assigned:
                        stack.append(dependent)

    def _transfer_failed(self, task: WorkerTask) -> None:
        if task.state == "cancelled":
            self._transition(task, "released")
            self._fx.unwanted.append(task)
        elif task.assigned:
            self._transition(task, "waiting")
        else:
            self._fetch_or_missing(task)

    def _on_gather_busy(self, ev: GatherDepBusy) -> None:
        tasks = self._end_gather(ev.worker)
        if tasks is None:
            return
        self.busy_workers.add(ev.worker)
        self._fx.emit(
            RetryBusyWorkerLater(worker=ev.worker, stimulus_id=self._fx.stimulus_id), ev.worker
        )
        for task in tasks:
            self._transfer_failed(task)

    def _on_gather_network_failed(self, ev: GatherDepNetworkFailed) -> None:
        tasks = self._end_gather(ev.worker)
        self._forget_worker(ev.worker)
        for task in tasks or ():
            self._transfer_failed(task)

    def _on_busy_retry_due(self, ev: BusyWorkerRetryDue) -> None:
        self.busy_workers.discard(ev.worker)

    # -- shell events -----------------------------------------------------------------------

    def _on_paused(self, ev: WorkerPaused) -> None:
        self.paused = True

    def _on_unpaused(self, ev: WorkerUnpaused) -> None:
        self.paused = False

    def _on_memory_pressure(self, ev: MemoryPressureDetected) -> None:
        drop_replicas(self, ev.nbytes, self._fx)

    # -- who holds what ---------------------------------------------------------------------

    def _update_who_has(self, task: WorkerTask, holders: tuple[Address, ...]) -> None:
        """Make ``holders`` (minus ourselves) the task's holders; fetch <-> missing."""
        new = set(holders)
        new.discard(self.address)
        old = task.who_has
        if new == old:
            return
        for worker in old - new:
            self._drop_holder(task, worker)
        for worker in sorted(new - old):
            self._add_holder(task, worker)
        if task.state == "fetch" and not task.who_has:
            self._transition(task, "missing")
        elif task.state == "missing" and task.who_has:
            self._transition(task, "fetch")

    def _add_holder(self, task: WorkerTask, worker: Address) -> None:
        task.who_has.add(worker)
        keys = self.has_what.get(worker)
        if keys is None:
            keys = self.has_what[worker] = set()
        keys.add(task.key)
        if task.state == "fetch":
            heap = self.pending_data_per_worker.get(worker)
            if heap is None:
                heap = self.pending_data_per_worker[worker] = KeyHeap(self.heap_order)
            heap.push(task.key, task.priority)

    def _drop_holder(self, task: WorkerTask, worker: Address) -> None:
        task.who_has.discard(worker)
        drop_has_what(self.has_what, worker, task.key)
        if task.state == "fetch":
            heap = self.pending_data_per_worker.get(worker)
            if heap is not None:
                heap.discard(task.key)
                if not heap:
                    del self.pending_data_per_worker[worker]

    def _forget_worker(self, worker: Address) -> None:
        """``worker`` is unreachable: assume it holds nothing."""
        self.pending_data_per_worker.pop(worker, None)
        for key in self.has_what.pop(worker, ()):
            task = self.tasks[key]
            task.who_has.discard(worker)
            if task.state == "fetch" and not task.who_has:
                self._transition(task, "missing")

    def _fetch_or_missing(self, task: WorkerTask) -> None:
        self._transition(task, "fetch" if task.who_has else "missing")

    def _raise_priority(self, task: WorkerTask, priority: Priority) -> None:
        task.priority = priority
        if task.state == "fetch":
            self.data_needed.push(task.key, priority)
            for worker in task.who_has:
                self.pending_data_per_worker[worker].push(task.key, priority)

    # -- starting work ----------------------------------------------------------------------

    def _ensure_computing(self) -> None:
        while self.rejoining and len(self.executing) < self.nthreads:
            self._grant_rejoin(self.tasks[next(iter(self.rejoining))])
        if self.paused:
            return
        while len(self.executing) < self.nthreads:
            task = self._next_runnable()
            if task is None:
                return
            self._transition(task, "executing")
        limit = ahead_limit(self)  # quick tasks queued behind busy threads (run ahead)
        while len(self.executing) < limit:
            task = self._next_runnable()
            if task is None or not is_quick(self, task):
                return
            self._transition(task, "executing")

    def _grant_rejoin(self, task: WorkerTask) -> None:
        """Give the oldest rejoining task its thread slot back."""
        if task.state == "long-running":
            self._transition(task, "executing")  # emits GrantThread
            return
        # cancelled while seceded: nobody wants the outcome, but the thread goes on
        self._transition(task, "cancelled", "executing")  # emits GrantThread

    def _next_runnable(self) -> WorkerTask | None:
        """The best-priority ready task, or constrained one whose resources are free."""
        entry = self.ready.peek_entry()
        candidate = self._first_fitting_constrained() if self.constrained_by_need else None
        if entry is None:
            return candidate
        task = self.tasks[entry[2]]
        if candidate is None or task.priority <= candidate.priority:
            return task
        return candidate

    def _first_fitting_constrained(self) -> WorkerTask | None:
        available = self.available_resources
        best: tuple[Priority, int, Key] | None = None
        for need, heap in self.constrained_by_need.items():
            if all(available.get(name, 0.0) >= amount for name, amount in need):
                entry = heap.peek_entry()
                if entry is not None and (best is None or entry[1] < best[1]):
                    best = entry
        return None if best is None else self.tasks[best[2]]

    def _ensure_communicating(self) -> None:
        if self.paused or not self.pending_data_per_worker:
            return
        if len(self.in_flight_workers) >= self.total_out_connections:
            return
        candidates: list[tuple[Priority, int, Address]] = []
        for worker, heap in self.pending_data_per_worker.items():
            if worker in self.in_flight_workers or worker in self.busy_workers:
                continue
            entry = heap.peek_entry()
            if entry is not None:
                candidates.append((entry[0], entry[1], worker))
        candidates.sort()
        for _, _, worker in candidates:
            if len(self.in_flight_workers) >= self.total_out_connections:
                return
            if self.comm_bytes >= self.total_comm_nbytes:
                return
            self._gather_from(worker)

    def _gather_from(self, worker: Address) -> None:
        """One GatherDep to ``worker``: its best keys, within the byte budgets."""
        heap = self.pending_data_per_worker.get(worker)
        in_flight = self.comm_bytes
        budget = min(self.gather_nbytes_limit, self.total_comm_nbytes - in_flight)
        keys: list[Key] = []
        total = 0
        while heap:
            key = heap.peek()
            assert key is not None
            task = self.tasks[key]
            nbytes = task.fetch_nbytes()
            if (keys or in_flight) and total + nbytes > budget:
                break  # the first key travels alone whatever its size if nothing else does
            task.coming_from = worker
            self._transition(task, "flight")
            keys.append(key)
            total += nbytes
        if keys:
            msg = GatherDep(
                worker=worker,
                keys=frozenset(keys),
                total_nbytes=total,
                stimulus_id=self._fx.stimulus_id,
            )
            self._fx.emit(msg, frozenset(keys))


def _event_record(event: WorkerEvent) -> tuple[Any, ...]:
    """The log record of an event: ("stimulus", name, subject, detail, stimulus_id, now)."""
    subject: object = None
    detail: object = None
    if isinstance(event, (TaskAssigned, ExecuteSucceeded, ExecuteFailed)):
        subject, detail = event.key, event.run_id
    elif isinstance(event, (StealRequested, TaskSeceded, TaskRejoined)):
        subject = event.key
    elif isinstance(event, KeysFreed):
        subject = frozenset(event.keys)
    elif isinstance(event, (GatherDepSucceeded, GatherDepBusy, GatherDepNetworkFailed)):
        subject, detail = event.requested, event.worker
    elif isinstance(event, (ReplicasRequested, WhoHasRefreshed)):
        subject = frozenset(event.who_has)
    elif isinstance(event, BusyWorkerRetryDue):
        detail = event.worker
    elif isinstance(event, MemoryPressureDetected):
        detail = event.nbytes
    return ("stimulus", type(event).__name__, subject, detail, event.stimulus_id, event.now)


def _mentions(record: tuple[Any, ...], wanted: set[object]) -> bool:
    for item in record:
        if isinstance(item, frozenset):
            if not wanted.isdisjoint(item):
                return True
        elif item in wanted:
            return True
    return False


WorkerState._HANDLERS = {
    TaskAssigned: WorkerState._on_task_assigned,
    ReplicasRequested: WorkerState._on_replicas_requested,
    KeysFreed: WorkerState._on_keys_freed,
    DataReceived: WorkerState._on_data_received,
    StealRequested: WorkerState._on_steal_requested,
    WhoHasRefreshed: WorkerState._on_who_has_refreshed,
    MissingRefreshDue: WorkerState._on_missing_refresh_due,
    ExecuteSucceeded: WorkerState._on_execute_succeeded,
    ExecuteFailed: WorkerState._on_execute_failed,
    TaskSeceded: WorkerState._on_task_seceded,
    TaskRejoined: WorkerState._on_task_rejoined,
    GatherDepSucceeded: WorkerState._on_gather_succeeded,
    GatherDepBusy: WorkerState._on_gather_busy,
    GatherDepNetworkFailed: WorkerState._on_gather_network_failed,
    BusyWorkerRetryDue: WorkerState._on_busy_retry_due,
    WorkerPaused: WorkerState._on_paused,
    WorkerUnpaused: WorkerState._on_unpaused,
    MemoryPressureDetected: WorkerState._on_memory_pressure,
}
