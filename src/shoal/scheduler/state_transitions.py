"""The scheduler's transition table and the bookkeeping every transition shares.

``TransitionEngine`` owns the containers (tasks, workers, clients, the queue) and moves
tasks between states; ``state.SchedulerState`` holds one (``state.engine``, composition,
not inheritance) and turns events into calls on its public methods (``transition``,
``transitions``, ``emit``...). See the
rules at the top of ``state.py``.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple, TypeAlias

from shoal._types import Address, Key, SchedulerTaskStateName, StimulusId
from shoal.errors import FutureLostError, InvalidTransition
from shoal.graph.keys import key_split
from shoal.scheduler.instructions import (
    ComputeTask,
    FreeKeys,
    KeyErred,
    KeyInMemory,
    KeyLost,
    SchedulerInstruction,
)
from shoal.scheduler.policy import (
    LOCALITY_WINDOW,
    RestrictionSig,
    fill,
    has_room,
    holds_inputs,
    pick_worker,
    satisfies,
    surplus_replicas,
    valid_workers,
)
from shoal.scheduler.state_copies import KeptInputs, unsafe
from shoal.scheduler.state_records import (
    EMPTY_DICT,
    EMPTY_SET,
    FIRE_AND_FORGET_CLIENT,
    ClientInfo,
    SchedulerTask,
    TaskPrefix,
    TaskQueue,
    WorkerFillIndex,
    WorkerInfo,
)
from shoal.scheduler.state_speculation import (
    SPECULATION_DEPTH,
    follows,
    may_follow,
    speculation_depth,
)

#: what transitions return: further moves to make, task → desired state
Recs: TypeAlias = "dict[SchedulerTask, SchedulerTaskStateName]"
#: one entry of the transition log: (key, start, finish, stimulus_id, now)
LogEntry: TypeAlias = "tuple[Key, str, str, StimulusId, float]"

#: forgotten tasks at most per pass, the rest put off to ``ForgettingDue`` passes: the
#: release of a million-task graph's output forgot every task in one pass (4 s, ~4 µs a
#: task) while no worker or client was answered
FORGETS_PER_PASS = 10_000

#: states in which a task is on its way to memory and holds its dependencies' data needed
ACTIVE: frozenset[str] = frozenset({"waiting", "queued", "no-worker", "processing"})


class Failure(NamedTuple):
    """Why a task is erred: what the client will see, and which task really failed."""

    exception: object
    traceback: object
    exception_text: str
    traceback_text: str
    blame: SchedulerTask


def needed(ts: SchedulerTask) -> bool:
    """A client holds a future for it, or an active dependent needs its data."""
    return bool(ts.who_wants) or bool(ts.waiters)


class TransitionEngine:
    """Containers and transitions of the scheduler (no event handling; see ``state``)."""

    def __init__(
        self, *, rng: random.Random, log_length: int, allowed_failures: int, latency: float
    ) -> None:
        #: every live task by key (forgotten tasks are dropped)
        self.tasks: dict[Key, SchedulerTask] = {}
        #: every connected worker by address
        self.workers: dict[Address, WorkerInfo] = {}
        #: every known client by id
        self.clients: dict[str, ClientInfo] = {}
        #: duration statistics by key prefix
        self.prefixes: dict[str, TaskPrefix] = {}
        #: ready tasks waiting for a worker with room: exactly the tasks in state "queued"
        self.queued = TaskQueue()
        #: ready tasks no running worker may run: exactly the tasks in state "no-worker"
        self.unrunnable: dict[SchedulerTask, None] = {}
        #: (key, start, finish, stimulus_id, now) of the latest transitions
        self.transition_log: deque[LogEntry] = deque(maxlen=log_length)
        self.rng = rng
        self.latency = latency
        self.allowed_failures = allowed_failures
        #: running workers, least filled first
        self.fill_index = WorkerFillIndex()
        #: running workers satisfying each restriction signature (cleared on worker changes)
        self.valid_cache: dict[RestrictionSig, list[WorkerInfo]] = {}
        #: number of tasks in each state
        self.state_counts: dict[str, int] = {}
        self._run_ids = itertools.count(1)
        self._ready_seq = itertools.count()
        #: something may have made room on a worker: hand out queued tasks
        self.room_opened = False
        #: tasks with several copies that may have become surplus (see ``_reduce_replicas``)
        self.replica_review: dict[SchedulerTask, None] = {}
        #: results that may want a spare copy (see ``state_copies``)
        self.copy_review: dict[SchedulerTask, None] = {}
        #: results up to this size keep a spare copy on a second worker while needed
        #: (0: never)
        self.spare_copy_bytes = 0
        #: small inputs kept for unsafe results (see ``state_copies``)
        self.kept = KeptInputs()
        #: spare copies asked for and not landed yet: result -> target worker
        self.spare_in_flight: dict[SchedulerTask, WorkerInfo] = {}
        #: inputs no longer kept, to release once the current recommendations are done
        self.unkept: Recs = {}
        #: speculative tasks that may follow each other on a worker (``state_speculation``)
        self.speculation_depth = SPECULATION_DEPTH
        #: processing tasks whose waiting dependents may follow them to their worker
        self.speculation_review: dict[SchedulerTask, None] = {}
        #: the stimulus being handled, and the instructions it produced so far
        self.stimulus_id: StimulusId = ""
        self.now = 0.0
        self.instructions: list[SchedulerInstruction] = []
        #: FreeKeys emitted so far (``coalesce_frees`` runs only for an event that made two)
        self.frees = 0
        #: released tasks nothing needs, whose forgetting a pass put off; a deque, not a
        #: dict: it may hold a million (checked again when their turn comes)
        self.forgetting: deque[SchedulerTask] = deque()
        #: tasks forgotten in this pass (``SchedulerState.handle_stimulus`` resets it)
        self.forgets = 0
        self.forgets_per_pass = FORGETS_PER_PASS

    # -- the loop ---------------------------------------------------------------------------

    def story(self, *keys_or_stimulus_ids: object) -> list[tuple[Any, ...]]:
        """The logged transitions of these keys, or caused by these stimuli."""
        wanted = set(keys_or_stimulus_ids)
        return [entry for entry in self.transition_log if entry[0] in wanted or entry[3] in wanted]

    def transition(self, ts: SchedulerTask, finish: SchedulerTaskStateName, **kw: Any) -> Recs:
        """Move ``ts`` to ``finish`` now through the table.

        A request for "processing" is first *routed* (``_route``): it lands in processing,
        queued, no-worker, or back in waiting, each a pair of the table. A step may hand
        the task on (released -> waiting errs it when an input erred); the move logged is
        from ``start`` to where the task ends up.
        """
        start = ts.state
        if finish == "processing":
            finish, kw = self._route(ts, kw.get("worker"))
            if finish == start and (start, finish) not in TRANSITIONS:
                return {}  # stays where it is (no-worker, still no worker may run it)
        elif start == finish:
            return {}
        func = TRANSITIONS.get((start, finish))
        if func is None:
            story: list[object] = [*self.story(ts.key)]
            raise InvalidTransition(ts.key, start, finish, story)
        recs = func(self, ts, **kw)
        end = ts.state
        if end != start:
            self.state_counts[start] -= 1
            if end != "forgotten":
                self.state_counts[end] = self.state_counts.get(end, 0) + 1
            self.transition_log.append((ts.key, start, end, self.stimulus_id, self.now))
        return recs

    def transitions(self, recs: Recs) -> None:
        """Carry out recommendations (newest first) until none are left.

        Ready tasks are routed last, best priority first, so that when slots are scarce
        the most urgent of the tasks that became ready together get them.
        """
        ready: list[tuple[tuple[float, ...], int, SchedulerTask]] = []
        while True:
            while recs:
                ts, finish = recs.popitem()
                if ts.state == finish or not self._still_applies(ts, finish):
                    continue
                if finish == "processing":
                    heapq.heappush(ready, (ts.priority, next(self._ready_seq), ts))
                elif finish == "forgotten" and self.forgets >= self.forgets_per_pass:
                    self.forgetting.append(ts)  # a later pass (ForgettingDue)
                else:
                    self.forgets += finish == "forgotten"
                    recs.update(self.transition(ts, finish))
            if self.unkept:  # after the rest: a lost result may need its input again
                recs, self.unkept = self.unkept, {}
                continue
            if not ready:
                if not self.speculation_review:
                    return
                recs = self._speculate()
                continue
            ts = heapq.heappop(ready)[2]
            if ts.state != "processing" and self._still_applies(ts, "processing"):
                recs = self.transition(ts, "processing")

    def _still_applies(self, ts: SchedulerTask, finish: str) -> bool:
        """Recommendations are wishes checked when carried out, so order never matters."""
        state = ts.state
        if finish == "released":
            return (
                state != "forgotten"
                and not needed(ts)
                and not (state == "erred" and ts.dependents)
                and ts not in self.kept
            )
        if finish == "forgotten":
            return state == "released" and not ts.dependents and not ts.who_wants
        if finish == "waiting":
            return needed(ts) if state == "released" else state in ACTIVE
        if finish == "processing":
            return state in ("queued", "no-worker") or (state == "waiting" and not ts.waiting_on)
        if finish == "erred":
            return state in ACTIVE and self._erred_dependency(ts) is not None
        return False

    def emit(self, instruction: SchedulerInstruction) -> None:
        self.instructions.append(instruction)

    # -- helpers shared by transitions ------------------------------------------------------

    def new_task(self, key: Key) -> SchedulerTask:
        name = key_split(key)
        prefix = self.prefixes.get(name)
        if prefix is None:
            prefix = self.prefixes[name] = TaskPrefix(name)
        ts = self.tasks[key] = SchedulerTask(key, prefix)
        self.state_counts["released"] = self.state_counts.get("released", 0) + 1
        return ts

    def alive(self, ws: WorkerInfo) -> bool:
        return self.workers.get(ws.address) is ws

    def _free(self, ws: WorkerInfo, keys: tuple[Key, ...]) -> None:
        if self.alive(ws):
            self.frees += 1
            self.emit(FreeKeys(stimulus_id=self.stimulus_id, worker=ws.address, keys=keys))

    def maybe_release(self, ts: SchedulerTask, recs: Recs) -> None:
        """Recommend dropping ``ts`` if nothing needs it any more."""
        if needed(ts) or ts in self.kept:
            return
        if ts.state == "released":
            if not ts.dependents:
                recs[ts] = "forgotten"
        elif ts.state != "forgotten":
            recs[ts] = "released"

    def _after_release(self, ts: SchedulerTask, recs: Recs) -> None:
        """``ts`` just became released: compute it again, or forget it."""
        if needed(ts):
            recs[ts] = "waiting"
        elif not ts.dependents:
            recs[ts] = "forgotten"

    def _erred_dependency(self, ts: SchedulerTask) -> SchedulerTask | None:
        for dep in ts.dependencies:
            if dep.state == "erred":
                return dep
        return None

    def _lost(self, ts: SchedulerTask, ws: WorkerInfo | None = None) -> Failure:
        where = f" with worker {ws.address}" if ws is not None else ""
        exc = FutureLostError(
            f"the data of {ts.key!r} was lost{where} and cannot be recomputed "
            "(it has no run spec: scattered data, or a key the scheduler no longer knows)"
        )
        return Failure(exc, None, str(exc), "", ts)

    def add_replica(self, ts: SchedulerTask, ws: WorkerInfo) -> None:
        if ts.who_has is EMPTY_DICT:
            ts.who_has = {}
        ts.who_has[ws] = None
        ws.has_what[ts] = None
        ws.nbytes += max(ts.nbytes, 0)
        if len(ts.who_has) > 1:  # safe now: a loss of one copy costs nothing
            self.spare_in_flight.pop(ts, None)
            self.stop_keeping(ts)

    def stop_keeping(self, ts: SchedulerTask) -> None:
        """``ts`` is safe or gone: release the inputs it kept, once the rest is done."""
        for dep in self.kept.release(ts):
            self.unkept[dep] = "released"

    def stop_keeping_all(self) -> None:
        """No spare copy can land (fewer than two running workers): keep nothing."""
        for ts in self.kept.keepers():
            self.stop_keeping(ts)

    def reduce_replicas(self) -> None:
        """Free the surplus copies of the tasks under review (``policy.surplus_replicas``),
        one FreeKeys per worker. Runs after an event's placements, so a task just sent to
        a holder counts as needing its copy there."""
        review, self.replica_review = self.replica_review, {}
        freed: dict[WorkerInfo, list[Key]] = {}
        for ts in review:
            if ts.state != "memory":
                continue
            keep = 2 if 0 <= ts.nbytes <= self.spare_copy_bytes else 1
            for ws in surplus_replicas(ts, keep):
                del ts.who_has[ws], ws.has_what[ts]
                ws.nbytes -= max(ts.nbytes, 0)
                freed.setdefault(ws, []).append(ts.key)
        for ws, keys in freed.items():
            self._free(ws, tuple(keys))

    def _drop_replicas(self, ts: SchedulerTask) -> None:
        """Forget every copy of ``ts`` and tell its holders to drop it."""
        for ws in ts.who_has:
            del ws.has_what[ts]
            ws.nbytes -= max(ts.nbytes, 0)
            self._free(ws, (ts.key,))
        ts.who_has = EMPTY_DICT
        self.spare_in_flight.pop(ts, None)
        self.kept.forget(ts)
        self.stop_keeping(ts)

    def remove_replica(self, ts: SchedulerTask, ws: WorkerInfo) -> Recs:
        """``ws`` no longer holds ``ts``; recompute, release or err it if that was the last."""
        if ws not in ts.who_has:
            return {}
        del ts.who_has[ws], ws.has_what[ts]
        ws.nbytes -= max(ts.nbytes, 0)
        if ts.who_has and ts.state == "memory" and self.spare_copy_bytes:
            self.copy_review[ts] = None  # one copy left: make another
        if ts.who_has or ts.state != "memory":
            return {}
        if ts.run_spec is None and needed(ts):
            return self.transition(ts, "erred", failure=self._lost(ts, ws))
        return self.transition(ts, "released")

    # -- placement --------------------------------------------------------------------------

    def _valid_for_sig(self, sig: RestrictionSig) -> list[WorkerInfo]:
        valid = self.valid_cache.get(sig)
        if valid is None:
            valid = self.valid_cache[sig] = valid_workers(sig, self.workers.values())
        return valid

    def _valid_for(self, ts: SchedulerTask) -> list[WorkerInfo] | None:
        """The running workers ``ts`` may run on; None: any running worker."""
        if ts.restriction_sig is None:
            return None
        valid = self._valid_for_sig(ts.restriction_sig)
        if not valid and ts.allow_other_workers:
            return None
        return valid

    def _add_holders(
        self, ts: SchedulerTask, candidates: dict[WorkerInfo, None], restricted: bool
    ) -> None:
        """Add the workers with room that hold some of ``ts``'s inputs."""
        duration, latency = ts.prefix.duration, self.latency
        for dep in ts.dependencies:
            for ws in dep.who_has:
                if (
                    ws not in candidates
                    and has_room(ws, duration, latency)
                    and (not restricted or satisfies(ts.restriction_sig, ws))
                ):
                    candidates[ws] = None

    def _choose(self, ts: SchedulerTask, valid: list[WorkerInfo] | None) -> WorkerInfo | None:
        """The best worker with room for ``ts`` right now, if any."""
        duration, latency = ts.prefix.duration, self.latency
        if valid is None:
            ws = self.fill_index.least_filled()
            if ws is None or not has_room(ws, duration, latency):
                return None
            candidates = {ws: None}
        else:
            candidates = {ws: None for ws in valid if has_room(ws, duration, latency)}
            if not candidates:
                return None
        if ts.dependencies:
            self._add_holders(ts, candidates, restricted=valid is not None)
        return pick_worker(ts, candidates, self.rng)

    def _assign(self, ts: SchedulerTask, ws: WorkerInfo) -> None:
        ts.run_id = next(self._run_ids)
        ts.processing_on = ws
        ts.state = "processing"
        ws.processing[ts] = None
        for name, quantity in ts.resource_restrictions.items():
            ws.used_resources[name] = ws.used_resources.get(name, 0.0) + quantity
        self.fill_index.update(ws)
        if ts.waiters and self.speculation_depth:
            self.speculation_review[ts] = None
        deps = ts.dependencies
        self.emit(
            ComputeTask(
                stimulus_id=self.stimulus_id,
                worker=ws.address,
                key=ts.key,
                run_id=ts.run_id,
                run_spec=ts.run_spec,
                priority=ts.priority,
                who_has={dep.key: tuple(w.address for w in dep.who_has) for dep in deps},
                # a speculative task's input has no size yet (and no holder but ``ws``)
                nbytes={dep.key: dep.nbytes for dep in deps if dep.state == "memory"},
                resources=ts.resource_restrictions,
                annotations=ts.annotations,
                inline_result=_a_client_waits(ts),
            )
        )

    def _unassign(self, ts: SchedulerTask, free: bool) -> None:
        """Take ``ts`` off its worker (telling the worker to drop it if ``free``)."""
        ws = ts.processing_on
        assert ws is not None, ts
        ts.processing_on = None
        ts.waiting_on = EMPTY_SET  # a speculative task waited for one input
        del ws.processing[ts]
        ws.executing.pop(ts, None)
        ws.long_running.pop(ts, None)
        for name, quantity in ts.resource_restrictions.items():
            left = ws.used_resources.get(name, 0.0) - quantity
            if abs(left) < 1e-9:
                ws.used_resources.pop(name, None)
            else:
                ws.used_resources[name] = left
        if self.alive(ws):
            self.fill_index.update(ws)
            self.room_opened = True
            if free:
                self._free(ws, (ts.key,))

    def _leave(self, ts: SchedulerTask, release_deps: bool = True) -> Recs:
        """Take an active task out of its state's container; it no longer needs its inputs."""
        state = ts.state
        recs: Recs = {}
        if state == "waiting":
            ts.waiting_on = EMPTY_SET
        elif state == "queued":
            self.queued.discard(ts)
        elif state == "no-worker":
            del self.unrunnable[ts]
        elif state == "processing":
            self._take_back_followers(ts, recs)
            self._unassign(ts, free=True)
        for dep in ts.dependencies:
            if dep.waiters.pop(ts, 0) is None and not dep.waiters:
                dep.waiters = EMPTY_DICT  # an emptied dict keeps its table: drop it
            if release_deps:
                self.maybe_release(dep, recs)
        return recs

    # -- speculation: a chain's next task goes ahead to its input's worker ------------------

    def _speculate(self) -> Recs:
        """Send the waiting dependents of the processing tasks under review that wait for
        nothing else to the worker computing that input (``state_speculation``)."""
        review, self.speculation_review = self.speculation_review, {}
        recs: Recs = {}
        limit = self.speculation_depth
        for ts in review:
            ws = ts.processing_on
            if ws is None or ws.status != "running" or not ts.waiters:
                continue
            if speculation_depth(ts, limit) >= limit:
                continue
            for dts in list(ts.waiters):
                if may_follow(dts, ts):
                    recs.update(self.transition(dts, "processing", worker=ws))
                elif follows(dts, ts):
                    # one step closer to an input in memory: the next may follow it now
                    self.speculation_review[dts] = None
        return recs

    def _take_back_followers(self, ts: SchedulerTask, recs: Recs) -> None:
        """``ts`` leaves processing without a result: the speculative tasks waiting for it
        go back to waiting, and are freed on its worker before ``ts`` is."""
        for dts in list(ts.waiters):
            if follows(dts, ts):
                recs.update(self.transition(dts, "waiting"))

    # -- admission: handing out queued tasks ------------------------------------------------

    def _room_for(self, ts: SchedulerTask, sig: RestrictionSig) -> WorkerInfo | None:
        """The least-filled worker (allowed by ``sig``) with room for ``ts``."""
        duration, latency = ts.prefix.duration, self.latency
        if sig is None:
            ws = self.fill_index.least_filled()
            return ws if ws is not None and has_room(ws, duration, latency) else None
        best: WorkerInfo | None = None
        for ws in self._valid_for_sig(sig):
            if has_room(ws, duration, latency) and (best is None or fill(ws) < fill(best)):
                best = ws
        return best

    def fill_from_queue(self) -> None:
        """Hand out queued tasks, best priority first, while some worker has room."""
        self.room_opened = False
        while self.queued:
            best: tuple[SchedulerTask, RestrictionSig, WorkerInfo] | None = None
            for sig in self.queued.signatures():
                head = self.queued.peek(sig)
                assert head is not None
                ws = self._room_for(head, sig)
                if ws is not None and (best is None or head.priority < best[0].priority):
                    best = (head, sig, ws)
            if best is None:
                return
            _, sig, ws = best
            ts = self.queued.pop_preferring(sig, self._fits_locally(ws), LOCALITY_WINDOW)
            candidates = {ws: None}
            if ts.dependencies:
                self._add_holders(ts, candidates, restricted=sig is not None)
            target = pick_worker(ts, candidates, self.rng)
            self.transitions(self.transition(ts, "processing", worker=target))

    def _fits_locally(self, ws: WorkerInfo) -> Callable[[SchedulerTask], bool]:
        """Whether ``ws`` has room for a task and already holds some of its inputs."""
        latency = self.latency
        return lambda ts: has_room(ws, ts.prefix.duration, latency) and holds_inputs(ts, ws)

    def orphaned_queue(self) -> Recs:
        """Route again the restricted queued tasks that lost their last valid worker."""
        recs: Recs = {}
        for sig in self.queued.signatures():
            if sig is not None and not self._valid_for_sig(sig):
                for ts in self.queued.tasks(sig):
                    recs[ts] = "processing"
        return recs

    # -- the transitions --------------------------------------------------------------------

    def _released_to_waiting(self, ts: SchedulerTask) -> Recs:
        if ts.run_spec is None:
            return self._to_erred(ts, failure=self._lost(ts))
        if self._erred_dependency(ts) is not None:
            return self._to_erred(ts)
        recs: Recs = {}
        ts.state = "waiting"
        for dep in ts.dependencies:
            if dep.waiters is EMPTY_DICT:
                dep.waiters = {}
            dep.waiters[ts] = None
            if dep.state != "memory":
                if ts.waiting_on is EMPTY_SET:
                    ts.waiting_on = set()
                ts.waiting_on.add(dep)
                if dep.state == "released":
                    recs[dep] = "waiting"
        if not ts.waiting_on:
            recs[ts] = "processing"
        elif len(ts.waiting_on) == 1 and self.speculation_depth:
            dep = next(iter(ts.waiting_on))
            if dep.state == "processing":
                self.speculation_review[dep] = None
        return recs

    def _route(
        self, ts: SchedulerTask, worker: WorkerInfo | None
    ) -> tuple[SchedulerTaskStateName, dict[str, Any]]:
        """Where a ready task goes, and with what: to a worker with room ("processing"),
        else the queue ("queued"), else "no-worker"; back to "waiting" if an input was
        lost meanwhile. Decides only: the table's step makes the move."""
        if ts.state != "waiting" and any(d.state != "memory" for d in ts.dependencies):
            return "waiting", {}
        if worker is None:
            valid = self._valid_for(ts)
            if (valid is not None and not valid) or (valid is None and not self.fill_index):
                return "no-worker", {}
            worker = self._choose(ts, valid)
            if worker is None:
                return "queued", {"sig": None if valid is None else ts.restriction_sig}
        return "processing", {"worker": worker}

    def _leave_ready(self, ts: SchedulerTask) -> None:
        """Take a ready task out of the queue or the no-worker set, if it is in one."""
        if ts.state == "queued":
            self.queued.discard(ts)
        elif ts.state == "no-worker":
            del self.unrunnable[ts]

    def _to_processing(self, ts: SchedulerTask, worker: WorkerInfo) -> Recs:
        self._leave_ready(ts)
        self._assign(ts, worker)
        return {}

    def _to_queued(self, ts: SchedulerTask, sig: RestrictionSig) -> Recs:
        self._leave_ready(ts)
        ts.state = "queued"
        self.queued.push(ts, sig)
        return {}

    def _to_no_worker(self, ts: SchedulerTask) -> Recs:
        self._leave_ready(ts)
        ts.state = "no-worker"
        self.unrunnable[ts] = None
        return {}

    def _reschedule(self, ts: SchedulerTask) -> Recs:
        """Back to waiting from queued, no-worker or processing (its inputs may be gone)."""
        self._leave(ts, release_deps=False)
        ts.state = "released"
        return self._released_to_waiting(ts)

    def _to_released(self, ts: SchedulerTask) -> Recs:
        recs = self._leave(ts)
        ts.state = "released"
        self._after_release(ts, recs)
        return recs

    def _processing_to_memory(
        self,
        ts: SchedulerTask,
        nbytes: int,
        type_name: str,
        duration: float,
        value: object = None,
    ) -> Recs:
        """``value``: the result's serialized copy the worker sent, if any; it goes to the
        clients that want the key and is not kept here."""
        ws = ts.processing_on
        assert ws is not None
        self._unassign(ts, free=False)
        ts.prefix.add_duration(duration)
        return self._arrived(ts, [ws], nbytes, type_name, value)

    def _released_to_memory(
        self, ts: SchedulerTask, workers: list[WorkerInfo], nbytes: int, type_name: str
    ) -> Recs:
        return self._arrived(ts, workers, nbytes, type_name)

    def _arrived(
        self,
        ts: SchedulerTask,
        workers: list[WorkerInfo],
        nbytes: int,
        type_name: str,
        value: object = None,
    ) -> Recs:
        """The result of ``ts`` is now held by ``workers``."""
        ts.state = "memory"
        ts.nbytes, ts.type_name = nbytes, type_name
        for ws in workers:
            self.add_replica(ts, ws)
        if self.spare_copy_bytes:
            self.copy_review[ts] = None
        if ts.who_wants:
            holders = tuple(ws.address for ws in ts.who_has)
            for client in ts.who_wants:
                self.emit(
                    KeyInMemory(
                        stimulus_id=self.stimulus_id, client=client, key=ts.key,
                        type_name=type_name, who_has=holders, value=value,
                    )
                )  # fmt: skip
        recs: Recs = {}
        for dts in ts.waiters:
            if ts in dts.waiting_on:
                dts.waiting_on.remove(ts)
                if not dts.waiting_on:
                    dts.waiting_on = EMPTY_SET  # an empty set of its own is 216 bytes
                    if dts.state == "processing":  # it went ahead: the next may follow
                        self.speculation_review[dts] = None
                    else:
                        recs[dts] = "processing"
        keep = self.spare_copy_bytes > 0 and unsafe(ts, self.spare_copy_bytes, len(self.fill_index))
        for dep in ts.dependencies:
            if ts in dep.waiters:
                del dep.waiters[ts]
                if not dep.waiters:
                    dep.waiters = EMPTY_DICT
                if len(dep.who_has) > 1:
                    self.replica_review[dep] = None
                if keep and dep.state == "memory" and 0 <= dep.nbytes <= self.spare_copy_bytes:
                    self.kept.keep(ts, dep)
                self.maybe_release(dep, recs)
        if not needed(ts):
            recs[ts] = "released"
        return recs

    def _memory_to_released(self, ts: SchedulerTask) -> Recs:
        self._drop_replicas(ts)
        ts.state = "released"
        for client in ts.who_wants:  # still wanted: its last copy was lost, not let go
            self.emit(KeyLost(stimulus_id=self.stimulus_id, client=client, key=ts.key))
        recs: Recs = {}
        for dts in ts.waiters:
            if dts.state == "waiting":
                if dts.waiting_on is EMPTY_SET:
                    dts.waiting_on = set()
                dts.waiting_on.add(ts)
            else:
                recs[dts] = "waiting"
        self._after_release(ts, recs)
        return recs

    def _to_erred(self, ts: SchedulerTask, failure: Failure | None = None) -> Recs:
        """Err ``ts`` with ``failure``, or with the failure of an erred dependency."""
        if failure is None:
            dep = self._erred_dependency(ts)
            assert dep is not None and dep.exception_blame is not None, ts
            failure = Failure(
                dep.exception,
                dep.traceback,
                dep.exception_text,
                dep.traceback_text,
                dep.exception_blame,
            )
        if ts.state in ACTIVE:
            recs = self._leave(ts)
        else:
            recs = {}
            self._drop_replicas(ts)
        ts.state = "erred"
        ts.exception, ts.traceback = failure.exception, failure.traceback
        ts.exception_text, ts.traceback_text = failure.exception_text, failure.traceback_text
        ts.exception_blame = failure.blame
        for client in ts.who_wants:
            self.emit(
                KeyErred(
                    stimulus_id=self.stimulus_id,
                    client=client,
                    key=ts.key,
                    exception=ts.exception,
                    traceback=ts.traceback,
                    exception_text=ts.exception_text,
                    traceback_text=ts.traceback_text,
                )
            )
        for dts in ts.dependents:
            if dts.state in ACTIVE:
                recs[dts] = "erred"
        if not needed(ts) and not ts.dependents:
            recs[ts] = "released"
        return recs

    def _erred_to_released(self, ts: SchedulerTask) -> Recs:
        ts.state = "released"
        ts.exception = ts.traceback = ts.exception_blame = None
        ts.exception_text = ts.traceback_text = ""
        recs: Recs = {}
        self._after_release(ts, recs)
        return recs

    def _released_to_forgotten(self, ts: SchedulerTask) -> Recs:
        del self.tasks[ts.key]
        ts.state = "forgotten"
        recs: Recs = {}
        for dep in ts.dependencies:
            del dep.dependents[ts]
            if not dep.dependents:
                dep.dependents = EMPTY_DICT
            self.maybe_release(dep, recs)
        ts.dependencies = EMPTY_DICT
        return recs


