"""The scheduler's rpcs (its coordination primitives and extras too): one struct each.

See ``shoal.protocol.rpc_ops`` for the rules. Those that workers and nannies send live in
``rpc_scheduler_workers`` (imported here too), so that a worker process does not build
the fifty-odd structs here at every start.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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
class SchedulerAdaptiveTarget(Rpc[int], frozen=True, kw_only=True):
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
class SchedulerBroadcast(Rpc[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "broadcast"
    role: ClassVar[str] = SCHEDULER
    op: str
    kwargs: Mapping[str, Any] | None = None
    workers: Sequence[Address] | None = None


@_register
class SchedulerEventClear(ByName[None], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "event_clear"
    role: ClassVar[str] = SCHEDULER


@_register
class SchedulerEventSet(ByName[None], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "event_set"
    role: ClassVar[str] = SCHEDULER


@_register
class SchedulerEventWait(Rpc[bool], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "event_wait"
    role: ClassVar[str] = SCHEDULER
    name: str
    timeout: float | None = None


@_register
class SchedulerFireAndForget(Claiming[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "fire_and_forget"
    role: ClassVar[str] = SCHEDULER
    keys: Sequence[Key]


@_register
class SchedulerForwardOutput(Rpc[Any], frozen=True, kw_only=True):
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
class SchedulerGetDataset(Claiming[list[Any] | None], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "get_dataset"
    role: ClassVar[str] = SCHEDULER
    name: str
    requester: str


@_register
class SchedulerGetEvents(Rpc[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "get_events"
    role: ClassVar[str] = SCHEDULER
    topic: str | None = None


@_register
class SchedulerGetLogs(Rpc[Any], frozen=True, kw_only=True):
    """This scheduler's latest log records."""

    rpc: ClassVar[str] = "get_logs"
    role: ClassVar[str] = SCHEDULER
    n: int | None = None


