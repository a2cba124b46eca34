"""Instructions a WorkerState returns: imperatives for the shell to carry out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

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


# -- messages to the scheduler, sent over the batched stream ---------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SendToScheduler(WorkerInstruction):
    op: ClassVar[str]

    def to_msg(self) -> dict[str, Any]:
        """The wire message (the shell serializes opaque values it contains)."""
        msg: dict[str, Any] = {"op": self.op}
        for name in self.__dataclass_fields__:
            msg[name] = getattr(self, name)
        return msg


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStartedMsg(SendToScheduler):
    op: ClassVar[str] = "task-started"
    key: Key
    run_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFinishedMsg(SendToScheduler):
    op: ClassVar[str] = "task-finished"
    key: Key
    run_id: int
    nbytes: int
    type_name: str
    start: float
    stop: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskErredMsg(SendToScheduler):
    op: ClassVar[str] = "task-erred"
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

    op: ClassVar[str] = "release-worker-data"
    key: Key


@dataclass(frozen=True, slots=True, kw_only=True)
class AddKeysMsg(SendToScheduler):
    """This worker now holds copies of ``keys`` (fetched from peers)."""

    op: ClassVar[str] = "add-keys"
    keys: tuple[Key, ...]
    nbytes: Mapping[Key, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class LongRunningMsg(SendToScheduler):
    op: ClassVar[str] = "long-running"
    key: Key
    run_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRejoinedMsg(SendToScheduler):
    """The seceded task ``key`` occupies one of this worker's threads again."""

    op: ClassVar[str] = "rejoined"
    key: Key
    run_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StealResponseMsg(SendToScheduler):
    """Answer to a steal request: the task's state here (``released`` means it was given up)."""

    op: ClassVar[str] = "steal-response"
    key: Key
    state: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class MissingDataMsg(SendToScheduler):
    """``errant_worker`` did not have ``key`` although the scheduler said it did."""

    op: ClassVar[str] = "missing-data"
    key: Key
    errant_worker: Address


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestRefreshWhoHasMsg(SendToScheduler):
    """No known holder of ``keys`` is reachable: ask who has them now."""

    op: ClassVar[str] = "request-refresh-who-has"
    keys: tuple[Key, ...]
