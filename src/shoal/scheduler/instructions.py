"""Instructions a SchedulerState returns: imperatives for the shell to carry out."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from shoal._types import Address, Key, StimulusId


class SchedulerInstruction(msgspec.Struct, frozen=True, kw_only=True):
    stimulus_id: StimulusId


# -- to workers (over each worker's batched stream) ------------------------------------------


class ComputeTask(SchedulerInstruction, frozen=True, kw_only=True):
    worker: Address
    key: Key
    run_id: int
    run_spec: object
    priority: tuple[float, ...]
    who_has: Mapping[Key, tuple[Address, ...]]
    nbytes: Mapping[Key, int]
    resources: Mapping[str, float] = msgspec.field(default_factory=dict)
    annotations: Mapping[str, object] = msgspec.field(default_factory=dict)
    #: a client wants the key: the worker sends a small result along with task-finished
    inline_result: bool = False


class FreeKeys(SchedulerInstruction, frozen=True, kw_only=True):
    worker: Address
    keys: tuple[Key, ...]


class AcquireReplicas(SchedulerInstruction, frozen=True, kw_only=True):
    worker: Address
    who_has: Mapping[Key, tuple[Address, ...]]
    nbytes: Mapping[Key, int]


class CloseWorker(SchedulerInstruction, frozen=True, kw_only=True):
    """A retiring worker holds nothing unique and runs nothing: tell it to close."""

    worker: Address
    reason: str


class StealRequest(SchedulerInstruction, frozen=True, kw_only=True):
    worker: Address
    key: Key


class RefreshWhoHas(SchedulerInstruction, frozen=True, kw_only=True):
    worker: Address
    who_has: Mapping[Key, tuple[Address, ...]]


# -- to clients (over each client's batched stream) ------------------------------------------


class KeyInMemory(SchedulerInstruction, frozen=True, kw_only=True):
    client: str
    key: Key
    type_name: str
    #: workers holding it now, so the client fetches it without asking who has it
    who_has: tuple[Address, ...] = ()
    #: a small result's serialized copy from the worker (opaque), so no fetch is needed
    value: object = None


class KeyErred(SchedulerInstruction, frozen=True, kw_only=True):
    """``exception``/``traceback`` are what the worker sent (opaque), or a scheduler-made
    exception object (e.g. ``KilledWorker``) for the shell to serialize."""

    client: str
    key: Key
    exception: object
    traceback: object
    exception_text: str
    traceback_text: str


class KeysCancelledForClient(SchedulerInstruction, frozen=True, kw_only=True):
    client: str
    keys: tuple[Key, ...]
    reason: str


class KeyLost(SchedulerInstruction, frozen=True, kw_only=True):
    """A key the client wants left memory (its last holder died): it is computed again,
    so its future goes back to pending."""

    client: str
    key: Key


class KeyRetried(SchedulerInstruction, frozen=True, kw_only=True):
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
