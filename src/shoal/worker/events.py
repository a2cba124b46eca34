"""Events a WorkerState is fed: past-tense facts, each with the id of its stimulus.

Opaque values (run specs, exceptions, tracebacks, task results) are carried as ``object``:
the state machine never looks inside them, it only hands them back in instructions.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from shoal._types import Address, Key, StimulusId


class WorkerEvent(msgspec.Struct, frozen=True, kw_only=True):
    #: what caused this event; follows it into every instruction and log line
    stimulus_id: StimulusId
    #: the shell's clock when the event happened (seconds); time only enters the machine here
    now: float = 0.0


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A failure as data: serialized exception and traceback plus their text."""

    exception: object
    traceback: object
    exception_text: str
    traceback_text: str
    #: the task raised ``Reschedule``: the scheduler schedules it again (not an error)
    reschedule: bool = False


# -- from the scheduler ------------------------------------------------------------------


class TaskAssigned(WorkerEvent, frozen=True, kw_only=True):
    """The scheduler asked this worker to compute ``key`` (attempt ``run_id``)."""

    key: Key
    run_id: int
    #: opaque serialized run spec; only the executor deserializes it
    run_spec: object
    #: lower runs first
    priority: tuple[float, ...]
    #: holders of each dependency, as the scheduler knows them
    who_has: Mapping[Key, tuple[Address, ...]]
    #: size in bytes of each dependency
    nbytes: Mapping[Key, int]
    #: abstract resources the task holds while it runs, e.g. {"GPU": 1}
    resource_restrictions: Mapping[str, float] = msgspec.field(default_factory=dict)
    annotations: Mapping[str, object] = msgspec.field(default_factory=dict)
    #: a client waits for the key: report a small result's serialized copy with it
    inline_result: bool = False


class ReplicasRequested(WorkerEvent, frozen=True, kw_only=True):
    """The scheduler wants copies of these keys here (retirement, rebalancing)."""

    who_has: Mapping[Key, tuple[Address, ...]]
    nbytes: Mapping[Key, int]


class KeysFreed(WorkerEvent, frozen=True, kw_only=True):
    """The scheduler no longer needs these keys here."""

    keys: tuple[Key, ...]


class StealRequested(WorkerEvent, frozen=True, kw_only=True):
    """The scheduler wants to move ``key`` elsewhere if it has not started."""

    key: Key


class WhoHasRefreshed(WorkerEvent, frozen=True, kw_only=True):
    """The scheduler's current knowledge of who holds these keys."""

    who_has: Mapping[Key, tuple[Address, ...]]


# -- from the executor ---------------------------------------------------------------------


class ExecuteSucceeded(WorkerEvent, frozen=True, kw_only=True):
    key: Key
    run_id: int
    value: object
    nbytes: int
    type_name: str
    start: float
    stop: float
    #: asked for (``inline_result``) and small: the value's serialized copy, else None
    inline: object = None


class ExecuteFailed(WorkerEvent, frozen=True, kw_only=True):
    key: Key
    run_id: int
    error: ErrorInfo
    start: float
    stop: float


class TaskSeceded(WorkerEvent, frozen=True, kw_only=True):
    """The running task called ``secede()``: it no longer occupies a thread."""

    key: Key


class TaskRejoined(WorkerEvent, frozen=True, kw_only=True):
    """The running task called ``rejoin()``: its thread waits for a thread slot (see the
    ``GrantThread`` instruction) before the task goes on."""

    key: Key


# -- from peers ----------------------------------------------------------------------------


class GatherDepSucceeded(WorkerEvent, frozen=True, kw_only=True):
    """A ``get_data`` call to ``worker`` returned. Requested keys absent from both
    ``data`` and ``unreadable`` were not held by that peer."""

    worker: Address
    requested: frozenset[Key]
    data: Mapping[Key, object]
    nbytes: Mapping[Key, int]
    #: keys whose bytes arrived but could not be deserialized
    unreadable: Mapping[Key, ErrorInfo] = msgspec.field(default_factory=dict)


class GatherDepBusy(WorkerEvent, frozen=True, kw_only=True):
    """The peer was serving too many others; try it again later."""

    worker: Address
    requested: frozenset[Key]


class GatherDepNetworkFailed(WorkerEvent, frozen=True, kw_only=True):
    """The peer could not be reached or the transfer broke: assume it holds nothing."""

    worker: Address
    requested: frozenset[Key]


class BusyWorkerRetryDue(WorkerEvent, frozen=True, kw_only=True):
    """The back-off after a busy answer from ``worker`` has passed."""

    worker: Address


# -- from the shell itself -----------------------------------------------------------------


class MissingRefreshDue(WorkerEvent, frozen=True, kw_only=True):
    """Time to ask the scheduler again who holds the keys we need and know no holder of
    (the shell feeds this periodically, e.g. on each heartbeat)."""


class WorkerPaused(WorkerEvent, frozen=True, kw_only=True):
    """Memory is high: start no new tasks and no new fetches."""


class WorkerUnpaused(WorkerEvent, frozen=True, kw_only=True):
    """Memory is back under the pause threshold."""


class MemoryPressureDetected(WorkerEvent, frozen=True, kw_only=True):
    """Process memory is over the spill threshold by ``nbytes``: drop replicas (copies the
    scheduler knows exist elsewhere) before any unique data is spilled."""

    nbytes: int


class DataReceived(WorkerEvent, frozen=True, kw_only=True):
    """A client put these values here directly (scatter): they are in memory now."""

    data: Mapping[Key, object]
    nbytes: Mapping[Key, int]
