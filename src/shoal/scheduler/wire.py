"""Adapters between the wire schema (``shoal.protocol.ops``) and the scheduler's state machine.

The scheduler shell and the simulation (``tests/sim/real_worker.py``) both use these.

Rules of this file:

* Pure: structs in, structs out; no IO, no clock (the shell passes ``now``).
* Fields are read as attributes of the structs, never by string name: the field names
  live in ``shoal.protocol.ops`` alone.
* Every op of the worker->scheduler stream is in ``EVENT_OF`` or in ``SHELL_OPS``, and every
  instruction bound for a worker is in ``OP_OF``; likewise for clients, every
  client->scheduler op is in ``CLIENT_EVENT_OF`` or ``CLIENT_SHELL_OPS`` and every
  instruction bound for a client is in ``CLIENT_OP_OF`` (a test checks all of them).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from shoal._types import Address, Key
from shoal.protocol import ops
from shoal.protocol.serialize import Serialized, serialize
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
        start=op.start, stop=op.stop, value=op.value,
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
        annotations=inst.annotations, inline_result=inst.inline_result,
        stimulus_id=inst.stimulus_id,
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


# -- client -> scheduler: op -> event ---------------------------------------------------------

#: makes a fresh stimulus id from a prefix (the shell's counter: ids never collide)
_NewId = Callable[[str], str]


def new_tasks(
    rows: Iterable[ops.TaskRow], restrictions: Mapping[Key, Mapping[str, Any]]
) -> Iterable[ev.NewTask]:
    """The tasks of an ``update-graph``, each with its restrictions.

    A dask key is a tuple whose first item names its layer, and msgpack decodes a fresh
    copy of that name for every key: the name is interned, so a million-task graph holds
    each name once, not once per task (~85 bytes a task)."""
    for key, run_spec, deps, priority, token in rows:
        if type(key) is tuple and key and type(key[0]) is str:
            key = (sys.intern(key[0]), *key[1:])
        extra = restrictions.get(key)
        if extra is None:
            yield ev.NewTask(
                key=key, run_spec=run_spec, dependencies=tuple(deps), priority=tuple(priority),
                token=token,
            )  # fmt: skip
        else:
            yield ev.NewTask(
                key=key, run_spec=run_spec, dependencies=tuple(deps), priority=tuple(priority),
                token=token,
                retries=int(extra.get("retries") or 0),
                resources=dict(extra.get("resources") or {}),
                workers=tuple(extra.get("workers") or ()),
                allow_other_workers=bool(extra.get("allow_other_workers")),
                annotations=dict(extra.get("annotations") or {}),
            )  # fmt: skip


def _graph(op: ops.UpdateGraph, client: str, now: float, new_id: _NewId) -> ev.GraphSubmitted:
    return ev.GraphSubmitted(
        client=client, tasks=tuple(new_tasks(op.tasks, op.restrictions or {})),
        wanted=tuple(op.wanted), stimulus_id=op.stimulus_id or new_id(op.op), now=now,
    )  # fmt: skip


def _desired(op: ops.ClientDesiresKeys, client: str, now: float, new_id: _NewId) -> ev.KeysDesired:
    return ev.KeysDesired(
        client=client, keys=tuple(op.keys), stimulus_id=op.stimulus_id or new_id(op.op), now=now
    )


def _client_released(
    op: ops.ClientReleasesKeys, client: str, now: float, new_id: _NewId
) -> ev.KeysReleased:
    return ev.KeysReleased(
        client=client, keys=tuple(op.keys), stimulus_id=op.stimulus_id or new_id(op.op), now=now
    )


def _cancel(op: ops.CancelKeys, client: str, now: float, new_id: _NewId) -> ev.KeysCancelled:
    return ev.KeysCancelled(
        client=client, keys=tuple(op.keys), force=bool(op.force),
        stimulus_id=op.stimulus_id or new_id(op.op), now=now,
    )  # fmt: skip


def _retry(op: ops.Retry, client: str, now: float, new_id: _NewId) -> ev.RetryRequested:
    return ev.RetryRequested(
        client=client, keys=tuple(op.keys), stimulus_id=op.stimulus_id or new_id(op.op), now=now
    )


#: how each op from a client becomes the event the scheduler's state is fed
CLIENT_EVENT_OF: dict[type[ops.Op], Callable[[Any, str, float, _NewId], ev.SchedulerEvent]] = {
    ops.UpdateGraph: _graph,
    ops.ClientDesiresKeys: _desired,
    ops.ClientReleasesKeys: _client_released,
    ops.CancelKeys: _cancel,
    ops.Retry: _retry,
}
#: ops from a client the shell acts on itself (no state-machine event)
CLIENT_SHELL_OPS: frozenset[type[ops.Op]] = frozenset(
    {ops.CloseClient, ops.ClientReconnected, ops.Claim}
)


def client_event(op: ops.Op, client: str, now: float, new_id: _NewId) -> ev.SchedulerEvent:
    """The state-machine event of an op from ``client`` (``KeyError``: a shell op);
    ``new_id(op name)`` makes a fresh stimulus id for an op that brought none."""
    return CLIENT_EVENT_OF[type(op)](op, client, now, new_id)


# -- scheduler -> client: instruction -> op ---------------------------------------------------


def _in_memory(inst: ins.KeyInMemory) -> ops.KeyInMemory:
    return ops.KeyInMemory(
        key=inst.key, type_name=inst.type_name, who_has=inst.who_has, value=inst.value
    )


def _erred_for_client(inst: ins.KeyErred) -> ops.KeyErred:
    exception = inst.exception
    if not isinstance(exception, Serialized):  # one the scheduler made itself (KilledWorker)
        exception = serialize(exception)
    traceback = inst.traceback if isinstance(inst.traceback, Serialized) else None
    return ops.KeyErred(
        key=inst.key, exception=exception, traceback=traceback,
        exception_text=inst.exception_text, traceback_text=inst.traceback_text,
    )  # fmt: skip


def _cancelled(inst: ins.KeysCancelledForClient) -> ops.CancelledKeys:
    return ops.CancelledKeys(keys=inst.keys, reason=inst.reason)


def _lost(inst: ins.KeyLost) -> ops.LostData:
    return ops.LostData(key=inst.key)


def _retried(inst: ins.KeyRetried) -> ops.TaskRetried:
    return ops.TaskRetried(key=inst.key)


#: how each instruction bound for a client becomes its op
CLIENT_OP_OF: dict[type[ins.SchedulerInstruction], Callable[[Any], ops.Op]] = {
    ins.KeyInMemory: _in_memory,
    ins.KeyErred: _erred_for_client,
    ins.KeysCancelledForClient: _cancelled,
    ins.KeyRetried: _retried,
    ins.KeyLost: _lost,
}
#: ops to clients that the shell sends itself, from no instruction
CLIENT_SHELL_SENT: frozenset[type[ops.Op]] = frozenset({ops.Output, ops.TopicEvent})


def to_client_op(inst: ins.SchedulerInstruction) -> ops.Op:
    """The op an instruction bound for a client goes out as."""
    return CLIENT_OP_OF[type(inst)](inst)
