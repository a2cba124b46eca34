"""A bus node that wraps the real ``WorkerState``: the shell's job, done in memory.

It translates scheduler instructions into worker events and worker instructions back
into scheduler events with the shells' own adapters (``shoal.scheduler.wire``,
``shoal.worker.wire``) and their wire maps, exactly as ``Worker`` and
``Scheduler`` do over the wire. Work
the state machine starts (an ``Execute``, a ``GatherDep``) is kept pending and carried
out later, one piece per ``step``, so the seeded simulation decides the interleaving.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, cast

from shoal._types import Address, Key
from shoal.protocol import ops
from shoal.scheduler import events as sev
from shoal.scheduler import instructions as sins
from shoal.scheduler import wire as scheduler_wire
from shoal.worker import events as wev
from shoal.worker import instructions as wins
from shoal.worker import wire as worker_wire
from shoal.worker.state import WorkerState


def _over_the_wire(stream: str, op: ops.Op) -> ops.Op:
    """``op`` after the trip a shell gives it: to its wire map and back. (Not through
    msgpack: the simulation's run specs are plain Python functions, not ``Serialized``;
    tests/protocol/test_ops.py round-trips every op through the real encoding.)"""
    return ops.from_msg(stream, ops.to_msg(op))


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
        #: the scheduler told this worker to close (``CloseWorker``)
        self.closed = False

    def runnable(self) -> bool:
        return bool(self.pending)

    def deliver(self, inst: sins.SchedulerInstruction) -> list[sev.SchedulerEvent]:
        event = self._worker_event(inst)
        return [] if event is None else self._feed(event)

    def step(self, now: float) -> list[sev.SchedulerEvent]:
        self._now = now
        work = self.pending.pop(self.rng.randrange(len(self.pending)))
        if isinstance(work, wins.Execute):
            return self._feed(self._execute(work))
        return self._feed(self._gather(work))

    # -- doing the work --------------------------------------------------------------------
    def _execute(self, work: wins.Execute) -> wev.WorkerEvent:
        func, dep_keys = cast("tuple[Callable[..., Any], list[Key]]", work.run_spec)
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
    def _worker_event(self, inst: sins.SchedulerInstruction) -> wev.WorkerEvent | None:
        """The event the worker shell makes of ``inst``, through the same adapters and wire
        maps as the shells (None: an op the shell handles itself)."""
        op = _over_the_wire(ops.SCHEDULER_TO_WORKER, scheduler_wire.to_op(inst))
        if isinstance(op, ops.CloseWorker):
            self.closed = True
            return None
        return worker_wire.to_event(op, self._now)

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
                op = _over_the_wire(ops.WORKER_TO_SCHEDULER, worker_wire.to_op(inst))
                out.append(scheduler_wire.to_event(op, self.address, None, self._now))
        return out