_Transition: TypeAlias = "Callable[..., Recs]"
E = TransitionEngine

#: (start, finish) → transition. Anything else raises InvalidTransition. A request for
#: "processing" is routed first (``_route``) and lands in one of the pairs marked routed.
TRANSITIONS: dict[tuple[str, str], _Transition] = {
    ("released", "waiting"): E._released_to_waiting,
    ("released", "forgotten"): E._released_to_forgotten,
    ("released", "erred"): E._to_erred,
    ("released", "memory"): E._released_to_memory,
    ("waiting", "released"): E._to_released,
    ("waiting", "processing"): E._to_processing,  # routed: a worker has room
    ("waiting", "queued"): E._to_queued,  # routed: no worker has room
    ("waiting", "no-worker"): E._to_no_worker,  # routed: no running worker may run it
    ("waiting", "erred"): E._to_erred,
    ("queued", "released"): E._to_released,
    ("queued", "processing"): E._to_processing,  # routed
    ("queued", "queued"): E._to_queued,  # routed: its restricted workers left, requeued
    ("queued", "no-worker"): E._to_no_worker,  # routed
    ("queued", "waiting"): E._reschedule,  # routed: an input was lost
    ("queued", "erred"): E._to_erred,
    ("no-worker", "released"): E._to_released,
    ("no-worker", "processing"): E._to_processing,  # routed
    ("no-worker", "queued"): E._to_queued,  # routed: a worker that may run it joined
    ("no-worker", "waiting"): E._reschedule,  # routed: an input was lost
    ("no-worker", "erred"): E._to_erred,
    ("processing", "released"): E._to_released,
    ("processing", "memory"): E._processing_to_memory,
    ("processing", "waiting"): E._reschedule,
    ("processing", "erred"): E._to_erred,
    ("memory", "released"): E._memory_to_released,
    ("memory", "erred"): E._to_erred,
    ("erred", "released"): E._erred_to_released,
}


def _a_client_waits(ts: SchedulerTask) -> bool:
    """Whether a connected client wants ``ts`` (then its small result is copied to it)."""
    return any(client != FIRE_AND_FORGET_CLIENT for client in ts.who_wants)
