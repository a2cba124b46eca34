"""The wire schema: one frozen, slotted struct per stream op, its name and typed fields.

Every message a batched stream carries is a msgpack map ``{"op": NAME, field: value, ...}``;
this module is the only place that names those fields. Shells turn a struct into its map
with ``to_msg`` and a received map back into a struct with ``from_msg``; the adapters
(``shoal.scheduler.wire``, ``shoal.worker.wire``) turn structs into state-machine events
and instructions into structs, by attribute, never by a string field name.
``docs/protocol.md`` is generated from this module (``scripts/protocol_doc.py``).

Rules of this file:

* Pure: no IO, no clocks, no imports from the rest of shoal but ``_types``/``errors``.
* One struct per (stream, op); an op name may recur on another stream (``close``,
  ``task-erred``) with its own fields.
* Opaque values (run specs, exceptions, tracebacks) are typed ``object``: whoever needs
  them deserializes them; the schema carries ``Serialized`` values untouched.
* ``to_msg``/``from_msg`` are on the hot path (several per task): a loop over a tuple of
  field names made once per class, nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import msgspec

from shoal._types import Address, Key, StimulusId
from shoal.errors import ProtocolError

#: the four batched streams, by direction
SCHEDULER_TO_WORKER = "scheduler->worker"
WORKER_TO_SCHEDULER = "worker->scheduler"
SCHEDULER_TO_CLIENT = "scheduler->client"
CLIENT_TO_SCHEDULER = "client->scheduler"
STREAMS = (SCHEDULER_TO_WORKER, WORKER_TO_SCHEDULER, SCHEDULER_TO_CLIENT, CLIENT_TO_SCHEDULER)


class Op(msgspec.Struct, frozen=True, kw_only=True):
    """A message on a batched stream; subclasses set ``op`` and ``stream``."""

    op: ClassVar[str]
    stream: ClassVar[str]
    #: field names in declaration order, set by ``_register``
    fields: ClassVar[tuple[str, ...]] = ()


_OpT = TypeVar("_OpT", bound=type[Op])
_Op = TypeVar("_Op", bound=Op)
#: every op struct, by stream then op name
OPS: dict[str, dict[str, type[Op]]] = {stream: {} for stream in STREAMS}


def _register(cls: _OpT) -> _OpT:
    if cls.op in OPS[cls.stream]:
        raise ProtocolError(f"op {cls.op!r} defined twice on stream {cls.stream}")
    cls.fields = cls.__struct_fields__
    OPS[cls.stream][cls.op] = cls
    return cls


def to_msg(op: Op) -> dict[str, Any]:
    """The wire map of ``op`` (``Serialized`` values inside it stay as they are)."""
    msg: dict[str, Any] = {"op": op.op}
    for name in op.fields:
        msg[name] = getattr(op, name)
    return msg


def from_msg(stream: str, msg: Mapping[str, Any]) -> Op:
    """The struct of a received ``msg`` on ``stream``; ``ProtocolError`` if it is not one."""
    try:
        cls = OPS[stream][msg["op"]]
    except (KeyError, TypeError):
        raise ProtocolError(f"unknown op on {stream}: {_op_name(msg)!r}") from None
    return decode(cls, msg)


def decode(cls: type[_Op], msg: Mapping[str, Any]) -> _Op:
    """``msg`` (with or without its ``"op"``) as a ``cls``. Fields the struct lacks are
    ignored (a newer peer may send more); a missing one takes its default or raises
    ``ProtocolError``."""
    kwargs = {name: msg[name] for name in cls.fields if name in msg}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ProtocolError(f"malformed {cls.op!r} on {cls.stream}: {exc}") from None


def _op_name(msg: object) -> object:
    return msg.get("op") if isinstance(msg, Mapping) else msg


# -- scheduler -> worker ---------------------------------------------------------------------


@_register
class ComputeTask(Op, frozen=True, kw_only=True):
    """Compute ``key`` (attempt ``run_id``) with inputs held by ``who_has``."""

    op: ClassVar[str] = "compute-task"
    stream: ClassVar[str] = SCHEDULER_TO_WORKER
    key: Key
    run_id: int
    #: opaque serialized run spec; only the worker's executor deserializes it
    run_spec: object
    #: lower runs first
    priority: tuple[float, ...]
    who_has: Mapping[Key, tuple[Address, ...]]
    #: size in bytes of each dependency
    nbytes: Mapping[Key, int]
    #: abstract resources the task holds while it runs, e.g. ``{"GPU": 1}``
    resources: Mapping[str, float] = msgspec.field(default_factory=dict)
    annotations: Mapping[str, object] = msgspec.field(default_factory=dict)
    #: a client waits for this key: send a small result's serialized copy with
    #: ``task-finished`` (saves the client's ``get_data`` round trip)
    inline_result: bool = False
    stimulus_id: StimulusId = ""


@_register
class FreeKeys(Op, frozen=True, kw_only=True):
    """The scheduler no longer needs these keys on this worker."""

    op: ClassVar[str] = "free-keys"
    stream: ClassVar[str] = SCHEDULER_TO_WORKER
    keys: tuple[Key, ...]
    stimulus_id: StimulusId = ""


@_register
class AcquireReplicas(Op, frozen=True, kw_only=True):
    """Fetch copies of these keys (retirement, rebalancing)."""

    op: ClassVar[str] = "acquire-replicas"
    stream: ClassVar[str] = SCHEDULER_TO_WORKER
    who_has: Mapping[Key, tuple[Address, ...]]
    nbytes: Mapping[Key, int]
    stimulus_id: StimulusId = ""


@_register
class StealRequest(Op, frozen=True, kw_only=True):
    """Give ``key`` up if it has not started; answer with ``steal-response``."""

    op: ClassVar[str] = "steal-request"
    stream: ClassVar[str] = SCHEDULER_TO_WORKER
    key: Key
    stimulus_id: StimulusId = ""


@_register
class RefreshWhoHas(Op, frozen=True, kw_only=True):
    """The scheduler's current knowledge of who holds these keys."""

    op: ClassVar[str] = "refresh-who-has"
    stream: ClassVar[str] = SCHEDULER_TO_WORKER
    who_has: Mapping[Key, tuple[Address, ...]]
    stimulus_id: StimulusId = ""


