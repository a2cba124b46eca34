"""Instructions a WorkerState returns: imperatives for the shell to carry out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shoal._types import Address, Key, StimulusId


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerInstruction:
    stimulus_id: StimulusId


@dataclass(frozen=True, slots=True, kw_only=True)
class Execute(WorkerInstruction):
    """Run ``key``: call ``run_spec`` on the values of ``inputs`` (keys in memory here)."""

    key: Key
    run_id: int
    run_spec: object
    inputs: tuple[Key, ...]
    #: the named executor to run on (``dask.annotate(executor=...)``); None: the default
    executor: str | None = None
    #: make a serialized copy of a small result to report with it (a client waits)
    inline_result: bool = False
    #: every thread is taken: queue it behind a busy one, start no thread for it (a quick
    #: task run ahead, ``state_run_ahead``)
    ahead: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class GatherDep(WorkerInstruction):
    """Fetch ``keys`` from ``worker`` in one ``get_data`` call."""

    worker: Address
    keys: frozenset[Key]
    total_nbytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryBusyWorkerLater(WorkerInstruction):
    """Feed ``BusyWorkerRetryDue(worker)`` after a short back-off."""

    worker: Address


@dataclass(frozen=True, slots=True, kw_only=True)
class GrantThread(WorkerInstruction):
    """Let the thread of ``key``, blocked in ``rejoin()``, go on: it holds a slot again."""

    key: Key


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreValue(WorkerInstruction):
    """Put ``value`` into ``worker.data`` under ``key``."""

    key: Key
    value: object


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteValue(WorkerInstruction):
    """Remove ``key`` from ``worker.data``."""

    key: Key


# -- messages to the scheduler (sent as ``shoal.protocol.ops`` structs) -------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SendToScheduler(WorkerInstruction):
    """A message for the scheduler; ``shoal.worker.wire`` makes it the wire op."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStartedMsg(SendToScheduler):
    key: Key
    run_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFinishedMsg(SendToScheduler):
    key: Key
    run_id: int
    nbytes: int
    type_name: str
    start: float
    stop: float
    #: the result's serialized copy (small, asked for), else None
    value: object = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskErredMsg(SendToScheduler):
    key: Key
    run_id: int
    exception: object
    traceback: object
    exception_text: str
    traceback_text: str
    #: the task raised ``Reschedule``
    reschedule: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseWorkerDataMsg(SendToScheduler):
    """This worker dropped its copy of ``key``."""

    key: Key


@dataclass(frozen=True, slots=True, kw_only=True)
class AddKeysMsg(SendToScheduler):
    """This worker now holds copies of ``keys`` (fetched from peers)."""

    keys: tuple[Key, ...]
    nbytes: Mapping[Key, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class LongRunningMsg(SendToScheduler):
    key: Key
    run_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRejoinedMsg(SendToScheduler):
    """The seceded task ``key`` occupies one of this worker's threads again."""

    key: Key
    run_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StealResponseMsg(SendToScheduler):
    """Answer to a steal request: the task's state here (``released`` means it was given up)."""

    key: Key
    state: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class MissingDataMsg(SendToScheduler):
    """``errant_worker`` did not have ``key`` although the scheduler said it did."""

    key: Key
    errant_worker: Address


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestRefreshWhoHasMsg(SendToScheduler):
    """No known holder of ``keys`` is reachable: ask who has them now."""

    keys: tuple[Key, ...]
