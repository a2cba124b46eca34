"""A bus node that wraps the real ``WorkerState``: the shell's job, done in memory.

It translates scheduler instructions into worker events and worker instructions back
into scheduler events, exactly as ``Worker`` and ``Scheduler`` do over the wire. Work
the state machine starts (an ``Execute``, a ``GatherDep``) is kept pending and carried
out later, one piece per ``step``, so the seeded simulation decides the interleaving.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from shoal._types import Address, Key
from shoal.scheduler import events as sev
from shoal.scheduler import instructions as sins
from shoal.worker import events as wev
from shoal.worker import instructions as wins
from shoal.worker.state import WorkerState

#: how each message a worker sends becomes the event the scheduler sees
_TO_SCHEDULER: dict[type, tuple[Callable[..., sev.SchedulerEvent], tuple[str, ...]]] = {
    wins.TaskStartedMsg: (sev.TaskStarted, ("key", "run_id")),
    wins.TaskFinishedMsg: (
        sev.TaskFinished,
        ("key", "run_id", "nbytes", "type_name", "start", "stop"),
    ),
    wins.TaskErredMsg: (
        sev.TaskErred,
        ("key", "run_id", "exception", "traceback", "exception_text", "traceback_text"),
    ),
    wins.ReleaseWorkerDataMsg: (sev.WorkerReleasedKey, ("key",)),
    wins.AddKeysMsg: (sev.WorkerAddedKeys, ("keys", "nbytes")),
    wins.LongRunningMsg: (sev.TaskSeceded, ("key", "run_id")),
    wins.StealResponseMsg: (sev.StealResponded, ("key", "state")),
    wins.MissingDataMsg: (sev.DataMissing, ("key", "errant_worker")),
    wins.RequestRefreshWhoHasMsg: (sev.WhoHasRefreshRequested, ("keys",)),
}


class RealWorker:
    """One simulated worker process: a WorkerState, a data dict, pending work."""

    def __init__(self, address: Address, peers: dict[Address, Any], rng: random.Random) -> None:
        self.address = address
        self.peers = peers
        self.rng = rng
        self.state = WorkerState(address=address, nthreads=2, validate=True)
        #: the worker's ``data``: what StoreValue/DeleteValue keep
        self.data: dict[Key, object] = {}
        #: started executions and transfers not finished yet
        self.pending: list[wins.Execute | wins.GatherDep] = []
        #: how many executions finished
        self.executed = 0
        self._now = 0.0

    def runnable(self) -> bool:
        return bool(self.pending)

    def deliver(self, inst: sins.SchedulerInstruction) -> list[sev.SchedulerEvent]:
        return self._feed(self._worker_event(inst))

    def step(self, now: float) -> list[sev.SchedulerEvent]:
        self._now = now
        work = self.pending.pop(self.rng.randrange(len(self.pending)))
        if isinstance(work, wins.Execute):
            return self._feed(self._execute(work))
        return self._feed(self._gather(work))

    # -- doing the work --------------------------------------------------------------------
    def _execute(self, work: wins.Execute) -> wev.WorkerEvent:
        func, dep_keys = work.run_spec  # type: ignore[misc]
        assert set(dep_keys) <= set(work.inputs), (work, dep_keys)
        self.executed += 1
        sid = f"exec-{work.key}-{work.run_id}-{self._now}"
        try:
            value = func(*[self.data[d] for d in dep_keys])
        except ValueError as exc:
            error = wev.ErrorInfo(
                exception=exc, traceback=None, exception_text=repr(exc), traceback_text=""
            )
            return wev.ExecuteFailed(
                key=work.key, run_id=work.run_id, error=error, start=self._now,
                stop=self._now, stimulus_id=sid, now=self._now,
            )  # fmt: skip
        return wev.ExecuteSucceeded(
            key=work.key, run_id=work.run_id, value=value, nbytes=8, type_name="int",
            start=self._now, stop=self._now, stimulus_id=sid, now=self._now,
        )  # fmt: skip

    def _gather(self, work: wins.GatherDep) -> wev.WorkerEvent:
        sid = f"gather-{work.worker}-{self._now}"
        peer = self.peers.get(work.worker)
        if peer is None:
            return wev.GatherDepNetworkFailed(
                worker=work.worker, requested=work.keys, stimulus_id=sid, now=self._now
            )
        data = {k: peer.data[k] for k in work.keys if k in peer.data}
        return wev.GatherDepSucceeded(
            worker=work.worker, requested=work.keys, data=data,
            nbytes=dict.fromkeys(data, 8), stimulus_id=sid, now=self._now,
        )  # fmt: skip

    # -- translating, as the shells do ----------------------------------------------------------
    def _worker_event(self, inst: sins.SchedulerInstruction) -> wev.WorkerEvent:
        sid, now = inst.stimulus_id, self._now
        if isinstance(inst, sins.ComputeTask):
            return wev.TaskAssigned(
                key=inst.key, run_id=inst.run_id, run_spec=inst.run_spec,
                priority=inst.priority, who_has=inst.who_has, nbytes=inst.nbytes,
                resource_restrictions=inst.resources, stimulus_id=sid, now=now,
            )  # fmt: skip
        if isinstance(inst, sins.FreeKeys):
            return wev.KeysFreed(keys=inst.keys, stimulus_id=sid, now=now)
        if isinstance(inst, sins.RefreshWhoHas):
            return wev.WhoHasRefreshed(who_has=inst.who_has, stimulus_id=sid, now=now)
        if isinstance(inst, sins.AcquireReplicas):
            return wev.ReplicasRequested(
                who_has=inst.who_has, nbytes=inst.nbytes, stimulus_id=sid, now=now
            )
        if isinstance(inst, sins.StealRequest):
            return wev.StealRequested(key=inst.key, stimulus_id=sid, now=now)
        raise TypeError(f"no worker event for {inst!r}")

    def _feed(self, event: wev.WorkerEvent) -> list[sev.SchedulerEvent]:
        out: list[sev.SchedulerEvent] = []
        for inst in self.state.handle_stimulus(event):
            if isinstance(inst, wins.StoreValue):
                self.data[inst.key] = inst.value
            elif isinstance(inst, wins.DeleteValue):
                self.data.pop(inst.key, None)
            elif isinstance(inst, wins.Execute | wins.GatherDep):
                self.pending.append(inst)
            elif isinstance(inst, wins.RetryBusyWorkerLater):
                retry = wev.BusyWorkerRetryDue(worker=inst.worker, stimulus_id="retry")
                out += self._feed(retry)
            elif isinstance(inst, wins.SendToScheduler):
                make, fields = _TO_SCHEDULER[type(inst)]
                kwargs = {name: getattr(inst, name) for name in fields}
                out.append(make(worker=self.address, stimulus_id=inst.stimulus_id, **kwargs))
        return out
