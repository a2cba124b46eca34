"""Fencing and recovery: the parts of ``SchedulerState`` that survive a lost connection.

Rules of this file:

* Pure, like the rest of the state: no IO, no clock (times come in on events).
* Fencing: an event from a worker's stream is applied only if it comes from the worker's
  current incarnation. Events from an older one (a worker removed for a missed heartbeat
  that woke up, a stream that closed after its worker registered again) change nothing;
  they are counted in ``fenced_events``.
* A result a worker reports holding (at registration, or a task it was running then) is
  a claim, checked against what the state knows:
  - a task in memory gains a replica (a key held by two workers is a replica, never a
    conflict);
  - a task still to compute (waiting, queued, no-worker, processing) is finished with it,
    without recomputation;
  - an unknown key (the scheduler restarted and no client re-declared it yet) is kept in
    ``unclaimed`` until a client declares it (then it is in memory at once) or until
    ``UnclaimedExpired`` frees it on its holders;
  - anything else (erred, released by every client) is freed on the worker.
"""

from __future__ import annotations

from shoal._types import Key
from shoal.scheduler.events import FromWorker, SchedulerEvent, UnclaimedExpired
from shoal.scheduler.instructions import FreeKeys
from shoal.scheduler.state_records import SchedulerTask, WorkerInfo
from shoal.scheduler.state_transitions import Recs, TransitionEngine

#: task states in which a reported result finishes the task
_TO_COMPUTE = frozenset({"waiting", "queued", "no-worker", "processing"})


class Recovery:
    """Fencing of stale incarnations; rebuilding ``who_has`` from workers' reports.

    A part of ``SchedulerState``: it moves tasks through the state's ``engine``.
    """

    engine: TransitionEngine

    def _init_recovery(self) -> None:
        #: key -> {worker: nbytes} for results reported by workers that no task claims yet
        self.unclaimed: dict[Key, dict[WorkerInfo, int]] = {}
        #: key -> when it was first reported (the event's clock), for ``UnclaimedExpired``
        self._unclaimed_since: dict[Key, float] = {}
        #: events ignored because they came from a stale incarnation or a removed worker
        self.fenced_events = 0

    def _fenced(self, event: SchedulerEvent) -> bool:
        """Whether ``event`` comes from a worker incarnation that is no longer current."""
        if not isinstance(event, FromWorker) or event.incarnation is None:
            return False
        ws = self.engine.workers.get(event.worker)
        if ws is not None and ws.incarnation == event.incarnation:
            return False
        self.fenced_events += 1
        return True

    def _claim_reports(self, ws: WorkerInfo, held: tuple[tuple[Key, int], ...]) -> Recs:
        recs: Recs = {}
        for key, nbytes in held:
            recs.update(self._claim(ws, key, int(nbytes)))
        return recs

    def _claim(self, ws: WorkerInfo, key: Key, nbytes: int) -> Recs:
        """``ws`` holds the result of ``key`` (``nbytes``): see the rules above."""
        ts = self.engine.tasks.get(key)
        if ts is None:
            self.unclaimed.setdefault(key, {})[ws] = nbytes
            self._unclaimed_since.setdefault(key, self.engine.now)
            return {}
        if ts.state == "memory":
            if ws not in ts.who_has:
                self.engine.add_replica(ts, ws)
            return {}
        if ts.state in _TO_COMPUTE and ts.run_spec is not None:
            return self._finish_with(ts, [ws], nbytes)
        self.engine.emit(
            FreeKeys(stimulus_id=self.engine.stimulus_id, worker=ws.address, keys=(key,))
        )
        return {}

    def _finish_with(self, ts: SchedulerTask, holders: list[WorkerInfo], nbytes: int) -> Recs:
        """Put ``ts`` in memory on ``holders`` from any state, without computing it."""
        recs: Recs = {}
        if ts.state != "released":
            recs.update(self.engine.transition(ts, "released"))
        if ts.state != "released":  # forgotten meanwhile: nothing wants it
            return recs
        recs.update(
            self.engine.transition(ts, "memory", workers=holders, nbytes=nbytes, type_name="")
        )
        return recs

    def _recover_unclaimed(self, touched: list[SchedulerTask]) -> Recs:
        """Newly declared tasks whose results workers already reported: in memory now."""
        recs: Recs = {}
        for ts in touched:
            holders = self.unclaimed.pop(ts.key, None)
            self._unclaimed_since.pop(ts.key, None)
            if not holders:
                continue
            alive = [ws for ws in holders if self.engine.workers.get(ws.address) is ws]
            if alive and ts.state == "released" and ts.run_spec is not None:
                nbytes = max(holders[ws] for ws in alive)
                recs.update(
                    self.engine.transition(ts, "memory", workers=alive, nbytes=nbytes, type_name="")
                )
        return recs

    def _forget_unclaimed_of(self, ws: WorkerInfo) -> None:
        for key in [key for key, holders in self.unclaimed.items() if ws in holders]:
            del self.unclaimed[key][ws]
            if not self.unclaimed[key]:
                del self.unclaimed[key]
                self._unclaimed_since.pop(key, None)

    def _on_unclaimed_expired(self, ev: UnclaimedExpired) -> Recs:
        expired = [key for key, since in self._unclaimed_since.items() if since < ev.before]
        per_worker: dict[WorkerInfo, list[Key]] = {}
        for key in expired:
            del self._unclaimed_since[key]
            for ws in self.unclaimed.pop(key, {}):
                per_worker.setdefault(ws, []).append(key)
        for ws, keys in per_worker.items():
            if self.engine.workers.get(ws.address) is ws:
                self.engine.emit(
                    FreeKeys(
                        stimulus_id=self.engine.stimulus_id, worker=ws.address, keys=tuple(keys)
                    )
                )
        return {}


__all__ = ["Recovery"]
