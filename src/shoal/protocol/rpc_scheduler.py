"""The scheduler's rpcs (its coordination primitives and extras too): one struct each.

See ``shoal.protocol.rpc_ops`` for the rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from shoal._types import Address, Key
from shoal.protocol.rpc_base import SCHEDULER, Rpc, _register
from shoal.protocol.serialize import Serialized

# -- scheduler -----------------------------------------------------------------------------


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerAdaptiveTarget(Rpc):
    """Workers the current work needs (options as in ``scheduler.adaptive``)."""

    rpc: ClassVar[str] = "adaptive_target"
    role: ClassVar[str] = SCHEDULER
    open: ClassVar[bool] = True


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerBroadcast(Rpc):
    rpc: ClassVar[str] = "broadcast"
    role: ClassVar[str] = SCHEDULER
    op: str
    kwargs: Mapping[str, Any] | None = None
    workers: Sequence[Address] | None = None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerEventClear(Rpc):
    rpc: ClassVar[str] = "event_clear"
    role: ClassVar[str] = SCHEDULER
    name: str


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerEventSet(Rpc):
    rpc: ClassVar[str] = "event_set"
    role: ClassVar[str] = SCHEDULER
    name: str


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerEventWait(Rpc):
    rpc: ClassVar[str] = "event_wait"
    role: ClassVar[str] = SCHEDULER
    name: str
    timeout: float | None = None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerFireAndForget(Rpc):
    rpc: ClassVar[str] = "fire_and_forget"
    role: ClassVar[str] = SCHEDULER
    keys: Sequence[Key]
    #: the marker sent on the stream just before (``ops.Claim``): applied after it
    claim: str | None = None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerForwardOutput(Rpc):
    """Send a task's printed text or warning to every client, unread."""

    rpc: ClassVar[str] = "forward_output"
    role: ClassVar[str] = SCHEDULER
    open: ClassVar[bool] = True
    kind: str
    text: str


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerGetDataset(Rpc):
    rpc: ClassVar[str] = "get_dataset"
    role: ClassVar[str] = SCHEDULER
    name: str
    requester: str
    #: the marker sent on the stream just before (``ops.Claim``): applied after it
    claim: str | None = None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerGetEvents(Rpc):
    rpc: ClassVar[str] = "get_events"
    role: ClassVar[str] = SCHEDULER
    topic: str | None = None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerGetLogs(Rpc):
    """This scheduler's latest log records."""

    rpc: ClassVar[str] = "get_logs"
    role: ClassVar[str] = SCHEDULER
    n: int | None = None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerGetMetadata(Rpc):
    rpc: ClassVar[str] = "get_metadata"
    role: ClassVar[str] = SCHEDULER
    keys: Sequence[str]
    default: Any = None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerGetTaskStream(Rpc):
    rpc: ClassVar[str] = "get_task_stream"
    role: ClassVar[str] = SCHEDULER
    start: float | None = None
    stop: float | None = None
    count: int = 0


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerGetWorkerPluginNames(Rpc):
    rpc: ClassVar[str] = "get_worker_plugin_names"
    role: ClassVar[str] = SCHEDULER


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerHasWhat(Rpc):
    rpc: ClassVar[str] = "has_what"
    role: ClassVar[str] = SCHEDULER
    workers: Sequence[Address] | None = None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerIdentity(Rpc):
    rpc: ClassVar[str] = "identity"
    role: ClassVar[str] = SCHEDULER


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerListDatasets(Rpc):
    rpc: ClassVar[str] = "list_datasets"
    role: ClassVar[str] = SCHEDULER


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerLogEvent(Rpc):
    rpc: ClassVar[str] = "log_event"
    role: ClassVar[str] = SCHEDULER
    topic: str | Sequence[str]
    msg: Any


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerNbytes(Rpc):
    rpc: ClassVar[str] = "nbytes"
    role: ClassVar[str] = SCHEDULER
    keys: Sequence[Key] | None = None
    summary: bool = True


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerNthreads(Rpc):
    rpc: ClassVar[str] = "nthreads"
    role: ClassVar[str] = SCHEDULER


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerProcessing(Rpc):
    rpc: ClassVar[str] = "processing"
    role: ClassVar[str] = SCHEDULER
    workers: Sequence[Address] | None = None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerPublishDataset(Rpc):
    rpc: ClassVar[str] = "publish_dataset"
    role: ClassVar[str] = SCHEDULER
    datasets: Mapping[str, Sequence[Any]]
    override: bool = False
    #: the marker sent on the stream just before (``ops.Claim``): applied after it
    claim: str | None = None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerQueueCreate(Rpc):
    rpc: ClassVar[str] = "queue_create"
    role: ClassVar[str] = SCHEDULER
    name: str
    maxsize: int = 0


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerQueueGet(Rpc):
    """``[[value, keys], ...]``, or None if nothing came within the timeout."""

    rpc: ClassVar[str] = "queue_get"
    role: ClassVar[str] = SCHEDULER
    name: str
    requester: str
    timeout: float | None = None
    batch: int | None = None
    #: the marker sent on the stream just before (``ops.Claim``): applied after it
    claim: str | None = None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerQueuePut(Rpc):
    rpc: ClassVar[str] = "queue_put"
    role: ClassVar[str] = SCHEDULER
    name: str
    value: Any
    keys: Sequence[Key]
    timeout: float | None = None
    #: the marker sent on the stream just before (``ops.Claim``): applied after it
    claim: str | None = None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerQueueQsize(Rpc):
    rpc: ClassVar[str] = "queue_qsize"
    role: ClassVar[str] = SCHEDULER
    name: str


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerRegisterClient(Rpc):
    """Opens the client stream: -> ``{"status": "OK", "id", ...}``, then a BatchedStream."""

    rpc: ClassVar[str] = "register-client"
    role: ClassVar[str] = SCHEDULER
    open: ClassVar[bool] = True
    client: str


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerRegisterWorker(Rpc):
    """Opens the worker stream (fields: the worker description), as register-client."""

    rpc: ClassVar[str] = "register-worker"
    role: ClassVar[str] = SCHEDULER
    open: ClassVar[bool] = True


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerRegisterNannyPlugin(Rpc):
    rpc: ClassVar[str] = "register_nanny_plugin"
    role: ClassVar[str] = SCHEDULER
    plugin: Serialized
    name: str


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerRegisterSchedulerPlugin(Rpc):
    rpc: ClassVar[str] = "register_scheduler_plugin"
    role: ClassVar[str] = SCHEDULER
    plugin: Serialized
    name: str


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerRegisterWorkerPlugin(Rpc):
    rpc: ClassVar[str] = "register_worker_plugin"
    role: ClassVar[str] = SCHEDULER
    plugin: Serialized
    name: str


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerReplicate(Rpc):
    """Copy each key to ``n`` of ``workers`` (all running ones by default)."""

    rpc: ClassVar[str] = "replicate"
    role: ClassVar[str] = SCHEDULER
    keys: Sequence[Key]
    n: int | None = None
    workers: Sequence[Address] | None = None
    timeout: float = 60.0


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerRestart(Rpc):
    rpc: ClassVar[str] = "restart"
    role: ClassVar[str] = SCHEDULER


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerRetireWorkers(Rpc):
    """Retire ``workers`` (addresses)."""

    rpc: ClassVar[str] = "retire_workers"
    role: ClassVar[str] = SCHEDULER
    workers: Sequence[Address] = ()
    timeout: float = 120.0


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerRunOnScheduler(Rpc):
    rpc: ClassVar[str] = "run_on_scheduler"
    role: ClassVar[str] = SCHEDULER
    function: Serialized
    args: Serialized
    kwargs: Serialized


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerSchedulerInfo(Rpc):
    rpc: ClassVar[str] = "scheduler_info"
    role: ClassVar[str] = SCHEDULER


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerSemaphoreAcquire(Rpc):
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
class SchedulerSemaphoreCount(Rpc):
    rpc: ClassVar[str] = "semaphore_count"
    role: ClassVar[str] = SCHEDULER
    name: str


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerSemaphoreRefresh(Rpc):
    """Extend leases."""

    rpc: ClassVar[str] = "semaphore_refresh"
    role: ClassVar[str] = SCHEDULER
    leases: Sequence[Sequence[str]]


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerSemaphoreRelease(Rpc):
    rpc: ClassVar[str] = "semaphore_release"
    role: ClassVar[str] = SCHEDULER
    name: str
    lease_id: str


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerSetMetadata(Rpc):
    rpc: ClassVar[str] = "set_metadata"
    role: ClassVar[str] = SCHEDULER
    keys: Sequence[str]
    value: Any


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerStory(Rpc):
    rpc: ClassVar[str] = "story"
    role: ClassVar[str] = SCHEDULER
    keys: Sequence[Key]


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerSubscribeTopic(Rpc):
    rpc: ClassVar[str] = "subscribe_topic"
    role: ClassVar[str] = SCHEDULER
    topic: str
    client: str


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerUnpublishDataset(Rpc):
    rpc: ClassVar[str] = "unpublish_dataset"
    role: ClassVar[str] = SCHEDULER
    name: str


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerUnregisterSchedulerPlugin(Rpc):
    rpc: ClassVar[str] = "unregister_scheduler_plugin"
    role: ClassVar[str] = SCHEDULER
    name: str


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerUnregisterWorkerPlugin(Rpc):
    rpc: ClassVar[str] = "unregister_worker_plugin"
    role: ClassVar[str] = SCHEDULER
    name: str


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerUnregisterNannyPlugin(Rpc):
    """Removes a nanny plugin from every nanny (its ``teardown`` runs there)."""

    rpc: ClassVar[str] = "unregister_nanny_plugin"
    role: ClassVar[str] = SCHEDULER
    name: str


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerWaitForWorkers(Rpc):
    """The worker count once at least ``n`` are registered; ``TimeoutError`` after
    ``timeout`` s. Answered when the state changes, not by polling."""

    rpc: ClassVar[str] = "wait_for_workers"
    role: ClassVar[str] = SCHEDULER
    n: int = 1
    timeout: float = 10.0


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerUnsubscribeTopic(Rpc):
    rpc: ClassVar[str] = "unsubscribe_topic"
    role: ClassVar[str] = SCHEDULER
    topic: str
    client: str


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerUpdateData(Rpc):
    """After a scatter: these keys are on these workers. -> "OK"."""

    rpc: ClassVar[str] = "update_data"
    role: ClassVar[str] = SCHEDULER
    client: str
    who_has: Any
    nbytes: Any
    type_names: Any = None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerVariableDelete(Rpc):
    rpc: ClassVar[str] = "variable_delete"
    role: ClassVar[str] = SCHEDULER
    name: str


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerVariableGet(Rpc):
    rpc: ClassVar[str] = "variable_get"
    role: ClassVar[str] = SCHEDULER
    name: str
    requester: str
    timeout: float | None = None
    #: the marker sent on the stream just before (``ops.Claim``): applied after it
    claim: str | None = None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerVariableSet(Rpc):
    rpc: ClassVar[str] = "variable_set"
    role: ClassVar[str] = SCHEDULER
    name: str
    value: Any
    keys: Sequence[Key]
    #: the marker sent on the stream just before (``ops.Claim``): applied after it
    claim: str | None = None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerVersions(Rpc):
    rpc: ClassVar[str] = "versions"
    role: ClassVar[str] = SCHEDULER


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerWhoHas(Rpc):
    """-> ``{key: [worker address, ...]}`` (all keys if None)."""

    rpc: ClassVar[str] = "who_has"
    role: ClassVar[str] = SCHEDULER
    keys: Sequence[Key] | None = None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerWorkerDied(Rpc):
    """A nanny's report."""

    rpc: ClassVar[str] = "worker_died"
    role: ClassVar[str] = SCHEDULER
    address: Address | None
    nanny: Address
    reason: str


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerWorkersToClose(Rpc):
    """The ``n`` running workers whose retirement copies the least unique data."""

    rpc: ClassVar[str] = "workers_to_close"
    role: ClassVar[str] = SCHEDULER
    n: int = 0
    idle_only: bool = False
