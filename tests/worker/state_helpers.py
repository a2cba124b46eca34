"""Small event builders and instruction filters for WorkerState tests."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from shoal._types import Address, Key
from shoal.worker.events import (
    ErrorInfo,
    ExecuteFailed,
    ExecuteSucceeded,
    GatherDepBusy,
    GatherDepNetworkFailed,
    GatherDepSucceeded,
    KeysFreed,
    StealRequested,
    TaskAssigned,
    TaskSeceded,
    WhoHasRefreshed,
)
from shoal.worker.instructions import WorkerInstruction
from shoal.worker.state import WorkerState

ME = "tcp://me:1"
A = "tcp://a:1"
B = "tcp://b:1"
C = "tcp://c:1"

_ids = itertools.count()
T = TypeVar("T", bound=WorkerInstruction)


def sid(prefix: str = "s") -> str:
    return f"{prefix}-{next(_ids)}"


def new_state(**kwargs: Any) -> WorkerState:
    kwargs.setdefault("address", ME)
    kwargs.setdefault("nthreads", 1)
    kwargs.setdefault("validate", True)
    return WorkerState(**kwargs)


def assign(
    key: Key,
    run_id: int = 1,
    deps: Mapping[Key, Iterable[Address]] | None = None,
    nbytes: Mapping[Key, int] | None = None,
    priority: tuple[float, ...] = (0,),
    resources: Mapping[str, float] | None = None,
    stimulus_id: str | None = None,
) -> TaskAssigned:
    deps = deps or {}
    return TaskAssigned(
        stimulus_id=stimulus_id or sid("assign"),
        key=key,
        run_id=run_id,
        run_spec=("spec", key),
        priority=priority,
        who_has={dep: tuple(holders) for dep, holders in deps.items()},
        nbytes=dict(nbytes) if nbytes is not None else dict.fromkeys(deps, 10),
        resource_restrictions=dict(resources or {}),
    )


def error_info(text: str = "boom") -> ErrorInfo:
    return ErrorInfo(
        exception=ValueError(text),
        traceback=None,
        exception_text=f"ValueError: {text}",
        traceback_text="Traceback ...",
    )


def done(key: Key, run_id: int = 1, value: object = "value", nbytes: int = 8) -> ExecuteSucceeded:
    return ExecuteSucceeded(
        stimulus_id=sid("done"),
        key=key,
        run_id=run_id,
        value=value,
        nbytes=nbytes,
        type_name=type(value).__name__,
        start=1.0,
        stop=2.0,
    )


def failed(key: Key, run_id: int = 1, error: ErrorInfo | None = None) -> ExecuteFailed:
    return ExecuteFailed(
        stimulus_id=sid("failed"),
        key=key,
        run_id=run_id,
        error=error or error_info(),
        start=1.0,
        stop=2.0,
    )


def gathered(
    worker: Address,
    requested: Iterable[Key],
    data: Mapping[Key, object] | None = None,
    unreadable: Mapping[Key, ErrorInfo] | None = None,
) -> GatherDepSucceeded:
    """By default the peer has every requested key (value: the key's repr)."""
    requested = frozenset(requested)
    if data is None:
        data = {key: f"data-{key}" for key in requested if key not in (unreadable or {})}
    return GatherDepSucceeded(
        stimulus_id=sid("gathered"),
        worker=worker,
        requested=requested,
        data=data,
        nbytes=dict.fromkeys(data, 20),
        unreadable=dict(unreadable or {}),
    )


def busy(worker: Address, requested: Iterable[Key]) -> GatherDepBusy:
    return GatherDepBusy(stimulus_id=sid("busy"), worker=worker, requested=frozenset(requested))


def network_failed(worker: Address, requested: Iterable[Key]) -> GatherDepNetworkFailed:
    return GatherDepNetworkFailed(
        stimulus_id=sid("netfail"), worker=worker, requested=frozenset(requested)
    )


def freed(*keys: Key) -> KeysFreed:
    return KeysFreed(stimulus_id=sid("free"), keys=keys)


def steal(key: Key) -> StealRequested:
    return StealRequested(stimulus_id=sid("steal"), key=key)


def seceded(key: Key) -> TaskSeceded:
    return TaskSeceded(stimulus_id=sid("secede"), key=key)


def refreshed(who_has: Mapping[Key, Iterable[Address]]) -> WhoHasRefreshed:
    return WhoHasRefreshed(
        stimulus_id=sid("refresh"), who_has={k: tuple(v) for k, v in who_has.items()}
    )


def of(instructions: Iterable[WorkerInstruction], cls: type[T]) -> list[T]:
    """The instructions of type ``cls``, in order."""
    return [inst for inst in instructions if isinstance(inst, cls)]


def kinds(instructions: Iterable[WorkerInstruction]) -> list[str]:
    return [type(inst).__name__ for inst in instructions]


def state_of(ws: WorkerState, key: Key) -> str:
    """The task's state, or 'forgotten' if the worker no longer tracks it."""
    task = ws.tasks.get(key)
    return "forgotten" if task is None else task.state
