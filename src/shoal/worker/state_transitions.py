"""The WorkerState transition table: (start, finish) -> step.

A step does the bookkeeping of one move: it takes the task out of the containers of its
start state and puts it into those of its finish state, and emits the instructions that
belong to the move itself. Most steps are an *exit* hook of the start state followed by
an *enter* hook of the finish state (``_PLAIN``); the few moves that keep a thread or a
transfer going across the move (secede, cancel, resume) are written out (``_SPECIAL``).
A pair that is in neither table is illegal: ``WorkerState._transition`` raises
``InvalidTransition``. ``WorkerState._transition`` has already set ``task.state`` to the
finish state and logged the move when a step runs. A step changes only the public
containers of ``WorkerState``; everything else goes through its ``Effects`` (``fx``).

Pure: no IO, no clock. See ``state.py`` for the rules of the machine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, get_args

from shoal._types import Key, WorkerTaskStateName
from shoal.worker.instructions import (
    DeleteValue,
    Execute,
    GrantThread,
    LongRunningMsg,
    ReleaseWorkerDataMsg,
    StoreValue,
    TaskErredMsg,
    TaskFinishedMsg,
    TaskRejoinedMsg,
    TaskStartedMsg,
)
from shoal.worker.state_effects import Effects
from shoal.worker.state_replicas import make_room
from shoal.worker.state_run_ahead import is_quick
from shoal.worker.state_task import KeyHeap, WorkerTask, drop_has_what

if TYPE_CHECKING:
    from shoal.worker.state import WorkerState

#: a step receives the state (its public containers), the task, an optional payload (the
#: value, for memory) and the effects of the event (instructions, further moves)
Step = Callable[["WorkerState", WorkerTask, object, Effects], None]
Hook = Callable[["WorkerState", WorkerTask, Effects], None]
EnterHook = Callable[["WorkerState", WorkerTask, object, Effects], None]

#: states in which a thread or a transfer is busy with the task
RUNNING_STATES = frozenset({"executing", "long-running", "flight"})
#: every state a task in ``WorkerState.tasks`` can be in, plus the exit ``forgotten``
TASK_STATES: tuple[str, ...] = get_args(WorkerTaskStateName)


def resource_need(task: WorkerTask) -> tuple[tuple[str, float], ...]:
    """The task's resource restrictions as a hashable, ordered group key."""
    return tuple(sorted(task.resource_restrictions.items()))


# -- exit hooks: leave the containers of the start state ---------------------------------


def _exit_nothing(ws: WorkerState, task: WorkerTask, fx: Effects) -> None:
    pass


def _exit_waiting(ws: WorkerState, task: WorkerTask, fx: Effects) -> None:
    task.waiting_for_data.clear()


def _exit_ready(ws: WorkerState, task: WorkerTask, fx: Effects) -> None:
    ws.ready.discard(task.key)


def _exit_constrained(ws: WorkerState, task: WorkerTask, fx: Effects) -> None:
    need = resource_need(task)
    group = ws.constrained_by_need[need]
    group.discard(task.key)
    if not group:
        del ws.constrained_by_need[need]


def _exit_executing(ws: WorkerState, task: WorkerTask, fx: Effects) -> None:
    _leave_thread(ws, task.key)
    _give_back_resources(ws, task)


def _take_thread(ws: WorkerState, task: WorkerTask) -> None:
    """``task`` occupies a thread (or a place queued behind one)."""
    ws.executing.add(task.key)
    if not is_quick(ws, task):
        ws.slow_executing.add(task.key)


def _leave_thread(ws: WorkerState, key: Key) -> None:
    ws.executing.discard(key)
    ws.slow_executing.discard(key)


def _exit_long_running(ws: WorkerState, task: WorkerTask, fx: Effects) -> None:
    ws.long_running.discard(task.key)
    ws.rejoining.pop(task.key, None)
    _give_back_resources(ws, task)


def _give_back_resources(ws: WorkerState, task: WorkerTask) -> None:
    task.exec_run_id = None
    available = ws.available_resources
    for name, amount in task.resource_restrictions.items():
        available[name] += amount


def _exit_fetch(ws: WorkerState, task: WorkerTask, fx: Effects) -> None:
    key = task.key
    ws.data_needed.discard(key)
    pending = ws.pending_data_per_worker
    for worker in task.who_has:
        heap = pending.get(worker)
        if heap is not None:
            heap.discard(key)
            if not heap:
                del pending[worker]


def _exit_missing(ws: WorkerState, task: WorkerTask, fx: Effects) -> None:
    ws.missing.discard(task.key)


def _exit_flight(ws: WorkerState, task: WorkerTask, fx: Effects) -> None:
    # the byte and connection accounting was settled when the GatherDep reported back
    task.coming_from = None


