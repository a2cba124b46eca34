"""Instructions a WorkerState returns: imperatives for the shell to carry out."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from shoal._types import Address, Key, StimulusId


class WorkerInstruction(msgspec.Struct, frozen=True, kw_only=True):
    stimulus_id: StimulusId


class Execute(WorkerInstruction, frozen=True, kw_only=True):
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


class GatherDep(WorkerInstruction, frozen=True, kw_only=True):
    """Fetch ``keys`` from ``worker`` in one ``get_data`` call."""

    worker: Address
    keys: frozenset[Key]
    total_nbytes: int


class RetryBusyWorkerLater(WorkerInstruction, frozen=True, kw_only=True):
    """Feed ``BusyWorkerRetryDue(worker)`` after a short back-off."""

    worker: Address


class GrantThread(WorkerInstruction, frozen=True, kw_only=True):
    """Let the thread of ``key``, blocked in ``rejoin()``, go on: it holds a slot again."""

    key: Key


class StoreValue(WorkerInstruction, frozen=True, kw_only=True):
    """Put ``value`` into ``worker.data`` under ``key``."""

    key: Key
    value: object


class DeleteValue(WorkerInstruction, frozen=True, kw_only=True):
    """Remove ``key`` from ``worker.data``."""

    key: Key


# -- messages to the scheduler (sent as ``shoal.protocol.ops`` structs) -------------------------


class SendToScheduler(WorkerInstruction, frozen=True, kw_only=True):
    """A message for the scheduler; ``shoal.worker.wire`` makes it the wire op."""


class TaskStartedMsg(SendToScheduler, frozen=True, kw_only=True):
    key: Key
    run_id: int


class TaskFinishedMsg(SendToScheduler, frozen=True, kw_only=True):
    key: Key
    run_id: int
    nbytes: int
    type_name: str
    start: float
    stop: float
    #: the result's serialized copy (small, asked for), else None
    value: object = None


class TaskErredMsg(SendToScheduler, frozen=True, kw_only=True):
    key: Key
    run_id: int
    exception: object
    traceback: object
    exception_text: str
    traceback_text: str
    #: the task raised ``Reschedule``
    reschedule: bool = False


class ReleaseWorkerDataMsg(SendToScheduler, frozen=True, kw_only=True):
    """This worker dropped its copy of ``key``."""

    key: Key


class AddKeysMsg(SendToScheduler, frozen=True, kw_only=True):
    """This worker now holds copies of ``keys`` (fetched from peers)."""

    keys: tuple[Key, ...]
    nbytes: Mapping[Key, int]


class LongRunningMsg(SendToScheduler, frozen=True, kw_only=True):
    key: Key
    run_id: int


class TaskRejoinedMsg(SendToScheduler, frozen=True, kw_only=True):
    """The seceded task ``key`` occupies one of this worker's threads again."""

    key: Key
    run_id: int


class StealResponseMsg(SendToScheduler, frozen=True, kw_only=True):
    """Answer to a steal request: the task's state here (``released`` means it was given up)."""

    key: Key
    state: str | None


class MissingDataMsg(SendToScheduler, frozen=True, kw_only=True):
    """``errant_worker`` did not have ``key`` although the scheduler said it did."""

    key: Key
    errant_worker: Address


class RequestRefreshWhoHasMsg(SendToScheduler, frozen=True, kw_only=True):
    """No known holder of ``keys`` is reachable: ask who has them now."""

    keys: tuple[Key, ...]
