"""Events a SchedulerState is fed: past-tense facts, each with the id of its stimulus.

Run specs, exceptions and tracebacks are opaque (``object``): the scheduler never
unpickles user code; it stores them and hands them on.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from shoal._types import Address, Key, StimulusId


class SchedulerEvent(msgspec.Struct, frozen=True, kw_only=True):
    #: what caused this event; follows it into every instruction and log line
    stimulus_id: StimulusId
    #: the shell's clock (seconds); time only enters the machine here
    now: float = 0.0


class NewTask(msgspec.Struct, frozen=True, kw_only=True):
    """One task of a submitted graph, as the scheduler sees it."""

    key: Key
    #: opaque serialized run spec, handed to workers unread; None for a task the client
    #: only refers to (it must already exist)
    run_spec: object
    dependencies: tuple[Key, ...] = ()
    #: lower runs first; the client's (user priority, submission order, dask.order) tuple
    priority: tuple[float, ...] = (0,)
    #: a digest of the definition, to refuse a different task under a live key; None: no check
    token: str | None = None
    retries: int = 0
    #: abstract resources the task holds while it runs
    resources: Mapping[str, float] = msgspec.field(default_factory=dict)
    #: addresses or names of workers the task may run on (empty: any)
    workers: tuple[str, ...] = ()
    allow_other_workers: bool = False
    #: other annotations, passed on to the worker
    annotations: Mapping[str, object] = msgspec.field(default_factory=dict)


# -- clients -----------------------------------------------------------------------------


class ClientConnected(SchedulerEvent, frozen=True, kw_only=True):
    client: str


class ClientDisconnected(SchedulerEvent, frozen=True, kw_only=True):
    """The client went away: release everything it wanted."""

    client: str


class GraphSubmitted(SchedulerEvent, frozen=True, kw_only=True):
    client: str
    tasks: tuple[NewTask, ...]
    #: keys the client holds futures for
    wanted: tuple[Key, ...]


class KeysDesired(SchedulerEvent, frozen=True, kw_only=True):
    """The client holds (new) futures for existing keys."""

    client: str
    keys: tuple[Key, ...]


class KeysReleased(SchedulerEvent, frozen=True, kw_only=True):
    """The client dropped its last future for these keys."""

    client: str
    keys: tuple[Key, ...]


class KeysCancelled(SchedulerEvent, frozen=True, kw_only=True):
    """The client cancelled these keys (``force``: even if other clients want them).
    ``reason`` replaces the default "cancelled by client ..." told to the clients."""

    client: str
    keys: tuple[Key, ...]
    force: bool = False
    reason: str | None = None


class RetryRequested(SchedulerEvent, frozen=True, kw_only=True):
    """Run these erred keys (and their erred dependencies) again."""

    client: str
    keys: tuple[Key, ...]


class DataScattered(SchedulerEvent, frozen=True, kw_only=True):
    """The client put data straight onto workers."""

    client: str
    who_has: Mapping[Key, tuple[Address, ...]]
    nbytes: Mapping[Key, int]
    type_names: Mapping[Key, str] = msgspec.field(default_factory=dict)


# -- workers -------------------------------------------------------------------------------


class FromWorker(SchedulerEvent, frozen=True, kw_only=True):
    """An event that came on ``worker``'s stream. ``incarnation`` is the registration that
    stream belongs to (None: not checked); the state ignores an event from any other
    incarnation than the worker's current one, or from a worker it removed (fencing)."""

    worker: Address
    incarnation: int | None = None


class WorkerJoined(SchedulerEvent, frozen=True, kw_only=True):
    """A worker registered. ``incarnation`` identifies this registration (the shell hands
    out a new one each time); ``held`` is what it already holds (``(key, nbytes)``, e.g.
    after the scheduler restarted) and ``running`` the keys it is running."""

    address: Address
    name: str
    nthreads: int
    memory_limit: int = 0
    resources: Mapping[str, float] = msgspec.field(default_factory=dict)
    nanny: Address | None = None
    services: Mapping[str, int] = msgspec.field(default_factory=dict)
    incarnation: int = 0
    held: tuple[tuple[Key, int], ...] = ()
    running: tuple[Key, ...] = ()


class WorkerLeft(SchedulerEvent, frozen=True, kw_only=True):
    """The worker is gone. ``expected``: it closed gracefully, so it killed nothing."""

    address: Address
    reason: str
    expected: bool = False
    #: the registration that left (None: whichever is current)
    incarnation: int | None = None
    #: (key, run_id) of the tasks it was running, as its nanny read them after the death
    #: (None: not known; then those it said it started, else its first ones, are suspects)
    running: tuple[tuple[Key, int], ...] | None = None


class WorkerStatusChanged(FromWorker, frozen=True, kw_only=True):
    """``status`` is "running", "paused" or "closing_gracefully"."""

    status: str


class RetirementRequested(SchedulerEvent, frozen=True, kw_only=True):
    """Retire ``worker``: no new tasks, its running tasks placed elsewhere, every key only it
    holds copied to another running worker, then ``CloseWorker``."""

    worker: Address
    #: the other workers retired by the same request: never targets of ``worker``'s copies
    #: (a copy onto a worker that retires next would have to move again, or be lost)
    also_retiring: frozenset[Address] = frozenset()


class TaskStarted(FromWorker, frozen=True, kw_only=True):
    key: Key
    run_id: int


class TaskFinished(FromWorker, frozen=True, kw_only=True):
    key: Key
    run_id: int
    nbytes: int
    type_name: str
    start: float
    stop: float
    #: the result's serialized copy (opaque) when asked for with inline_result and small
    value: object = None


class TaskErred(FromWorker, frozen=True, kw_only=True):
    key: Key
    run_id: int
    exception: object
    traceback: object
    exception_text: str
    traceback_text: str
    #: the task raised ``Reschedule``: put it back, do not count it as a failure
    reschedule: bool = False


class TaskSeceded(FromWorker, frozen=True, kw_only=True):
    """The task left its thread (``secede()``): it no longer occupies one."""

    key: Key
    run_id: int


class TaskRejoined(FromWorker, frozen=True, kw_only=True):
    """The seceded task called ``rejoin()`` and got a thread again: it occupies one."""

    key: Key
    run_id: int


class WorkerReleasedKey(FromWorker, frozen=True, kw_only=True):
    key: Key


class WorkerAddedKeys(FromWorker, frozen=True, kw_only=True):
    keys: tuple[Key, ...]
    nbytes: Mapping[Key, int] = msgspec.field(default_factory=dict)


class StealResponded(FromWorker, frozen=True, kw_only=True):
    """The worker's answer to a steal request: the task's state there before the request
    (``waiting``, ``ready`` or ``constrained``: it gave the task up; None: unknown there)."""

    key: Key
    state: str | None


class DataMissing(FromWorker, frozen=True, kw_only=True):
    """``worker`` asked ``errant_worker`` for ``key`` and it was not there."""

    key: Key
    errant_worker: Address


class WhoHasRefreshRequested(FromWorker, frozen=True, kw_only=True):
    keys: tuple[Key, ...]


class UnclaimedExpired(SchedulerEvent, frozen=True, kw_only=True):
    """Results that workers reported holding but no client asked for since ``before`` (the
    shell's clock) are freed on those workers."""

    before: float


class ForgettingDue(SchedulerEvent, frozen=True, kw_only=True):
    """The shell's turn for released tasks whose forgetting a pass put off (a pass forgets
    at most ``TransitionEngine.forgets_per_pass``): forget the next ones. The shell feeds
    one whenever a pass leaves ``SchedulerState.forgetting`` non-empty."""