def _exit_memory(ws: WorkerState, task: WorkerTask, fx: Effects) -> None:
    key = task.key
    ws.managed_nbytes -= ws.nbytes.pop(key)
    ws.replicas.pop(key, None)
    fx.emit(DeleteValue(key=key, stimulus_id=fx.stimulus_id), key)
    if task.reported:
        task.reported = False
        fx.emit(ReleaseWorkerDataMsg(key=key, stimulus_id=fx.stimulus_id), key)


def _exit_error(ws: WorkerState, task: WorkerTask, fx: Effects) -> None:
    task.error = None


# -- enter hooks: join the containers of the finish state --------------------------------


def _enter_nothing(ws: WorkerState, task: WorkerTask, payload: object, fx: Effects) -> None:
    pass


def _enter_waiting(ws: WorkerState, task: WorkerTask, payload: object, fx: Effects) -> None:
    waiting = task.waiting_for_data
    for dep in task.dependencies:
        state = dep.state
        if state == "memory":
            continue
        waiting.add(dep)
        if state == "error" and not dep.assigned:
            # an input that failed to arrive earlier: try the transfer again
            fx.move(dep, "released")
            state = "released"
        if state == "released":
            fx.fetch_or_missing(dep)
    if not waiting:
        fx.move(task, "constrained" if task.resource_restrictions else "ready")


def _enter_ready(ws: WorkerState, task: WorkerTask, payload: object, fx: Effects) -> None:
    ws.ready.push(task.key, task.priority)


def _enter_constrained(ws: WorkerState, task: WorkerTask, payload: object, fx: Effects) -> None:
    need = resource_need(task)
    group = ws.constrained_by_need.get(need)
    if group is None:
        group = ws.constrained_by_need[need] = KeyHeap(ws.heap_order)
    group.push(task.key, ())


def _enter_executing(ws: WorkerState, task: WorkerTask, payload: object, fx: Effects) -> None:
    key = task.key
    run_id = task.run_id
    assert run_id is not None, task
    ahead = len(ws.executing) >= ws.nthreads  # every thread taken: queued behind one
    _take_thread(ws, task)
    available = ws.available_resources
    for name, amount in task.resource_restrictions.items():
        available[name] -= amount
    task.exec_run_id = run_id
    inputs = tuple(dep.key for dep in task.dependencies)
    executor = task.annotations.get("executor")  # dask.annotate(executor="NAME")
    execute = Execute(
        key=key,
        run_id=run_id,
        run_spec=task.run_spec,
        inputs=inputs,
        executor=executor if isinstance(executor, str) else None,
        inline_result=task.inline_result and task.assigned,
        ahead=ahead,
        stimulus_id=fx.stimulus_id,
    )
    fx.emit(execute, key)
    if task.assigned and ws.report_started:
        fx.emit(TaskStartedMsg(key=key, run_id=run_id, stimulus_id=fx.stimulus_id), key)


def _release_inputs(task: WorkerTask, fx: Effects) -> None:
    """A finished task needs its inputs no more: drop that reason to keep them here."""
    for dep in task.dependencies:
        dep.dependents.discard(task)
        if not dep.dependents:
            fx.unwanted.append(dep)
    task.dependencies.clear()


def _enter_memory(ws: WorkerState, task: WorkerTask, payload: object, fx: Effects) -> None:
    key = task.key
    _release_inputs(task, fx)
    nbytes = task.fetch_nbytes()
    if ws.memory_target is not None and ws.replicas:
        make_room(ws, nbytes, task, fx)  # drop copies before the store spills unique data
    ws.nbytes[key] = nbytes
    ws.managed_nbytes += nbytes
    fx.emit(StoreValue(key=key, value=payload, stimulus_id=fx.stimulus_id), key)
    report_memory(ws, task, fx)
    for dependent in task.dependents:
        if dependent.state == "waiting":
            waiting = dependent.waiting_for_data
            waiting.discard(task)
            if not waiting:
                finish = "constrained" if dependent.resource_restrictions else "ready"
                fx.move(dependent, finish)


def report_memory(ws: WorkerState, task: WorkerTask, fx: Effects) -> None:
    """Tell the scheduler we hold ``task``: as the result it asked for, or as a copy."""
    task.reported = True
    if task.assigned:
        assert task.run_id is not None, task
        msg = TaskFinishedMsg(
            key=task.key,
            run_id=task.run_id,
            nbytes=task.fetch_nbytes(),
            type_name=task.type_name,
            start=task.start,
            stop=task.stop,
            value=fx.inline_value,
            stimulus_id=fx.stimulus_id,
        )
        fx.inline_value = None  # one message carries it; the state keeps no reference
        fx.emit(msg, task.key)
    else:  # a copy: the scheduler owns its lifetime from now on (see "Replicas")
        task.replica = True
        ws.replicas[task.key] = None
        fx.add_keys[task.key] = task.fetch_nbytes()


