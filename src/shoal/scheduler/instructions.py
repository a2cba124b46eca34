"""Instructions a SchedulerState returns: imperatives for the shell to carry out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from shoal._types import Address, Key, StimulusId


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerInstruction:
    stimulus_id: StimulusId


# -- to workers (over each worker's batched stream) ------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ComputeTask(SchedulerInstruction):
    worker: Address
    key: Key
    run_id: int
    run_spec: object
    priority: tuple[float, ...]
    who_has: Mapping[Key, tuple[Address, ...]]
    nbytes: Mapping[Key, int]
    resources: Mapping[str, float] = field(default_factory=dict)
    annotations: Mapping[str, object] = field(default_factory=dict)
    #: a client wants the key: the worker sends a small result along with task-finished
    inline_result: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class FreeKeys(SchedulerInstruction):
    worker: Address
    keys: tuple[Key, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AcquireReplicas(SchedulerInstruction):
    worker: Address
    who_has: Mapping[Key, tuple[Address, ...]]
    nbytes: Mapping[Key, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseWorker(SchedulerInstruction):
    """A retiring worker holds nothing unique and runs nothing: tell it to close."""

    worker: Address
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StealRequest(SchedulerInstruction):
    worker: Address
    key: Key


@dataclass(frozen=True, slots=True, kw_only=True)
class RefreshWhoHas(SchedulerInstruction):
    worker: Address
    who_has: Mapping[Key, tuple[Address, ...]]


# -- to clients (over each client's batched stream) ------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyInMemory(SchedulerInstruction):
    client: str
    key: Key
    type_name: str
    #: workers holding it now, so the client fetches it without asking who has it
    who_has: tuple[Address, ...] = ()
    #: a small result's serialized copy from the worker (opaque), so no fetch is needed
    value: object = None


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyErred(SchedulerInstruction):
    """``exception``/``traceback`` are what the worker sent (opaque), or a scheduler-made
    exception object (e.g. ``KilledWorker``) for the shell to serialize."""

    client: str
    key: Key
    exception: object
    traceback: object
    exception_text: str
    traceback_text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class KeysCancelledForClient(SchedulerInstruction):
    client: str
    keys: tuple[Key, ...]
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyLost(SchedulerInstruction):
    """A key the client wants left memory (its last holder died): it is computed again,
    so its future goes back to pending."""

    client: str
    key: Key


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyRetried(SchedulerInstruction):
    """An erred key is being computed again (its future goes back to pending)."""

    client: str
    key: Key


def coalesce_frees(out: list[SchedulerInstruction], start: int) -> None:
    """Merge the ``FreeKeys`` that ``out[start:]`` (one event's instructions) has for a
    worker into the first of them, unless another instruction for that worker came in
    between (its order on that worker's stream is kept). Releasing 100,000 keys made one
    ``free-keys`` message per key, and each worker handled 50,000 messages for 5 s."""
    if len(out) - start < 2:
        return
    merged: list[SchedulerInstruction] = []
    open_at: dict[Address, int] = {}  # worker -> where in ``merged`` its open FreeKeys is
    keys: dict[int, dict[Key, None]] = {}
    for inst in out[start:]:
        if type(inst) is FreeKeys:
            at = open_at.get(inst.worker)
            if at is not None:
                keys[at].update(dict.fromkeys(inst.keys))
                continue
            open_at[inst.worker] = len(merged)
            keys[len(merged)] = dict.fromkeys(inst.keys)
        elif (worker := getattr(inst, "worker", None)) is not None:
            open_at.pop(worker, None)
        merged.append(inst)
    if len(merged) == len(out) - start:
        return
    for at, ks in keys.items():
        first = merged[at]
        assert type(first) is FreeKeys
        if len(ks) != len(first.keys):
            merged[at] = FreeKeys(
                stimulus_id=first.stimulus_id, worker=first.worker, keys=tuple(ks)
            )
    out[start:] = merged