@_register
class CloseWorker(Op, frozen=True, kw_only=True):
    """Close (retired, cluster restart or scheduler closing)."""

    op: ClassVar[str] = "close"
    stream: ClassVar[str] = SCHEDULER_TO_WORKER
    reason: str = ""
    stimulus_id: StimulusId = ""


# -- worker -> scheduler ---------------------------------------------------------------------


@_register
class TaskStarted(Op, frozen=True, kw_only=True):
    """``key`` starts running now (sent before it runs, so a crash blames only it)."""

    op: ClassVar[str] = "task-started"
    stream: ClassVar[str] = WORKER_TO_SCHEDULER
    key: Key
    run_id: int
    stimulus_id: StimulusId = ""


@_register
class TaskFinished(Op, frozen=True, kw_only=True):
    op: ClassVar[str] = "task-finished"
    stream: ClassVar[str] = WORKER_TO_SCHEDULER
    key: Key
    run_id: int
    nbytes: int
    type_name: str
    #: the worker's clock when the task started and stopped
    start: float
    stop: float
    #: asked with ``inline_result``: the result's serialized copy if it is small, else None
    value: object = None
    stimulus_id: StimulusId = ""


@_register
class TaskErred(Op, frozen=True, kw_only=True):
    op: ClassVar[str] = "task-erred"
    stream: ClassVar[str] = WORKER_TO_SCHEDULER
    key: Key
    run_id: int
    #: serialized exception and traceback (opaque to the scheduler)
    exception: object
    traceback: object
    exception_text: str
    traceback_text: str
    #: the task raised ``Reschedule``: schedule it again, not an error
    reschedule: bool = False
    stimulus_id: StimulusId = ""


@_register
class ReleaseWorkerData(Op, frozen=True, kw_only=True):
    """This worker dropped its copy of ``key``."""

    op: ClassVar[str] = "release-worker-data"
    stream: ClassVar[str] = WORKER_TO_SCHEDULER
    key: Key
    stimulus_id: StimulusId = ""


@_register
class AddKeys(Op, frozen=True, kw_only=True):
    """This worker now holds copies of ``keys`` (fetched from peers)."""

    op: ClassVar[str] = "add-keys"
    stream: ClassVar[str] = WORKER_TO_SCHEDULER
    keys: tuple[Key, ...]
    nbytes: Mapping[Key, int] = msgspec.field(default_factory=dict)
    stimulus_id: StimulusId = ""