def _enter_error(ws: WorkerState, task: WorkerTask, payload: object, fx: Effects) -> None:
    error = task.error
    assert error is not None, task
    _release_inputs(task, fx)
    if task.assigned:
        assert task.run_id is not None, task
        msg = TaskErredMsg(
            key=task.key,
            run_id=task.run_id,
            exception=error.exception,
            traceback=error.traceback,
            exception_text=error.exception_text,
            traceback_text=error.traceback_text,
            reschedule=error.reschedule,
            stimulus_id=fx.stimulus_id,
        )
        fx.emit(msg, task.key)


def _enter_fetch(ws: WorkerState, task: WorkerTask, payload: object, fx: Effects) -> None:
    key = task.key
    priority = task.priority
    ws.data_needed.push(key, priority)
    pending = ws.pending_data_per_worker
    for worker in sorted(task.who_has):
        heap = pending.get(worker)
        if heap is None:
            heap = pending[worker] = KeyHeap(ws.heap_order)
        heap.push(key, priority)


def _enter_missing(ws: WorkerState, task: WorkerTask, payload: object, fx: Effects) -> None:
    ws.missing.add(task.key)
    if not fx.refresh_suppressed:
        fx.refresh_keys.append(task.key)


def _enter_flight(ws: WorkerState, task: WorkerTask, payload: object, fx: Effects) -> None:
    worker = task.coming_from
    assert worker is not None, task
    keys = ws.in_flight_workers.get(worker)
    if keys is None:
        keys = ws.in_flight_workers[worker] = set()
        ws.in_flight_nbytes[worker] = 0
    keys.add(task.key)
    nbytes = task.fetch_nbytes()
    ws.in_flight_nbytes[worker] += nbytes
    ws.comm_bytes += nbytes
    ws.in_flight_tasks += 1


def _enter_forgotten(ws: WorkerState, task: WorkerTask, payload: object, fx: Effects) -> None:
    del ws.tasks[task.key]
    for dep in task.dependencies:
        dep.dependents.discard(task)
        if not dep.dependents:
            fx.unwanted.append(dep)
    task.dependencies.clear()
    for worker in task.who_has:
        drop_has_what(ws.has_what, worker, task.key)
    task.who_has.clear()


# -- the special moves --------------------------------------------------------------------


def _secede(ws: WorkerState, task: WorkerTask, payload: object, fx: Effects) -> None:
    """executing -> long-running: the thread is handed back, resources stay held."""
    _leave_thread(ws, task.key)
    ws.long_running.add(task.key)
    if task.assigned:
        assert task.run_id is not None, task
        fx.emit(
            LongRunningMsg(key=task.key, run_id=task.run_id, stimulus_id=fx.stimulus_id), task.key
        )


def _rejoin(ws: WorkerState, task: WorkerTask, payload: object, fx: Effects) -> None:
    """long-running -> executing: the task called ``rejoin()`` and a slot is free."""
    key = task.key
    del ws.rejoining[key]
    ws.long_running.discard(key)
    _take_thread(ws, task)
    fx.emit(GrantThread(key=key, stimulus_id=fx.stimulus_id), key)
    if task.assigned:
        assert task.run_id is not None, task
        fx.emit(TaskRejoinedMsg(key=key, run_id=task.run_id, stimulus_id=fx.stimulus_id), key)


def _cancel_from(previous: str) -> Step:
    """X -> cancelled: nobody wants the task, but its thread or transfer goes on."""

    def cancel(ws: WorkerState, task: WorkerTask, payload: object, fx: Effects) -> None:
        task.previous = previous

    return cancel


def _resume(ws: WorkerState, task: WorkerTask, payload: object, fx: Effects) -> None:
    """cancelled -> previous: wanted again; the same thread or transfer carries on."""
    task.previous = None
    if not task.assigned:
        return
    assert task.run_id is not None, task
    msg: TaskStartedMsg | LongRunningMsg
    if task.state == "executing":
        msg = TaskStartedMsg(key=task.key, run_id=task.run_id, stimulus_id=fx.stimulus_id)
        fx.emit(msg, task.key)
    elif task.state == "long-running":
        msg = LongRunningMsg(key=task.key, run_id=task.run_id, stimulus_id=fx.stimulus_id)
        fx.emit(msg, task.key)


