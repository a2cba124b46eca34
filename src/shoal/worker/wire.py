"""Adapters between the wire schema (``shoal.protocol.ops``) and the worker's state machine.

The worker shell and the simulation (``tests/sim/real_worker.py``) both use these, so the
simulated worker speaks exactly what the real one does.

Rules of this file:

* Pure: structs in, structs out; no IO, no clock (the shell passes ``now``).
* Fields are read as attributes of the structs, never by string name: the field names
  live in ``shoal.protocol.ops`` alone.
* Every op of the scheduler->worker stream is in ``EVENT_OF`` or in ``SHELL_OPS``, and every
  ``SendToScheduler`` instruction is in ``OP_OF`` (a test checks both).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shoal.protocol import ops
from shoal.worker import events as ev
from shoal.worker import instructions as ins

# -- scheduler -> worker: op -> event ---------------------------------------------------------


def _compute_task(op: ops.ComputeTask, now: float) -> ev.TaskAssigned:
    return ev.TaskAssigned(
        key=op.key,
        run_id=op.run_id,
        run_spec=op.run_spec,
        priority=tuple(op.priority),
        who_has=op.who_has or {},
        nbytes=op.nbytes or {},
        resource_restrictions=op.resources or {},
        annotations=op.annotations or {},
        inline_result=bool(op.inline_result),
        stimulus_id=op.stimulus_id or op.op,
        now=now,
    )


def _free_keys(op: ops.FreeKeys, now: float) -> ev.KeysFreed:
    return ev.KeysFreed(keys=tuple(op.keys), stimulus_id=op.stimulus_id or op.op, now=now)


def _steal_request(op: ops.StealRequest, now: float) -> ev.StealRequested:
    return ev.StealRequested(key=op.key, stimulus_id=op.stimulus_id or op.op, now=now)


def _refresh_who_has(op: ops.RefreshWhoHas, now: float) -> ev.WhoHasRefreshed:
    return ev.WhoHasRefreshed(who_has=op.who_has, stimulus_id=op.stimulus_id or op.op, now=now)


def _acquire_replicas(op: ops.AcquireReplicas, now: float) -> ev.ReplicasRequested:
    return ev.ReplicasRequested(
        who_has=op.who_has, nbytes=op.nbytes, stimulus_id=op.stimulus_id or op.op, now=now
    )


#: how each op from the scheduler becomes the event the worker's state is fed
EVENT_OF: dict[type[ops.Op], Callable[[Any, float], ev.WorkerEvent]] = {
    ops.ComputeTask: _compute_task,
    ops.FreeKeys: _free_keys,
    ops.StealRequest: _steal_request,
    ops.RefreshWhoHas: _refresh_who_has,
    ops.AcquireReplicas: _acquire_replicas,
}
#: ops from the scheduler the shell acts on itself (no state-machine event)
SHELL_OPS: frozenset[type[ops.Op]] = frozenset({ops.CloseWorker})


def to_event(op: ops.Op, now: float) -> ev.WorkerEvent:
    """The state-machine event of an op from the scheduler (``KeyError``: a shell op)."""
    return EVENT_OF[type(op)](op, now)


# -- worker -> scheduler: instruction -> op ---------------------------------------------------


def _task_started(inst: ins.TaskStartedMsg) -> ops.TaskStarted:
    return ops.TaskStarted(key=inst.key, run_id=inst.run_id, stimulus_id=inst.stimulus_id)


def _task_finished(inst: ins.TaskFinishedMsg) -> ops.TaskFinished:
    return ops.TaskFinished(
        key=inst.key,
        run_id=inst.run_id,
        nbytes=inst.nbytes,
        type_name=inst.type_name,
        start=inst.start,
        stop=inst.stop,
        value=inst.value,
        stimulus_id=inst.stimulus_id,
    )


def _task_erred(inst: ins.TaskErredMsg) -> ops.TaskErred:
    return ops.TaskErred(
        key=inst.key,
        run_id=inst.run_id,
        exception=inst.exception,
        traceback=inst.traceback,
        exception_text=inst.exception_text,
        traceback_text=inst.traceback_text,
        reschedule=inst.reschedule,
        stimulus_id=inst.stimulus_id,
    )


def _release(inst: ins.ReleaseWorkerDataMsg) -> ops.ReleaseWorkerData:
    return ops.ReleaseWorkerData(key=inst.key, stimulus_id=inst.stimulus_id)


def _add_keys(inst: ins.AddKeysMsg) -> ops.AddKeys:
    return ops.AddKeys(keys=inst.keys, nbytes=inst.nbytes, stimulus_id=inst.stimulus_id)


def _long_running(inst: ins.LongRunningMsg) -> ops.LongRunning:
    return ops.LongRunning(key=inst.key, run_id=inst.run_id, stimulus_id=inst.stimulus_id)


def _rejoined(inst: ins.TaskRejoinedMsg) -> ops.Rejoined:
    return ops.Rejoined(key=inst.key, run_id=inst.run_id, stimulus_id=inst.stimulus_id)


def _steal_response(inst: ins.StealResponseMsg) -> ops.StealResponse:
    return ops.StealResponse(key=inst.key, state=inst.state, stimulus_id=inst.stimulus_id)


def _missing_data(inst: ins.MissingDataMsg) -> ops.MissingData:
    return ops.MissingData(
        key=inst.key, errant_worker=inst.errant_worker, stimulus_id=inst.stimulus_id
    )


def _refresh_request(inst: ins.RequestRefreshWhoHasMsg) -> ops.RequestRefreshWhoHas:
    return ops.RequestRefreshWhoHas(keys=inst.keys, stimulus_id=inst.stimulus_id)


#: how each message instruction of the worker's state becomes its op
OP_OF: dict[type[ins.SendToScheduler], Callable[[Any], ops.Op]] = {
    ins.TaskStartedMsg: _task_started,
    ins.TaskFinishedMsg: _task_finished,
    ins.TaskErredMsg: _task_erred,
    ins.ReleaseWorkerDataMsg: _release,
    ins.AddKeysMsg: _add_keys,
    ins.LongRunningMsg: _long_running,
    ins.TaskRejoinedMsg: _rejoined,
    ins.StealResponseMsg: _steal_response,
    ins.MissingDataMsg: _missing_data,
    ins.RequestRefreshWhoHasMsg: _refresh_request,
}


def to_op(inst: ins.SendToScheduler) -> ops.Op:
    """The op a message instruction of the worker's state goes out as."""
    return OP_OF[type(inst)](inst)