@_register
class LongRunning(Op, frozen=True, kw_only=True):
    """The task seceded: it no longer occupies a thread."""

    op: ClassVar[str] = "long-running"
    stream: ClassVar[str] = WORKER_TO_SCHEDULER
    key: Key
    run_id: int
    stimulus_id: StimulusId = ""


@_register
class Rejoined(Op, frozen=True, kw_only=True):
    """The seceded task occupies one of this worker's threads again."""

    op: ClassVar[str] = "rejoined"
    stream: ClassVar[str] = WORKER_TO_SCHEDULER
    key: Key
    run_id: int
    stimulus_id: StimulusId = ""


@_register
class StealResponse(Op, frozen=True, kw_only=True):
    """The task's state here before the steal request (None: unknown here)."""

    op: ClassVar[str] = "steal-response"
    stream: ClassVar[str] = WORKER_TO_SCHEDULER
    key: Key
    state: str | None
    stimulus_id: StimulusId = ""


@_register
class MissingData(Op, frozen=True, kw_only=True):
    """``errant_worker`` did not have ``key`` although the scheduler said it did."""

    op: ClassVar[str] = "missing-data"
    stream: ClassVar[str] = WORKER_TO_SCHEDULER
    key: Key
    errant_worker: Address
    stimulus_id: StimulusId = ""


@_register
class RequestRefreshWhoHas(Op, frozen=True, kw_only=True):
    """No known holder of ``keys`` is reachable: who has them now?"""

    op: ClassVar[str] = "request-refresh-who-has"
    stream: ClassVar[str] = WORKER_TO_SCHEDULER
    keys: tuple[Key, ...]
    stimulus_id: StimulusId = ""


@_register
class WorkerStatusChange(Op, frozen=True, kw_only=True):
    """``status`` is "running", "paused" or "closing_gracefully"."""

    op: ClassVar[str] = "worker-status-change"
    stream: ClassVar[str] = WORKER_TO_SCHEDULER
    status: str
    stimulus_id: StimulusId = ""


@_register
class Heartbeat(Op, frozen=True, kw_only=True):
    """The worker's periodic metrics (memory, executing, transfers, ...)."""

    op: ClassVar[str] = "heartbeat"
    stream: ClassVar[str] = WORKER_TO_SCHEDULER
    metrics: Mapping[str, Any]


@_register
class Unregister(Op, frozen=True, kw_only=True):
    """The worker is closing (a graceful close follows): do not count it as a crash."""

    op: ClassVar[str] = "unregister"
    stream: ClassVar[str] = WORKER_TO_SCHEDULER
    reason: str = ""


# -- client -> scheduler ---------------------------------------------------------------------

#: one task of ``update-graph``: (key, run spec or None, dependencies, priority, token or None)
TaskRow = tuple[Key, object, tuple[Key, ...], tuple[float, ...], "str | None"]


@_register
class UpdateGraph(Op, frozen=True, kw_only=True):
    """New tasks (dependencies first) and the keys this client now holds futures for.
    A row with run spec None only refers to a key the scheduler already has."""

    op: ClassVar[str] = "update-graph"
    stream: ClassVar[str] = CLIENT_TO_SCHEDULER
    tasks: Sequence[TaskRow]
    #: per key: retries, resources, workers, allow_other_workers, annotations
    restrictions: Mapping[Key, Mapping[str, Any]] = msgspec.field(default_factory=dict)
    wanted: Sequence[Key] = ()
    stimulus_id: StimulusId = ""


@_register
class ClientDesiresKeys(Op, frozen=True, kw_only=True):
    """This client holds (new) futures for keys submitted elsewhere."""

    op: ClassVar[str] = "client-desires-keys"
    stream: ClassVar[str] = CLIENT_TO_SCHEDULER
    keys: Sequence[Key]
    stimulus_id: StimulusId = ""


@_register
class ClientReleasesKeys(Op, frozen=True, kw_only=True):
    """This client dropped its last future for these keys."""

    op: ClassVar[str] = "client-releases-keys"
    stream: ClassVar[str] = CLIENT_TO_SCHEDULER
    keys: Sequence[Key]
    stimulus_id: StimulusId = ""


