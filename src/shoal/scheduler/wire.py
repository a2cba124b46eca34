"""Adapters between the wire schema (``shoal.protocol.ops``) and the scheduler's state machine.

The scheduler shell and the simulation (``tests/sim/real_worker.py``) both use these.

Rules of this file:

* Pure: structs in, structs out; no IO, no clock (the shell passes ``now``).
* Fields are read as attributes of the structs, never by string name: the field names
  live in ``shoal.protocol.ops`` alone.
* Every op of the worker->scheduler stream is in ``EVENT_OF`` or in ``SHELL_OPS``, and every
  instruction bound for a worker is in ``OP_OF`` (a test checks both).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shoal._types import Address
from shoal.protocol import ops
from shoal.scheduler import events as ev
from shoal.scheduler import instructions as ins

#: (op, worker, incarnation, now) -> event
_Adapter = Callable[[Any, Address, "int | None", float], ev.SchedulerEvent]

# -- worker -> scheduler: op -> event ---------------------------------------------------------


def _started(op: ops.TaskStarted, w: Address, inc: int | None, now: float) -> ev.TaskStarted:
    return ev.TaskStarted(
        key=op.key, run_id=op.run_id,
        worker=w, incarnation=inc, stimulus_id=op.stimulus_id or op.op, now=now,
    )  # fmt: skip


def _finished(op: ops.TaskFinished, w: Address, inc: int | None, now: float) -> ev.TaskFinished:
    return ev.TaskFinished(
        key=op.key, run_id=op.run_id, nbytes=op.nbytes, type_name=op.type_name,
        start=op.start, stop=op.stop,
        worker=w, incarnation=inc, stimulus_id=op.stimulus_id or op.op, now=now,
    )  # fmt: skip


def _erred(op: ops.TaskErred, w: Address, inc: int | None, now: float) -> ev.TaskErred:
    return ev.TaskErred(
        key=op.key, run_id=op.run_id, exception=op.exception, traceback=op.traceback,
        exception_text=op.exception_text, traceback_text=op.traceback_text,
        reschedule=op.reschedule,
        worker=w, incarnation=inc, stimulus_id=op.stimulus_id or op.op, now=now,
    )  # fmt: skip


def _released(
    op: ops.ReleaseWorkerData, w: Address, inc: int | None, now: float
) -> ev.WorkerReleasedKey:
    return ev.WorkerReleasedKey(
        key=op.key, worker=w, incarnation=inc, stimulus_id=op.stimulus_id or op.op, now=now
    )


def _added(op: ops.AddKeys, w: Address, inc: int | None, now: float) -> ev.WorkerAddedKeys:
    return ev.WorkerAddedKeys(
        keys=tuple(op.keys), nbytes=op.nbytes,
        worker=w, incarnation=inc, stimulus_id=op.stimulus_id or op.op, now=now,
    )  # fmt: skip


def _seceded(op: ops.LongRunning, w: Address, inc: int | None, now: float) -> ev.TaskSeceded:
    return ev.TaskSeceded(
        key=op.key, run_id=op.run_id,
        worker=w, incarnation=inc, stimulus_id=op.stimulus_id or op.op, now=now,
    )  # fmt: skip


def _rejoined(op: ops.Rejoined, w: Address, inc: int | None, now: float) -> ev.TaskRejoined:
    return ev.TaskRejoined(
        key=op.key, run_id=op.run_id,
        worker=w, incarnation=inc, stimulus_id=op.stimulus_id or op.op, now=now,
    )  # fmt: skip


def _steal(op: ops.StealResponse, w: Address, inc: int | None, now: float) -> ev.StealResponded:
    return ev.StealResponded(
        key=op.key, state=op.state,
        worker=w, incarnation=inc, stimulus_id=op.stimulus_id or op.op, now=now,
    )  # fmt: skip


def _missing(op: ops.MissingData, w: Address, inc: int | None, now: float) -> ev.DataMissing:
    return ev.DataMissing(
        key=op.key, errant_worker=op.errant_worker,
        worker=w, incarnation=inc, stimulus_id=op.stimulus_id or op.op, now=now,
    )  # fmt: skip


def _refresh(
    op: ops.RequestRefreshWhoHas, w: Address, inc: int | None, now: float
) -> ev.WhoHasRefreshRequested:
    return ev.WhoHasRefreshRequested(
        keys=tuple(op.keys),
        worker=w, incarnation=inc, stimulus_id=op.stimulus_id or op.op, now=now,
    )  # fmt: skip


def _status(
    op: ops.WorkerStatusChange, w: Address, inc: int | None, now: float
) -> ev.WorkerStatusChanged:
    return ev.WorkerStatusChanged(
        status=op.status,
        worker=w, incarnation=inc, stimulus_id=op.stimulus_id or op.op, now=now,
    )  # fmt: skip


#: how each op from a worker becomes the event the scheduler's state is fed
EVENT_OF: dict[type[ops.Op], _Adapter] = {
    ops.TaskStarted: _started,
    ops.TaskFinished: _finished,
    ops.TaskErred: _erred,
    ops.ReleaseWorkerData: _released,
    ops.AddKeys: _added,
    ops.LongRunning: _seceded,
    ops.Rejoined: _rejoined,
    ops.StealResponse: _steal,
    ops.MissingData: _missing,
    ops.RequestRefreshWhoHas: _refresh,
    ops.WorkerStatusChange: _status,
}
#: ops from a worker the shell acts on itself (no state-machine event)
SHELL_OPS: frozenset[type[ops.Op]] = frozenset({ops.Heartbeat, ops.Unregister})


def to_event(op: ops.Op, worker: Address, incarnation: int | None, now: float) -> ev.SchedulerEvent:
    """The state-machine event of an op from ``worker`` (``KeyError``: a shell op)."""
    return EVENT_OF[type(op)](op, worker, incarnation, now)


# -- scheduler -> worker: instruction -> op ---------------------------------------------------


def _compute(inst: ins.ComputeTask) -> ops.ComputeTask:
    return ops.ComputeTask(
        key=inst.key, run_id=inst.run_id, run_spec=inst.run_spec, priority=inst.priority,
        who_has=inst.who_has, nbytes=inst.nbytes, resources=inst.resources,
        annotations=inst.annotations, stimulus_id=inst.stimulus_id,
    )  # fmt: skip


def _free(inst: ins.FreeKeys) -> ops.FreeKeys:
    return ops.FreeKeys(keys=inst.keys, stimulus_id=inst.stimulus_id)


def _acquire(inst: ins.AcquireReplicas) -> ops.AcquireReplicas:
    return ops.AcquireReplicas(
        who_has=inst.who_has, nbytes=inst.nbytes, stimulus_id=inst.stimulus_id
    )


def _close(inst: ins.CloseWorker) -> ops.CloseWorker:
    return ops.CloseWorker(reason=inst.reason, stimulus_id=inst.stimulus_id)


def _steal_request(inst: ins.StealRequest) -> ops.StealRequest:
    return ops.StealRequest(key=inst.key, stimulus_id=inst.stimulus_id)


def _refresh_who_has(inst: ins.RefreshWhoHas) -> ops.RefreshWhoHas:
    return ops.RefreshWhoHas(who_has=inst.who_has, stimulus_id=inst.stimulus_id)


#: how each instruction bound for a worker becomes its op
OP_OF: dict[type[ins.SchedulerInstruction], Callable[[Any], ops.Op]] = {
    ins.ComputeTask: _compute,
    ins.FreeKeys: _free,
    ins.AcquireReplicas: _acquire,
    ins.CloseWorker: _close,
    ins.StealRequest: _steal_request,
    ins.RefreshWhoHas: _refresh_who_has,
}


def to_op(inst: ins.SchedulerInstruction) -> ops.Op:
    """The op an instruction bound for a worker goes out as."""
    return OP_OF[type(inst)](inst)
