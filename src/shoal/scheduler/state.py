"""SchedulerState: the scheduler as a pure state machine (events in, instructions out).

Rules of this file (and of state_transitions.py, state_records.py, state_validate.py)
------------------------------------------------------------------------------------
* No IO, no clocks, no threads, no logging. Time comes in ``event.now``; randomness only
  from the ``random.Random`` given to the constructor. Run specs, exceptions and
  tracebacks are opaque objects: stored and handed on, never looked into.
* ``handle_stimulus(*events)`` is the only entry point that changes anything (the same
  name and signature as ``WorkerState.handle_stimulus``). Each event is turned
  into direct transitions and *recommendations* (task → desired state); the loop in
  ``TransitionEngine.transitions`` (the state's ``engine``) carries the recommendations
  out, newest first, each re-checked when its turn comes (``_still_applies``), so their
  order never matters. Then, if a worker may have gained room, queued tasks are handed out. With
  ``validate=True`` every invariant is checked after every event.
* Transitions are data: ``state_transitions.TRANSITIONS`` maps (start, finish) to a
  method; any other pair raises ``InvalidTransition`` with the key's story. A transition
  to "processing" *routes* a ready task: to the best worker with room, else to the
  queue ("queued"), else, when no running worker may ever run it, to "no-worker".
* The moves of one task (``TRANSITIONS``, drawn in ``docs/scheduler-states.md``;
  * = routed: a request for "processing" lands in one of these)::

      released    -> waiting, forgotten, erred (input erred or lost), memory (scattered)
      waiting     -> processing*, queued*, no-worker*, released, erred
      queued      -> processing*, queued*, no-worker*, waiting* (an input was lost),
                     released, erred
      no-worker   -> processing*, queued*, waiting*, released, erred
      processing  -> memory, waiting (rescheduled, or its input moved), released
                     (cancelled), erred
      memory      -> released (freed, or its last copy lost), erred (lost, no run spec)
      erred       -> released (retried, or forgotten)

* A task is *needed* while a client wants it or an active (waiting, queued, no-worker,
  processing) dependent waits for its data. Needed released tasks are computed; unneeded
  ones are freed, and forgotten once no dependent refers to them (then their inputs may
  be forgotten too). An erred task is kept while erred dependents refer to it.
* Invariants (checked by ``validate``): a task is "waiting" exactly when some input is
  not in memory (``waiting_on``); "queued"/"no-worker"/"processing" tasks have every
  input in memory, except a *speculative* "processing" task: it waits for one input
  being computed on its own worker (``state_speculation``); "memory" exactly when
  ``who_has`` is non-empty; an input's ``waiters`` are exactly its dependents in
  waiting/queued/no-worker/processing; a task is forgotten once no client wants it and
  no dependent refers to it. Every attempt gets a fresh ``run_id``; a worker's report
  about another attempt is stale and never moves the task.
* Admission: a worker takes tasks only while it has room (``policy.has_room``); all other
  ready tasks wait in ``queued``, a heap, and are handed out (locality first among the
  best few) as threads free up, after the event's own transitions, so a finished task's
  dependents go before queued siblings. Queued tasks stay queued while no worker runs;
  a worker that joins or resumes is filled from the queue. No operation scans all tasks.
* Worker deaths: tasks it was known to be running (else its first ``nthreads`` tasks)
  become more suspicious; ``allowed_failures`` deaths err a task with ``KilledWorker``.
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, TypeAlias

from shoal._types import Address, Key
from shoal.errors import FutureLostError, KilledWorker
from shoal.scheduler.events import (
    ClientConnected,
    ClientDisconnected,
    DataMissing,
    DataScattered,
    ForgettingDue,
    GraphSubmitted,
    KeysCancelled,
    KeysDesired,
    KeysReleased,
    NewTask,
    RetirementRequested,
    RetryRequested,
    SchedulerEvent,
    StealResponded,
    TaskErred,
    TaskFinished,
    TaskRejoined,
    TaskSeceded,
    TaskStarted,
    UnclaimedExpired,
    WhoHasRefreshRequested,
    WorkerAddedKeys,
    WorkerJoined,
    WorkerLeft,
    WorkerReleasedKey,
    WorkerStatusChanged,
)
from shoal.scheduler.instructions import (
    AcquireReplicas,
    CloseWorker,
    FreeKeys,
    KeyErred,
    KeyInMemory,
    KeyRetried,
    KeysCancelledForClient,
    RefreshWhoHas,
    SchedulerInstruction,
    coalesce_frees,
)
from shoal.scheduler.policy import restriction_sig
from shoal.scheduler.state_copies import plan_spare_copies
from shoal.scheduler.state_records import (
    EMPTY_DICT,
    ClientInfo,
    SchedulerTask,
    TaskPrefix,
    TaskQueue,
    WorkerInfo,
)
from shoal.scheduler.state_recovery import Recovery
from shoal.scheduler.state_speculation import SPECULATION_DEPTH
from shoal.scheduler.state_transitions import Failure, LogEntry, Recs, TransitionEngine
from shoal.scheduler.state_validate import validate_state

__all__ = ["ClientInfo", "SchedulerState", "SchedulerTask", "WorkerInfo"]


class SchedulerState(Recovery):
    """The scheduler's whole state; feed it events, carry out the instructions it returns.

    The containers and the transitions live in ``engine`` (a ``TransitionEngine``: one
    per state, not a base class); ``tasks``, ``workers`` and the other containers are
    read-only views of the engine's.
    """

    def __init__(
        self,
        *,
        validate: bool = False,
        rng: random.Random | None = None,
        log_length: int = 100_000,
        allowed_failures: int = 3,
        latency: float = 0.005,
        spare_copy_bytes: int = 0,
        speculation_depth: int = SPECULATION_DEPTH,
    ) -> None:
        #: the containers and the transition table (see ``state_transitions``)
        self.engine = TransitionEngine(
            rng=rng if rng is not None else random.Random(0),
            log_length=log_length,
            allowed_failures=allowed_failures,
            latency=latency,
        )
        #: check every invariant after every event (tests)
        self.validate_after_each_event = validate
        self.engine.spare_copy_bytes = spare_copy_bytes
        self.engine.speculation_depth = max(int(speculation_depth), 0)
        #: workers being retired (status "closing_gracefully"): each gets ``CloseWorker``
        #: once it runs nothing and every key it holds has a copy elsewhere
        self.retiring: dict[WorkerInfo, None] = {}
        self._init_recovery()

    # -- the engine's containers, read-only --------------------------------------------------

    @property
    def tasks(self) -> dict[Key, SchedulerTask]:
        """Every live task by key."""
        return self.engine.tasks

    @property
    def workers(self) -> dict[Address, WorkerInfo]:
        """Every connected worker by address."""
        return self.engine.workers

    @property
    def clients(self) -> dict[str, ClientInfo]:
        """Every known client by id."""
        return self.engine.clients

    @property
    def prefixes(self) -> dict[str, TaskPrefix]:
        """Duration statistics by key prefix."""
        return self.engine.prefixes

    @property
    def queued(self) -> TaskQueue:
        """Ready tasks waiting for a worker with room (state "queued")."""
        return self.engine.queued

    @property
    def unrunnable(self) -> dict[SchedulerTask, None]:
        """Ready tasks no running worker may run (state "no-worker")."""
        return self.engine.unrunnable

    @property
    def forgetting(self) -> deque[SchedulerTask]:
        """Released tasks whose forgetting was put off: the shell then feeds
        ``ForgettingDue`` (a pass forgets at most ``engine.forgets_per_pass``)."""
        return self.engine.forgetting

    @property
    def transition_log(self) -> deque[LogEntry]:
        """(key, start, finish, stimulus_id, now) of the latest transitions."""
        return self.engine.transition_log

    def story(self, *keys_or_stimulus_ids: object) -> list[tuple[Any, ...]]:
        """The logged transitions of these keys, or caused by these stimuli."""
        return self.engine.story(*keys_or_stimulus_ids)

    # -- entry point ------------------------------------------------------------------------

    def handle_stimulus(self, *events: SchedulerEvent) -> list[SchedulerInstruction]:
        """Apply ``events`` in order; return the instructions they produce, in order."""
        out: list[SchedulerInstruction] = []
        self.engine.instructions = out
        self.engine.forgets = 0
        try:
            for event in events:
                self.engine.stimulus_id, self.engine.now = event.stimulus_id, event.now
                if self._fenced(event):
                    continue
                start, frees = len(out), self.engine.frees
                handler = _HANDLERS.get(type(event))
                if handler is None:
                    raise TypeError(f"not a scheduler event: {event!r}")
                self.engine.transitions(handler(self, event))
                if self.engine.room_opened:
                    self.engine.fill_from_queue()
                if self.engine.replica_review:
                    self.engine.reduce_replicas()
                if self.engine.copy_review:
                    self._make_spare_copies()
                if self.retiring:
                    self._close_retired()
                if self.engine.frees - frees > 1:  # the hot path makes none or one
                    coalesce_frees(out, start)
                if self.validate_after_each_event:
                    self.validate()
        finally:
            self.engine.instructions = []
        return out

    def validate(self) -> None:
        """Check every invariant; raise AssertionError naming the task and its story."""
        validate_state(self)

    # -- queries for the IO shell -----------------------------------------------------------

    def who_has(self, keys: Iterable[Key] | None = None) -> dict[Key, list[Address]]:
        """Holders of each key (unknown keys: empty list)."""
        if keys is None:
            keys = self.tasks
        return {key: _holders(self.tasks.get(key)) for key in keys}

    def has_what(self, workers: Iterable[Address] | None = None) -> dict[Address, list[Key]]:
        """Keys held by each worker (unknown workers: empty list)."""
        if workers is None:
            workers = self.workers
        out: dict[Address, list[Key]] = {}
        for address in workers:
            ws = self.workers.get(address)
            out[address] = [ts.key for ts in ws.has_what] if ws is not None else []
        return out

    def nthreads(self) -> dict[Address, int]:
        return {address: ws.nthreads for address, ws in self.workers.items()}

    def n_tasks_by_state(self) -> dict[str, int]:
        return {state: n for state, n in self.engine.state_counts.items() if n}

    # -- clients ----------------------------------------------------------------------------

    def _client(self, client_id: str) -> ClientInfo:
        cs = self.clients.get(client_id)
        if cs is None:
            cs = self.clients[client_id] = ClientInfo(client_id)
        return cs

    def _want(self, cs: ClientInfo, ts: SchedulerTask, recs: Recs) -> None:
        """``cs`` holds a future for ``ts``: tell it what it already can know."""
        if cs.id not in ts.who_wants:
            ts.who_wants += (cs.id,)
            cs.wants_what[ts] = None
        if ts.state == "memory":
            self.engine.emit(
                KeyInMemory(
                    stimulus_id=self.engine.stimulus_id,
                    client=cs.id,
                    key=ts.key,
                    type_name=ts.type_name,
                    who_has=tuple(ws.address for ws in ts.who_has),
                )
            )
        elif ts.state == "erred":
            self._tell_erred(
                cs.id, ts.key, ts.exception, ts.traceback, ts.exception_text, ts.traceback_text
            )
        elif ts.state == "released":
            recs[ts] = "waiting"

    def _unwant(self, cs: ClientInfo, ts: SchedulerTask, recs: Recs) -> None:
        cs.wants_what.pop(ts, None)
        if cs.id in ts.who_wants:
            ts.who_wants = tuple(c for c in ts.who_wants if c != cs.id)
        self.engine.maybe_release(ts, recs)

    def _tell_erred(
        self, client: str, key: Key, exc: object, tb: object, exc_text: str, tb_text: str
    ) -> None:
        self.engine.emit(
            KeyErred(
                stimulus_id=self.engine.stimulus_id,
                client=client,
                key=key,
                exception=exc,
                traceback=tb,
                exception_text=exc_text,
                traceback_text=tb_text,
            )
        )

    def _tell_lost(self, client: str, key: Key) -> None:
        exc = FutureLostError(f"{key!r} is not known to the scheduler (released, or lost)")
        self._tell_erred(client, key, exc, None, str(exc), "")

    def _on_client_connected(self, ev: ClientConnected) -> Recs:
        self._client(ev.client)
        return {}

    def _on_client_disconnected(self, ev: ClientDisconnected) -> Recs:
        cs = self.clients.pop(ev.client, None)
        recs: Recs = {}
        if cs is not None:
            for ts in list(cs.wants_what):
                self._unwant(cs, ts, recs)
        return recs

    def _on_graph_submitted(self, ev: GraphSubmitted) -> Recs:
        cs = self._client(ev.client)
        refused: set[Key] = set()
        touched: list[SchedulerTask] = []
        for nt in ev.tasks:
            ts = self.tasks.get(nt.key)
            if ts is None:
                ts = self.engine.new_task(nt.key)
            elif nt.run_spec is not None and self._conflicts(ts, nt):
                refused.add(nt.key)
                self._refuse(cs, ts, nt)
                continue
            if nt.run_spec is not None and ts.state == "released" and ts.run_spec is None:
                self._define(ts, nt)
            touched.append(ts)
        recs: Recs = {}
        for key in ev.wanted:
            ts = self.tasks.get(key)
            if ts is None:
                self._tell_lost(cs.id, key)
            elif key not in refused:
                self._want(cs, ts, recs)
        if self.unclaimed:
            recs.update(self._recover_unclaimed(touched))
        for ts in touched:
            if ts.state == "released" and not ts.dependents and not ts.who_wants:
                recs.setdefault(ts, "forgotten")
        return dict(reversed(recs.items()))  # popped newest first: keep submission order

    def _conflicts(self, ts: SchedulerTask, nt: NewTask) -> bool:
        """A live task defined differently (tokens known and different)."""
        alive = ts.state != "released" or ts.run_spec is not None
        return alive and None not in (ts.token, nt.token) and ts.token != nt.token

    def _refuse(self, cs: ClientInfo, ts: SchedulerTask, nt: NewTask) -> None:
        exc = ValueError(
            f"key {nt.key!r} is already defined differently (token {ts.token} there, "
            f"{nt.token} here); use another key, or release the existing one first"
        )
        self._tell_erred(cs.id, nt.key, exc, None, str(exc), "")

    def _define(self, ts: SchedulerTask, nt: NewTask) -> None:
        """Give a spec-less released task (new, or only referred to) its definition."""
        ts.run_spec, ts.token, ts.retries = nt.run_spec, nt.token, nt.retries
        ts.priority = tuple(nt.priority)
        ts.resource_restrictions = dict(nt.resources) if nt.resources else EMPTY_DICT
        ts.allow_other_workers = nt.allow_other_workers
        ts.restriction_sig = restriction_sig(nt.workers, nt.resources)
        ts.annotations = nt.annotations or EMPTY_DICT
        for dep_key in nt.dependencies:
            dep = self.tasks.get(dep_key)
            if dep is None:
                dep = self.engine.new_task(dep_key)
            if dep is not ts:
                if ts.dependencies is EMPTY_DICT:
                    ts.dependencies = {}
                if dep.dependents is EMPTY_DICT:
                    dep.dependents = {}
                ts.dependencies[dep] = None
                dep.dependents[ts] = None

    def _on_keys_desired(self, ev: KeysDesired) -> Recs:
        cs = self._client(ev.client)
        recs: Recs = {}
        for key in ev.keys:
            ts = self.tasks.get(key)
            if ts is None:
                self._tell_lost(cs.id, key)
            else:
                self._want(cs, ts, recs)
        return recs

    def _on_keys_released(self, ev: KeysReleased) -> Recs:
        cs = self.clients.get(ev.client)
        recs: Recs = {}
        if cs is not None:
            for key in ev.keys:
                ts = self.tasks.get(key)
                if ts is not None and ts in cs.wants_what:
                    self._unwant(cs, ts, recs)
        return recs

    def _on_forgetting_due(self, ev: ForgettingDue) -> Recs:
        forgetting, most = self.engine.forgetting, self.engine.forgets_per_pass
        recs: Recs = {}
        while forgetting and len(recs) < most:
            recs[forgetting.popleft()] = "forgotten"  # checked again when carried out
        return dict(reversed(recs.items()))  # popped newest first: in the order put off

    def _on_keys_cancelled(self, ev: KeysCancelled) -> Recs:
        affected: dict[str, list[Key]] = {}
        recs: Recs = {}
        for key in ev.keys:
            ts = self.tasks.get(key)
            if ts is None:
                continue
            if ev.force:
                clients = list(ts.who_wants)
            else:
                clients = [ev.client] if ev.client in ts.who_wants else []
            for client in clients:
                affected.setdefault(client, []).append(key)
                self._unwant(self.clients[client], ts, recs)
        reason = ev.reason or f"cancelled by client {ev.client}" + (" (forced)" if ev.force else "")
        for client, keys in affected.items():
            self.engine.emit(
                KeysCancelledForClient(
                    stimulus_id=self.engine.stimulus_id,
                    client=client,
                    keys=tuple(keys),
                    reason=reason,
                )
            )
        return recs

    def _on_retry_requested(self, ev: RetryRequested) -> Recs:
        chain: dict[SchedulerTask, None] = {}
        stack = [ts for key in ev.keys if (ts := self.tasks.get(key)) and ts.state == "erred"]
        while stack:
            ts = stack.pop()
            if ts not in chain:
                chain[ts] = None
                stack.extend(dep for dep in ts.dependencies if dep.state == "erred")
        for ts in chain:
            ts.suspicious = 0  # a deliberate retry forgives earlier worker deaths
            for client in ts.who_wants:
                self.engine.emit(
                    KeyRetried(stimulus_id=self.engine.stimulus_id, client=client, key=ts.key)
                )
        recs: Recs = {}
        for ts in chain:
            recs.update(self.engine.transition(ts, "released"))
        return recs

    def _on_data_scattered(self, ev: DataScattered) -> Recs:
        cs = self._client(ev.client)
        recs: Recs = {}
        for key, addresses in ev.who_has.items():
            holders = [self.workers[a] for a in dict.fromkeys(addresses) if a in self.workers]
            if not holders:
                self._tell_lost(cs.id, key)
                continue
            ts = self.tasks.get(key)
            if ts is None:
                ts = self.engine.new_task(key)
            if ts.state == "memory":
                for ws in holders:
                    if ws not in ts.who_has:
                        self.engine.add_replica(ts, ws)
                self._want(cs, ts, recs)
                continue
            if cs.id not in ts.who_wants:
                ts.who_wants += (cs.id,)
            cs.wants_what[ts] = None
            if ts.state != "released":
                recs.update(self.engine.transition(ts, "released"))
            nbytes, type_name = ev.nbytes.get(key, -1), ev.type_names.get(key, "")
            recs.update(
                self.engine.transition(
                    ts, "memory", workers=holders, nbytes=nbytes, type_name=type_name
                )
            )
        return recs

    # -- workers ----------------------------------------------------------------------------

    def _on_worker_joined(self, ev: WorkerJoined) -> Recs:
        old = self.workers.get(ev.address)
        if old is not None and old.incarnation == ev.incarnation:
            return {}
        recs: Recs = {}
        if old is not None:  # registered again before its old stream was seen to close
            recs.update(self._on_worker_left(WorkerLeft(
                address=ev.address, reason="registered again", stimulus_id=ev.stimulus_id
            )))  # fmt: skip
        ws = WorkerInfo(
            address=ev.address,
            name=ev.name,
            nthreads=ev.nthreads,
            memory_limit=ev.memory_limit,
            resources=dict(ev.resources),
            nanny=ev.nanny,
            services=dict(ev.services),
            incarnation=ev.incarnation,
            reported_running=frozenset(ev.running),
        )
        self.workers[ev.address] = ws
        self._worker_changed(ws)
        recs.update(self._claim_reports(ws, ev.held))
        for ts, finish in self._retry_unrunnable().items():
            recs.setdefault(ts, finish)  # a claim may have made it unneeded: keep that
        return recs

    def _retry_unrunnable(self) -> Recs:
        return dict.fromkeys(self.unrunnable, "processing")

    def _worker_changed(self, ws: WorkerInfo) -> None:
        self.engine.valid_cache.clear()
        self.engine.fill_index.update(ws, present=self.engine.alive(ws))
        self.engine.room_opened = True
        if len(self.engine.fill_index) < 2:
            self.engine.stop_keeping_all()  # no spare copy can land now

    def _on_worker_status_changed(self, ev: WorkerStatusChanged) -> Recs:
        ws = self.workers.get(ev.worker)
        if ws is None or ws.status == ev.status or ws in self.retiring:
            return {}  # a retiring worker stays closing_gracefully whatever it reports
        ws.status = ev.status
        self._worker_changed(ws)
        if ws.status == "running":
            return self._retry_unrunnable()
        return self.engine.orphaned_queue()

    # -- retirement ---------------------------------------------------------------------------

    def _on_retirement_requested(self, ev: RetirementRequested) -> Recs:
        """Stop giving ``ev.worker`` tasks, place its running tasks elsewhere and copy every
        key only it holds to the other running workers (least loaded first). Refused
        (nothing changes) when it holds unique keys and no other worker runs."""
        ws = self.workers.get(ev.worker)
        if ws is None or ws in self.retiring:
            return {}
        unique = [ts for ts in ws.has_what if len(ts.who_has) == 1]
        targets = [
            w
            for w in self.workers.values()
            if w is not ws and w.status == "running" and w.address not in ev.also_retiring
        ]
        if unique and not targets:
            return {}
        self.retiring[ws] = None
        ws.status = "closing_gracefully"
        self._worker_changed(ws)
        recs = self.engine.orphaned_queue()
        for ts in list(ws.processing):
            recs.update(self.engine.transition(ts, "waiting"))
        self._copy_away(ws, unique, targets)
        return recs

    def _copy_away(
        self, ws: WorkerInfo, unique: list[SchedulerTask], targets: list[WorkerInfo]
    ) -> None:
        """Emit one ``AcquireReplicas`` per target, spreading ``unique`` by bytes held."""
        load = {target: target.nbytes for target in targets}
        plans: dict[WorkerInfo, list[SchedulerTask]] = {}
        for ts in unique:
            target = min(load, key=load.__getitem__)
            load[target] += max(ts.nbytes, 0)
            plans.setdefault(target, []).append(ts)
        for target, tasks in plans.items():
            self.engine.emit(
                AcquireReplicas(
                    stimulus_id=self.engine.stimulus_id,
                    worker=target.address,
                    who_has={ts.key: (ws.address,) for ts in tasks},
                    nbytes={ts.key: ts.nbytes for ts in tasks},
                )
            )

    def _make_spare_copies(self) -> None:
        """One ``AcquireReplicas`` per target for the results that want a spare copy."""
        review, self.engine.copy_review = self.engine.copy_review, {}
        plans = plan_spare_copies(
            review, self.workers, self.engine.spare_copy_bytes, self.engine.rng
        )
        for target, tasks in plans.items():
            self.engine.spare_in_flight.update((ts, target) for ts in tasks)
            self.engine.emit(
                AcquireReplicas(
                    stimulus_id=self.engine.stimulus_id,
                    worker=target.address,
                    who_has={ts.key: tuple(_holders(ts)) for ts in tasks},
                    nbytes={ts.key: ts.nbytes for ts in tasks},
                )
            )

    def _close_retired(self) -> None:
        """Tell each retiring worker that runs nothing and holds nothing unique to close."""
        for ws in list(self.retiring):
            if not self.engine.alive(ws):
                del self.retiring[ws]
            elif not ws.processing and all(len(ts.who_has) > 1 for ts in ws.has_what):
                del self.retiring[ws]
                self.engine.emit(
                    CloseWorker(
                        stimulus_id=self.engine.stimulus_id, worker=ws.address, reason="retired"
                    )
                )

    def _on_worker_left(self, ev: WorkerLeft) -> Recs:
        ws = self.workers.get(ev.address)
        if ws is None or ev.incarnation not in (None, ws.incarnation):
            return {}  # gone already, or an older incarnation's stream closing late
        del self.workers[ev.address]
        self._forget_unclaimed_of(ws)
        self._worker_changed(ws)
        recs = self.engine.orphaned_queue()
        if self.engine.spare_copy_bytes:
            self._review_copies_of(ws)
        suspects = {} if ev.expected else self._suspects(ws, ev.running)
        for ts in suspects:
            ts.suspicious += 1
        for ts in list(ws.processing):
            if ts in suspects and ts.suspicious >= self.engine.allowed_failures:
                exc = KilledWorker(ts.key, ts.suspicious, ws.address, ev.reason)
                failure = Failure(exc, None, str(exc), "", ts)
                recs.update(self.engine.transition(ts, "erred", failure=failure))
            else:
                recs.update(self.engine.transition(ts, "waiting"))
        for ts in list(ws.has_what):
            recs.update(self.engine.remove_replica(ts, ws))
        return recs

    def _review_copies_of(self, ws: WorkerInfo) -> None:
        """Results that may want a spare copy now that ``ws`` left: those whose copy was
        on its way to ws (it never lands), and the inputs of its tasks (a copy that was
        to come free with a fetch there). Its own keys are reviewed as they lose a copy."""
        in_flight = self.engine.spare_in_flight
        lost = [ts for ts, target in in_flight.items() if target is ws]
        for ts in lost:
            del in_flight[ts]
        review = self.engine.copy_review
        review.update(dict.fromkeys(lost))
        for dts in ws.processing:
            review.update(dict.fromkeys(dts.dependencies))

    def _suspects(
        self, ws: WorkerInfo, running: tuple[tuple[Key, int], ...] | None
    ) -> dict[SchedulerTask, None]:
        """The tasks that may have killed ``ws``: those its nanny read it was running, else
        those it said it started, else its first ones."""
        ran: dict[SchedulerTask, None] = {}
        for key, run_id in running or ():
            ts = self.tasks.get(key)
            if ts is not None and ts.run_id == run_id and ts.processing_on is ws:
                ran[ts] = None
        if ran:
            return ran
        if ws.executing:
            return dict(ws.executing)
        return dict.fromkeys(itertools.islice(ws.processing, max(ws.nthreads, 1)))

    def _current(self, worker: Address, key: Key, run_id: int) -> SchedulerTask | None:
        """The task if ``run_id`` is its current attempt, running on ``worker``."""
        ts = self.tasks.get(key)
        if ts is None or ts.run_id != run_id or ts.processing_on is None:
            return None
        return ts if ts.processing_on.address == worker else None

    def _on_task_started(self, ev: TaskStarted) -> Recs:
        ts = self._current(ev.worker, ev.key, ev.run_id)
        if ts is not None and ts.processing_on is not None:
            ts.processing_on.executing[ts] = None
        return {}

    def _on_task_seceded(self, ev: TaskSeceded) -> Recs:
        ts = self._current(ev.worker, ev.key, ev.run_id)
        if ts is not None and ts.processing_on is not None:
            ts.processing_on.long_running[ts] = None
            self.engine.fill_index.update(ts.processing_on)
            self.engine.room_opened = True
        return {}

    def _on_task_rejoined(self, ev: TaskRejoined) -> Recs:
        ts = self._current(ev.worker, ev.key, ev.run_id)
        ws = None if ts is None else ts.processing_on
        if ts is not None and ws is not None and ts in ws.long_running:
            del ws.long_running[ts]  # it occupies one of the worker's threads again
            self.engine.fill_index.update(ws, present=self.engine.alive(ws))
        return {}

    def _on_task_finished(self, ev: TaskFinished) -> Recs:
        ws = self.workers.get(ev.worker)
        if ws is None:
            return {}
        ts = self.tasks.get(ev.key)
        if ts is not None and ts.processing_on is ws:
            if ts.run_id != ev.run_id:
                return {}  # an older attempt here; the current one will report
            return self.engine.transition(
                ts, "memory", nbytes=ev.nbytes, type_name=ev.type_name,
                duration=ev.stop - ev.start, value=ev.value,
            )  # fmt: skip
        if ts is not None and ts.state == "memory":
            if ws not in ts.who_has:
                self.engine.add_replica(ts, ws)
            return {}
        if ev.key in ws.reported_running:  # it ran this before it (re)registered
            return self._claim(ws, ev.key, ev.nbytes)
        self.engine.emit(
            FreeKeys(stimulus_id=self.engine.stimulus_id, worker=ws.address, keys=(ev.key,))
        )
        return {}

    def _on_task_erred(self, ev: TaskErred) -> Recs:
        ws = self.workers.get(ev.worker)
        ts = self.tasks.get(ev.key)
        if ws is None or (ts is not None and ws in ts.who_has):
            return {}
        if ts is None or ts.processing_on is not ws:
            self.engine.emit(
                FreeKeys(stimulus_id=self.engine.stimulus_id, worker=ws.address, keys=(ev.key,))
            )
            return {}
        if ts.run_id != ev.run_id:
            return {}
        if ev.reschedule:
            return self.engine.transition(ts, "waiting")
        if ts.retries > 0:
            ts.retries -= 1
            return self.engine.transition(ts, "waiting")
        failure = Failure(ev.exception, ev.traceback, ev.exception_text, ev.traceback_text, ts)
        return self.engine.transition(ts, "erred", failure=failure)

    def _on_worker_released_key(self, ev: WorkerReleasedKey) -> Recs:
        ws = self.workers.get(ev.worker)
        ts = self.tasks.get(ev.key)
        return {} if ws is None or ts is None else self.engine.remove_replica(ts, ws)

    def _on_worker_added_keys(self, ev: WorkerAddedKeys) -> Recs:
        ws = self.workers.get(ev.worker)
        if ws is None:
            return {}
        unwanted: list[Key] = []
        for key in ev.keys:
            ts = self.tasks.get(key)
            if ts is not None and ts.state == "memory":
                if ws not in ts.who_has:
                    self.engine.add_replica(ts, ws)
            elif ts is None or ts.processing_on is not ws:
                unwanted.append(key)
        if unwanted:
            self.engine.emit(
                FreeKeys(
                    stimulus_id=self.engine.stimulus_id, worker=ws.address, keys=tuple(unwanted)
                )
            )
        return {}

    def _on_data_missing(self, ev: DataMissing) -> Recs:
        ws = self.workers.get(ev.errant_worker)
        ts = self.tasks.get(ev.key)
        return {} if ws is None or ts is None else self.engine.remove_replica(ts, ws)

    def _on_who_has_refresh_requested(self, ev: WhoHasRefreshRequested) -> Recs:
        who_has = {key: tuple(_holders(self.tasks.get(key))) for key in ev.keys}
        self.engine.emit(
            RefreshWhoHas(stimulus_id=self.engine.stimulus_id, worker=ev.worker, who_has=who_has)
        )
        return {}

    def _on_steal_responded(self, ev: StealResponded) -> Recs:
        """shoal sends no steal requests yet (admission control leaves little to steal);
        a worker that gave a task up is never left holding the scheduler's only hope of
        it: a task still processing there is placed again."""
        ts = self.tasks.get(ev.key)
        ws = self.workers.get(ev.worker)
        if ts is None or ws is None or ts.processing_on is not ws:
            return {}
        return self.engine.transition(ts, "waiting") if ev.state in _GIVEN_UP else {}


#: states in a steal-response meaning the worker dropped the task (or never had it)
_GIVEN_UP = frozenset({"waiting", "ready", "constrained", None})


def _holders(ts: SchedulerTask | None) -> list[Address]:
    return [] if ts is None else [ws.address for ws in ts.who_has]


_Handler: TypeAlias = "Callable[[SchedulerState, Any], Recs]"

#: event type → handler
_HANDLERS: dict[type[SchedulerEvent], _Handler] = {
    ClientConnected: SchedulerState._on_client_connected,
    ClientDisconnected: SchedulerState._on_client_disconnected,
    GraphSubmitted: SchedulerState._on_graph_submitted,
    KeysDesired: SchedulerState._on_keys_desired,
    KeysReleased: SchedulerState._on_keys_released,
    ForgettingDue: SchedulerState._on_forgetting_due,
    KeysCancelled: SchedulerState._on_keys_cancelled,
    RetryRequested: SchedulerState._on_retry_requested,
    DataScattered: SchedulerState._on_data_scattered,
    WorkerJoined: SchedulerState._on_worker_joined,
    WorkerLeft: SchedulerState._on_worker_left,
    WorkerStatusChanged: SchedulerState._on_worker_status_changed,
    RetirementRequested: SchedulerState._on_retirement_requested,
    TaskStarted: SchedulerState._on_task_started,
    TaskFinished: SchedulerState._on_task_finished,
    TaskErred: SchedulerState._on_task_erred,
    TaskSeceded: SchedulerState._on_task_seceded,
    TaskRejoined: SchedulerState._on_task_rejoined,
    WorkerReleasedKey: SchedulerState._on_worker_released_key,
    WorkerAddedKeys: SchedulerState._on_worker_added_keys,
    DataMissing: SchedulerState._on_data_missing,
    WhoHasRefreshRequested: SchedulerState._on_who_has_refresh_requested,
    StealResponded: SchedulerState._on_steal_responded,
    UnclaimedExpired: SchedulerState._on_unclaimed_expired,
}