@_register
class CancelKeys(Op, frozen=True, kw_only=True):
    """Stop these keys (``force``: even if other clients want them)."""

    op: ClassVar[str] = "cancel-keys"
    stream: ClassVar[str] = CLIENT_TO_SCHEDULER
    keys: Sequence[Key]
    force: bool = False
    stimulus_id: StimulusId = ""


@_register
class Retry(Op, frozen=True, kw_only=True):
    """Run these erred keys (and their erred dependencies) again."""

    op: ClassVar[str] = "retry"
    stream: ClassVar[str] = CLIENT_TO_SCHEDULER
    keys: Sequence[Key]
    stimulus_id: StimulusId = ""


@_register
class CloseClient(Op, frozen=True, kw_only=True):
    """The client is leaving (its stream closes next)."""

    op: ClassVar[str] = "close-client"
    stream: ClassVar[str] = CLIENT_TO_SCHEDULER


@_register
class ClientReconnected(Op, frozen=True, kw_only=True):
    """The client came back after losing its stream (its keys are declared again next)."""

    op: ClassVar[str] = "client-reconnected"
    stream: ClassVar[str] = CLIENT_TO_SCHEDULER


@_register
class Claim(Op, frozen=True, kw_only=True):
    """Sent just before a coordination rpc that hands keys to this client (a queue's
    futures, say): the rpc waits until this marker arrived, so every release the client
    sent before it is applied first."""

    op: ClassVar[str] = "claim"
    stream: ClassVar[str] = CLIENT_TO_SCHEDULER
    claim: str


# -- scheduler -> client ---------------------------------------------------------------------


@_register
class KeyInMemory(Op, frozen=True, kw_only=True):
    """``key`` is done; ``who_has`` are workers holding it, so the client fetches it from
    one of them without asking the scheduler first; ``value``, if set, is the (small)
    result itself, asked for with ``inline_result``: no fetch at all."""

    op: ClassVar[str] = "key-in-memory"
    stream: ClassVar[str] = SCHEDULER_TO_CLIENT
    key: Key
    type_name: str = ""
    who_has: Sequence[Address] = ()
    #: a small result's serialized copy (from ``task-finished``): no fetch needed
    value: object = None


@_register
class KeyErred(Op, frozen=True, kw_only=True):
    """``key`` failed for good: its serialized exception and traceback (or None)."""

    op: ClassVar[str] = "task-erred"
    stream: ClassVar[str] = SCHEDULER_TO_CLIENT
    key: Key
    exception: object
    traceback: object
    exception_text: str = ""
    traceback_text: str = ""


@_register
class CancelledKeys(Op, frozen=True, kw_only=True):
    """The scheduler cancelled these keys (``reason`` says why)."""

    op: ClassVar[str] = "cancelled-keys"
    stream: ClassVar[str] = SCHEDULER_TO_CLIENT
    keys: Sequence[Key]
    reason: str = ""


@_register
class LostData(Op, frozen=True, kw_only=True):
    """A key in memory lost its last copy and is computed again: its future goes back to
    pending (a ``gather`` waiting on it waits for the new result)."""

    op: ClassVar[str] = "lost-data"
    stream: ClassVar[str] = SCHEDULER_TO_CLIENT
    key: Key


@_register
class TaskRetried(Op, frozen=True, kw_only=True):
    """An erred key is computed again: its future goes back to pending."""

    op: ClassVar[str] = "task-retried"
    stream: ClassVar[str] = SCHEDULER_TO_CLIENT
    key: Key


@_register
class Output(Op, frozen=True, kw_only=True):
    """``shoal.print``/``shoal.warn`` in a task: ``kind`` is "print" or "warn"; ``file`` is
    "stdout" or "stderr" (a print's); ``category`` names a warning's class. (``file`` was
    ``stream`` on the wire before the schema: that name is the struct's stream.)"""

    op: ClassVar[str] = "output"
    stream: ClassVar[str] = SCHEDULER_TO_CLIENT
    kind: str
    text: str
    file: str = ""
    category: str = ""


@_register
class TopicEvent(Op, frozen=True, kw_only=True):
    """An event logged on a topic this client subscribed to: ``(time, msg)``."""

    op: ClassVar[str] = "event"
    stream: ClassVar[str] = SCHEDULER_TO_CLIENT
    topic: str
    event: Sequence[Any]
