"""The scheduler's rpcs (its coordination primitives and extras too): one struct each.

See ``shoal.protocol.rpc_ops`` for the rules. Those that workers and nannies send live in
``rpc_scheduler_workers`` (imported here too), so that a worker process does not build
the fifty-odd structs here at every start.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from shoal._types import Address, Key
from shoal.protocol.rpc_base import (
    SCHEDULER,
    AddPlugin,
    ByName,
    Claiming,
    Rpc,
    RunFunction,
    _register,
)
from shoal.protocol.rpc_scheduler_workers import SchedulerRegisterWorker as SchedulerRegisterWorker
from shoal.protocol.rpc_scheduler_workers import SchedulerRetireWorkers as SchedulerRetireWorkers
from shoal.protocol.rpc_scheduler_workers import SchedulerWorkerDied as SchedulerWorkerDied

# -- scheduler -----------------------------------------------------------------------------


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerAdaptiveTarget(Rpc[int]):
    """Workers the current work needs so it takes about ``target_duration`` s (as in
    ``scheduler.adaptive.adaptive_target``)."""

    rpc: ClassVar[str] = "adaptive_target"
    role: ClassVar[str] = SCHEDULER
    target_duration: float
    minimum: int = 0
    maximum: float = math.inf
    #: what a new worker brings (None: the current average)
    threads_per_worker: int | None = None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerBroadcast(Rpc[Any]):
    rpc: ClassVar[str] = "broadcast"
    role: ClassVar[str] = SCHEDULER
    op: str
    kwargs: Mapping[str, Any] | None = None
    workers: Sequence[Address] | None = None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerEventClear(ByName[None]):
    rpc: ClassVar[str] = "event_clear"
    role: ClassVar[str] = SCHEDULER


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerEventSet(ByName[None]):
    rpc: ClassVar[str] = "event_set"
    role: ClassVar[str] = SCHEDULER


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerEventWait(Rpc[bool]):
    rpc: ClassVar[str] = "event_wait"
    role: ClassVar[str] = SCHEDULER
    name: str
    timeout: float | None = None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerFireAndForget(Claiming[Any]):
    rpc: ClassVar[str] = "fire_and_forget"
    role: ClassVar[str] = SCHEDULER
    keys: Sequence[Key]


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerForwardOutput(Rpc[Any]):
    """Send a task's printed text or warning to every client, unread."""

    rpc: ClassVar[str] = "forward_output"
    role: ClassVar[str] = SCHEDULER
    #: "print" or "warn"
    kind: str
    text: str
    #: print()'s ``file``: "stdout" or "stderr"
    stream: str = ""
    #: a warning's category name
    category: str = ""


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerGetDataset(Claiming[list[Any] | None]):
    rpc: ClassVar[str] = "get_dataset"
    role: ClassVar[str] = SCHEDULER
    name: str
    requester: str


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerGetEvents(Rpc[Any]):
    rpc: ClassVar[str] = "get_events"
    role: ClassVar[str] = SCHEDULER
    topic: str | None = None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerGetLogs(Rpc[Any]):
    """This scheduler's latest log records."""

    rpc: ClassVar[str] = "get_logs"
    role: ClassVar[str] = SCHEDULER
    n: int | None = None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerGetMetadata(Rpc[Any]):
    rpc: ClassVar[str] = "get_metadata"
    role: ClassVar[str] = SCHEDULER
    keys: Sequence[str]
    default: Any = None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerGetTaskStream(Rpc[Any]):
    rpc: ClassVar[str] = "get_task_stream"
    role: ClassVar[str] = SCHEDULER
    start: float | None = None
    stop: float | None = None
    count: int = 0


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerGetWorkerPluginNames(Rpc[Any]):
    rpc: ClassVar[str] = "get_worker_plugin_names"
    role: ClassVar[str] = SCHEDULER


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerHasWhat(Rpc[Any]):
    rpc: ClassVar[str] = "has_what"
    role: ClassVar[str] = SCHEDULER
    workers: Sequence[Address] | None = None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerIdentity(Rpc[dict[str, Any]]):
    rpc: ClassVar[str] = "identity"
    role: ClassVar[str] = SCHEDULER


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerListDatasets(Rpc[Sequence[str]]):
    rpc: ClassVar[str] = "list_datasets"
    role: ClassVar[str] = SCHEDULER


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerLogEvent(Rpc[Any]):
    rpc: ClassVar[str] = "log_event"
    role: ClassVar[str] = SCHEDULER
    topic: str | Sequence[str]
    msg: Any


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerNbytes(Rpc[Any]):
    rpc: ClassVar[str] = "nbytes"
    role: ClassVar[str] = SCHEDULER
    keys: Sequence[Key] | None = None
    summary: bool = True


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerNthreads(Rpc[dict[Address, int]]):
    rpc: ClassVar[str] = "nthreads"
    role: ClassVar[str] = SCHEDULER


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerProcessing(Rpc[Any]):
    rpc: ClassVar[str] = "processing"
    role: ClassVar[str] = SCHEDULER
    workers: Sequence[Address] | None = None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerPublishDataset(Claiming[Any]):
    rpc: ClassVar[str] = "publish_dataset"
    role: ClassVar[str] = SCHEDULER
    datasets: Mapping[str, Sequence[Any]]
    override: bool = False


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerQueueCreate(Rpc[Any]):
    rpc: ClassVar[str] = "queue_create"
    role: ClassVar[str] = SCHEDULER
    name: str
    maxsize: int = 0


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerQueueGet(Claiming[list[Any] | None]):
    """``[[value, keys], ...]``, or None if nothing came within the timeout."""

    rpc: ClassVar[str] = "queue_get"
    role: ClassVar[str] = SCHEDULER
    name: str
    requester: str
    timeout: float | None = None
    batch: int | None = None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerQueuePut(Claiming[bool]):
    rpc: ClassVar[str] = "queue_put"
    role: ClassVar[str] = SCHEDULER
    name: str
    value: Any
    keys: Sequence[Key]
    timeout: float | None = None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerQueueQsize(ByName[int]):
    rpc: ClassVar[str] = "queue_qsize"
    role: ClassVar[str] = SCHEDULER


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerRegisterClient(Rpc[Any]):
    """Opens the client stream: -> ``{"status": "OK", "id", ...}``, then a BatchedStream."""

    rpc: ClassVar[str] = "register-client"
    role: ClassVar[str] = SCHEDULER
    client: str


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerRegisterNannyPlugin(AddPlugin[Any]):
    rpc: ClassVar[str] = "register_nanny_plugin"
    role: ClassVar[str] = SCHEDULER


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerRegisterSchedulerPlugin(AddPlugin[Any]):
    rpc: ClassVar[str] = "register_scheduler_plugin"
    role: ClassVar[str] = SCHEDULER


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerRegisterWorkerPlugin(AddPlugin[Any]):
    rpc: ClassVar[str] = "register_worker_plugin"
    role: ClassVar[str] = SCHEDULER


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerReplicate(Rpc[Any]):
    """Copy each key to ``n`` of ``workers`` (all running ones by default)."""

    rpc: ClassVar[str] = "replicate"
    role: ClassVar[str] = SCHEDULER
    keys: Sequence[Key]
    n: int | None = None
    workers: Sequence[Address] | None = None
    timeout: float = 60.0


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerRestart(Rpc[dict[str, int]]):
    rpc: ClassVar[str] = "restart"
    role: ClassVar[str] = SCHEDULER


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerRunOnScheduler(RunFunction[Any]):
    rpc: ClassVar[str] = "run_on_scheduler"
    role: ClassVar[str] = SCHEDULER


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerSchedulerInfo(Rpc[dict[str, Any]]):
    rpc: ClassVar[str] = "scheduler_info"
    role: ClassVar[str] = SCHEDULER


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerSemaphoreAcquire(Rpc[bool]):
    rpc: ClassVar[str] = "semaphore_acquire"
    role: ClassVar[str] = SCHEDULER
    name: str
    lease_id: str
    owner: str
    max_leases: int = 1
    lease_timeout: float = 30.0
    timeout: float | None = None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerSemaphoreCount(ByName[int]):
    rpc: ClassVar[str] = "semaphore_count"
    role: ClassVar[str] = SCHEDULER


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerSemaphoreRefresh(Rpc[Any]):
    """Extend leases."""

    rpc: ClassVar[str] = "semaphore_refresh"
    role: ClassVar[str] = SCHEDULER
    leases: Sequence[Sequence[str]]


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerSemaphoreRelease(Rpc[bool]):
    rpc: ClassVar[str] = "semaphore_release"
    role: ClassVar[str] = SCHEDULER
    name: str
    lease_id: str


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerSetMetadata(Rpc[Any]):
    rpc: ClassVar[str] = "set_metadata"
    role: ClassVar[str] = SCHEDULER
    keys: Sequence[str]
    value: Any


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerStory(Rpc[Any]):
    rpc: ClassVar[str] = "story"
    role: ClassVar[str] = SCHEDULER
    keys: Sequence[Key]


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerSubscribeTopic(Rpc[Any]):
    rpc: ClassVar[str] = "subscribe_topic"
    role: ClassVar[str] = SCHEDULER
    topic: str
    client: str


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerUnpublishDataset(ByName[Any]):
    rpc: ClassVar[str] = "unpublish_dataset"
    role: ClassVar[str] = SCHEDULER


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerUnregisterSchedulerPlugin(ByName[Any]):
    rpc: ClassVar[str] = "unregister_scheduler_plugin"
    role: ClassVar[str] = SCHEDULER


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerUnregisterWorkerPlugin(ByName[Any]):
    rpc: ClassVar[str] = "unregister_worker_plugin"
    role: ClassVar[str] = SCHEDULER


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerUnregisterNannyPlugin(ByName[Any]):
    """Removes a nanny plugin from every nanny (its ``teardown`` runs there)."""

    rpc: ClassVar[str] = "unregister_nanny_plugin"
    role: ClassVar[str] = SCHEDULER


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerWaitForWorkers(Rpc[int]):
    """The worker count once at least ``n`` are registered; ``TimeoutError`` after
    ``timeout`` s. Answered when the state changes, not by polling."""

    rpc: ClassVar[str] = "wait_for_workers"
    role: ClassVar[str] = SCHEDULER
    n: int = 1
    timeout: float = 10.0


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerUnsubscribeTopic(Rpc[Any]):
    rpc: ClassVar[str] = "unsubscribe_topic"
    role: ClassVar[str] = SCHEDULER
    topic: str
    client: str


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerUpdateData(Rpc[Any]):
    """After a scatter: these keys are on these workers. -> "OK"."""

    rpc: ClassVar[str] = "update_data"
    role: ClassVar[str] = SCHEDULER
    client: str
    who_has: Any
    nbytes: Any
    type_names: Any = None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerVariableDelete(ByName[Any]):
    rpc: ClassVar[str] = "variable_delete"
    role: ClassVar[str] = SCHEDULER


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerVariableGet(Claiming[Any]):
    rpc: ClassVar[str] = "variable_get"
    role: ClassVar[str] = SCHEDULER
    name: str
    requester: str
    timeout: float | None = None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerVariableSet(Claiming[Any]):
    rpc: ClassVar[str] = "variable_set"
    role: ClassVar[str] = SCHEDULER
    name: str
    value: Any
    keys: Sequence[Key]


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerVersions(Rpc[dict[str, Any]]):
    rpc: ClassVar[str] = "versions"
    role: ClassVar[str] = SCHEDULER


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerWhoHas(Rpc[dict[Key, tuple[Address, ...]]]):
    """-> ``{key: (worker address, ...)}`` (all keys if None; msgpack gives tuples)."""

    rpc: ClassVar[str] = "who_has"
    role: ClassVar[str] = SCHEDULER
    keys: Sequence[Key] | None = None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerWorkersToClose(Rpc[list[Address]]):
    """The ``n`` running workers whose retirement copies the least unique data."""

    rpc: ClassVar[str] = "workers_to_close"
    role: ClassVar[str] = SCHEDULER
    n: int = 0
    idle_only: bool = False