def _cancelled_switch(ws: WorkerState, task: WorkerTask, payload: object, fx: Effects) -> None:
    """cancelled -> cancelled: the thread nobody waits for seceded (``payload`` is
    "long-running") or rejoined (``payload`` is "executing"); ``previous`` follows it."""
    key = task.key
    if payload == "long-running":
        assert task.previous == "executing", task
        _leave_thread(ws, key)
        ws.long_running.add(key)
    else:
        assert payload == "executing" and task.previous == "long-running", (task, payload)
        del ws.rejoining[key]
        ws.long_running.discard(key)
        _take_thread(ws, task)
        fx.emit(GrantThread(key=key, stimulus_id=fx.stimulus_id), key)
    task.previous = payload


def _cancelled_done(ws: WorkerState, task: WorkerTask, payload: object, fx: Effects) -> None:
    """cancelled -> released: the thread or transfer reported back; its outcome is dropped."""
    previous = task.previous
    task.previous = None
    if previous == "executing":
        _exit_executing(ws, task, fx)
    elif previous == "long-running":
        _exit_long_running(ws, task, fx)
    else:
        _exit_flight(ws, task, fx)


# -- the table ----------------------------------------------------------------------------

_EXIT: dict[str, Hook] = {
    "released": _exit_nothing,
    "waiting": _exit_waiting,
    "ready": _exit_ready,
    "constrained": _exit_constrained,
    "executing": _exit_executing,
    "long-running": _exit_long_running,
    "fetch": _exit_fetch,
    "missing": _exit_missing,
    "flight": _exit_flight,
    "memory": _exit_memory,
    "error": _exit_error,
}

_ENTER: dict[str, EnterHook] = {
    "released": _enter_nothing,
    "waiting": _enter_waiting,
    "ready": _enter_ready,
    "constrained": _enter_constrained,
    "executing": _enter_executing,
    "memory": _enter_memory,
    "error": _enter_error,
    "fetch": _enter_fetch,
    "missing": _enter_missing,
    "flight": _enter_flight,
    "forgotten": _enter_forgotten,
}

#: moves made of the start state's exit hook and the finish state's enter hook
_PLAIN: tuple[tuple[str, str], ...] = (
    ("released", "waiting"),  # assigned here: fetch the inputs, then run
    ("released", "fetch"),  # an input held by peers
    ("released", "missing"),  # an input nobody is known to hold
    ("released", "forgotten"),  # wanted by nobody
    ("released", "memory"),  # scattered here by a client
    ("waiting", "ready"),
    ("waiting", "constrained"),
    ("waiting", "released"),
    ("waiting", "error"),  # an input arrived unreadable
    ("ready", "executing"),
    ("ready", "released"),
    ("constrained", "executing"),
    ("constrained", "released"),
    ("executing", "memory"),
    ("executing", "error"),
    ("executing", "fetch"),  # not assigned, only an input: computing it failed, fetch it
    ("executing", "missing"),
    ("long-running", "memory"),
    ("long-running", "error"),
    ("long-running", "fetch"),
    ("long-running", "missing"),
    ("fetch", "flight"),
    ("fetch", "missing"),
    ("fetch", "waiting"),  # now assigned here: compute it instead
    ("fetch", "released"),
    ("missing", "fetch"),
    ("missing", "waiting"),
    ("missing", "released"),
    ("flight", "memory"),
    ("flight", "error"),  # arrived unreadable
    ("flight", "fetch"),  # that peer failed; others hold it
    ("flight", "missing"),
    ("flight", "waiting"),  # assigned here meanwhile and the transfer failed: compute it
    ("memory", "released"),
    ("error", "released"),
    ("error", "waiting"),  # assigned again: another attempt
)

_SPECIAL: dict[tuple[str, str], Step] = {
    ("executing", "long-running"): _secede,
    ("long-running", "executing"): _rejoin,
    ("executing", "cancelled"): _cancel_from("executing"),
    ("long-running", "cancelled"): _cancel_from("long-running"),
    ("flight", "cancelled"): _cancel_from("flight"),
    ("cancelled", "executing"): _resume,
    ("cancelled", "long-running"): _resume,
    ("cancelled", "flight"): _resume,
    ("cancelled", "released"): _cancelled_done,
    ("cancelled", "cancelled"): _cancelled_switch,  # its thread seceded or rejoined
}


def _plain_step(start: str, finish: str) -> Step:
    exit_hook = _EXIT[start]
    enter_hook = _ENTER[finish]

    def step(ws: WorkerState, task: WorkerTask, payload: object, fx: Effects) -> None:
        exit_hook(ws, task, fx)
        enter_hook(ws, task, payload, fx)

    step.__name__ = f"{start}->{finish}"
    return step


#: every legal move; anything else is an InvalidTransition
TRANSITIONS: dict[tuple[str, str], Step] = {
    **{pair: _plain_step(*pair) for pair in _PLAIN},
    **_SPECIAL,
}