@_register
class SchedulerGetMetadata(Rpc[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "get_metadata"
    role: ClassVar[str] = SCHEDULER
    keys: Sequence[str]
    default: Any = None


@_register
class SchedulerGetTaskStream(Rpc[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "get_task_stream"
    role: ClassVar[str] = SCHEDULER
    start: float | None = None
    stop: float | None = None
    count: int = 0


@_register
class SchedulerGetWorkerPluginNames(Rpc[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "get_worker_plugin_names"
    role: ClassVar[str] = SCHEDULER


@_register
class SchedulerHasWhat(Rpc[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "has_what"
    role: ClassVar[str] = SCHEDULER
    workers: Sequence[Address] | None = None


@_register
class SchedulerIdentity(Rpc[dict[str, Any]], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "identity"
    role: ClassVar[str] = SCHEDULER


@_register
class SchedulerListDatasets(Rpc[Sequence[str]], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "list_datasets"
    role: ClassVar[str] = SCHEDULER


@_register
class SchedulerLogEvent(Rpc[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "log_event"
    role: ClassVar[str] = SCHEDULER
    topic: str | Sequence[str]
    msg: Any


@_register
class SchedulerNbytes(Rpc[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "nbytes"
    role: ClassVar[str] = SCHEDULER
    keys: Sequence[Key] | None = None
    summary: bool = True


@_register
class SchedulerNthreads(Rpc[dict[Address, int]], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "nthreads"
    role: ClassVar[str] = SCHEDULER


@_register
class SchedulerProcessing(Rpc[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "processing"
    role: ClassVar[str] = SCHEDULER
    workers: Sequence[Address] | None = None


@_register
class SchedulerPublishDataset(Claiming[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "publish_dataset"
    role: ClassVar[str] = SCHEDULER
    datasets: Mapping[str, Sequence[Any]]
    override: bool = False


@_register
class SchedulerQueueCreate(Rpc[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "queue_create"
    role: ClassVar[str] = SCHEDULER
    name: str
    maxsize: int = 0


@_register
class SchedulerQueueGet(Claiming[list[Any] | None], frozen=True, kw_only=True):
    """``[[value, keys], ...]``, or None if nothing came within the timeout."""

    rpc: ClassVar[str] = "queue_get"
    role: ClassVar[str] = SCHEDULER
    name: str
    requester: str
    timeout: float | None = None
    batch: int | None = None


@_register
class SchedulerQueuePut(Claiming[bool], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "queue_put"
    role: ClassVar[str] = SCHEDULER
    name: str
    value: Any
    keys: Sequence[Key]
    timeout: float | None = None


@_register
class SchedulerQueueQsize(ByName[int], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "queue_qsize"
    role: ClassVar[str] = SCHEDULER


@_register
class SchedulerRegisterClient(Rpc[Any], frozen=True, kw_only=True):
    """Opens the client stream: -> ``{"status": "OK", "id", ...}``, then a BatchedStream."""

    rpc: ClassVar[str] = "register-client"
    role: ClassVar[str] = SCHEDULER
    client: str


@_register
class SchedulerRegisterNannyPlugin(AddPlugin[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "register_nanny_plugin"
    role: ClassVar[str] = SCHEDULER


@_register
class SchedulerRegisterSchedulerPlugin(AddPlugin[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "register_scheduler_plugin"
    role: ClassVar[str] = SCHEDULER


@_register
class SchedulerRegisterWorkerPlugin(AddPlugin[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "register_worker_plugin"
    role: ClassVar[str] = SCHEDULER


@_register
class SchedulerReplicate(Rpc[Any], frozen=True, kw_only=True):
    """Copy each key to ``n`` of ``workers`` (all running ones by default)."""

    rpc: ClassVar[str] = "replicate"
    role: ClassVar[str] = SCHEDULER
    keys: Sequence[Key]
    n: int | None = None
    workers: Sequence[Address] | None = None
    timeout: float = 60.0


@_register
class SchedulerRestart(Rpc[dict[str, int]], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "restart"
    role: ClassVar[str] = SCHEDULER


@_register
class SchedulerRunOnScheduler(RunFunction[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "run_on_scheduler"
    role: ClassVar[str] = SCHEDULER


@_register
class SchedulerSchedulerInfo(Rpc[dict[str, Any]], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "scheduler_info"
    role: ClassVar[str] = SCHEDULER


@_register
class SchedulerSemaphoreAcquire(Rpc[bool], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "semaphore_acquire"
    role: ClassVar[str] = SCHEDULER
    name: str
    lease_id: str
    owner: str
    max_leases: int = 1
    lease_timeout: float = 30.0
    timeout: float | None = None


@_register
class SchedulerSemaphoreCount(ByName[int], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "semaphore_count"
    role: ClassVar[str] = SCHEDULER


@_register
class SchedulerSemaphoreRefresh(Rpc[Any], frozen=True, kw_only=True):
    """Extend leases."""

    rpc: ClassVar[str] = "semaphore_refresh"
    role: ClassVar[str] = SCHEDULER
    leases: Sequence[Sequence[str]]


@_register
class SchedulerSemaphoreRelease(Rpc[bool], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "semaphore_release"
    role: ClassVar[str] = SCHEDULER
    name: str
    lease_id: str


@_register
class SchedulerSetMetadata(Rpc[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "set_metadata"
    role: ClassVar[str] = SCHEDULER
    keys: Sequence[str]
    value: Any


@_register
class SchedulerStory(Rpc[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "story"
    role: ClassVar[str] = SCHEDULER
    keys: Sequence[Key]


@_register
class SchedulerSubscribeTopic(Rpc[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "subscribe_topic"
    role: ClassVar[str] = SCHEDULER
    topic: str
    client: str


@_register
class SchedulerUnpublishDataset(ByName[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "unpublish_dataset"
    role: ClassVar[str] = SCHEDULER


@_register
class SchedulerUnregisterSchedulerPlugin(ByName[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "unregister_scheduler_plugin"
    role: ClassVar[str] = SCHEDULER


@_register
class SchedulerUnregisterWorkerPlugin(ByName[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "unregister_worker_plugin"
    role: ClassVar[str] = SCHEDULER


@_register
class SchedulerUnregisterNannyPlugin(ByName[Any], frozen=True, kw_only=True):
    """Removes a nanny plugin from every nanny (its ``teardown`` runs there)."""

    rpc: ClassVar[str] = "unregister_nanny_plugin"
    role: ClassVar[str] = SCHEDULER


@_register
class SchedulerWaitForWorkers(Rpc[int], frozen=True, kw_only=True):
    """The worker count once at least ``n`` are registered; ``TimeoutError`` after
    ``timeout`` s. Answered when the state changes, not by polling."""

    rpc: ClassVar[str] = "wait_for_workers"
    role: ClassVar[str] = SCHEDULER
    n: int = 1
    timeout: float = 10.0


@_register
class SchedulerUnsubscribeTopic(Rpc[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "unsubscribe_topic"
    role: ClassVar[str] = SCHEDULER
    topic: str
    client: str


@_register
class SchedulerUpdateData(Rpc[Any], frozen=True, kw_only=True):
    """After a scatter: these keys are on these workers. -> "OK"."""

    rpc: ClassVar[str] = "update_data"
    role: ClassVar[str] = SCHEDULER
    client: str
    who_has: Any
    nbytes: Any
    type_names: Any = None


@_register
class SchedulerVariableDelete(ByName[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "variable_delete"
    role: ClassVar[str] = SCHEDULER


@_register
class SchedulerVariableGet(Claiming[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "variable_get"
    role: ClassVar[str] = SCHEDULER
    name: str
    requester: str
    timeout: float | None = None


@_register
class SchedulerVariableSet(Claiming[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "variable_set"
    role: ClassVar[str] = SCHEDULER
    name: str
    value: Any
    keys: Sequence[Key]


@_register
class SchedulerVersions(Rpc[dict[str, Any]], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "versions"
    role: ClassVar[str] = SCHEDULER


@_register
class SchedulerWhoHas(Rpc[dict[Key, tuple[Address, ...]]], frozen=True, kw_only=True):
    """-> ``{key: (worker address, ...)}`` (all keys if None; msgpack gives tuples)."""

    rpc: ClassVar[str] = "who_has"
    role: ClassVar[str] = SCHEDULER
    keys: Sequence[Key] | None = None


@_register
class SchedulerWorkersToClose(Rpc[list[Address]], frozen=True, kw_only=True):
    """The ``n`` running workers whose retirement copies the least unique data."""

    rpc: ClassVar[str] = "workers_to_close"
    role: ClassVar[str] = SCHEDULER
    n: int = 0
    idle_only: bool = False
