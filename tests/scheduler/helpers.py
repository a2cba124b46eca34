"""Small event builders for SchedulerState tests."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from shoal._types import Key
from shoal.scheduler.events import (
    GraphSubmitted,
    NewTask,
    SchedulerEvent,
    TaskErred,
    TaskFinished,
    TaskStarted,
    WorkerJoined,
    WorkerLeft,
)
from shoal.scheduler.instructions import ComputeTask, SchedulerInstruction
from shoal.scheduler.state import SchedulerState

_ids = itertools.count()
T = TypeVar("T", bound=SchedulerInstruction)


def sid(prefix: str = "s") -> str:
    return f"{prefix}-{next(_ids)}"


def new_state(**kwargs: Any) -> SchedulerState:
    kwargs.setdefault("validate", True)
    kwargs.setdefault("rng", random.Random(42))
    # these tests spell out each instruction; speculation has tests of its own
    # (test_state_speculation.py) and runs in the property and simulation tests
    kwargs.setdefault("speculation_depth", 0)
    return SchedulerState(**kwargs)


def join(address: str, nthreads: int = 1, **kwargs: Any) -> WorkerJoined:
    kwargs.setdefault("name", address)
    return WorkerJoined(stimulus_id=sid("join"), address=address, nthreads=nthreads, **kwargs)


def leave(
    address: str,
    expected: bool = False,
    reason: str = "gone",
    running: tuple[tuple[Key, int], ...] | None = None,
) -> WorkerLeft:
    return WorkerLeft(
        stimulus_id=sid("leave"), address=address, reason=reason, expected=expected,
        running=running,
    )  # fmt: skip


def task(key: Key, *deps: Key, **kwargs: Any) -> NewTask:
    return NewTask(key=key, run_spec=("spec", key), dependencies=deps, **kwargs)


def submit(tasks: Sequence[NewTask], wanted: Iterable[Key], client: str = "c1") -> GraphSubmitted:
    return GraphSubmitted(
        stimulus_id=sid("graph"), client=client, tasks=tuple(tasks), wanted=tuple(wanted)
    )


def started(ct: ComputeTask) -> TaskStarted:
    return TaskStarted(stimulus_id=sid("start"), worker=ct.worker, key=ct.key, run_id=ct.run_id)


def finished(
    ct: ComputeTask, nbytes: int = 8, duration: float = 0.0005, run_id: int | None = None
) -> TaskFinished:
    return TaskFinished(
        stimulus_id=sid("done"),
        worker=ct.worker,
        key=ct.key,
        run_id=ct.run_id if run_id is None else run_id,
        nbytes=nbytes,
        type_name="int",
        start=0.0,
        stop=duration,
    )


def erred(ct: ComputeTask, exc: BaseException | None = None) -> TaskErred:
    exc = exc if exc is not None else ZeroDivisionError("boom")
    return TaskErred(
        stimulus_id=sid("err"),
        worker=ct.worker,
        key=ct.key,
        run_id=ct.run_id,
        exception=exc,
        traceback="tb",
        exception_text=repr(exc),
        traceback_text="Traceback ...",
    )


def of_type(instructions: Iterable[SchedulerInstruction], cls: type[T]) -> list[T]:
    return [i for i in instructions if isinstance(i, cls)]


def computes(instructions: Iterable[SchedulerInstruction]) -> list[ComputeTask]:
    return of_type(instructions, ComputeTask)


def one_compute(instructions: Iterable[SchedulerInstruction]) -> ComputeTask:
    cts = computes(instructions)
    assert len(cts) == 1, cts
    return cts[0]


def handle(state: SchedulerState, *events: SchedulerEvent) -> list[SchedulerInstruction]:
    return state.handle_stimulus(*events)
