"""Moving data between the client and workers: gather, scatter, and ``run``.

Bulk data never passes through the scheduler: the client talks to the workers that hold
it directly, one ``get_data`` per worker for all the keys that worker holds. Which
workers: those ``key-in-memory`` named (so a result costs one rpc), or, for keys it named
none for or whose holder failed, the scheduler's answer to ``who_has``. A small result
the client waited for came with its ``key-in-memory`` (``FutureState.value``): it is
deserialized here, with no rpc at all (bulk data still never passes the scheduler).

Rules of this file:

* Every function here runs on the core's loop.
* Waiting for many futures costs one listener per pending future and one event, never a
  coroutine per future.
* A worker that no longer holds a key, or that the scheduler names for no key, costs a
  retry through ``who_has``, with a growing pause; after ``FETCH_ATTEMPTS`` such rounds
  the keys still missing are declared lost.
* A holder that cannot be reached (or is busy) is not evidence of loss: the scheduler
  still counts it, and removes a dead one within ``NANNY_REPORT_GRACE`` (a silent one
  within its worker-ttl), then says ``lost-data``. Those keys are retried for up to
  ``UNREACHABLE_PATIENCE`` seconds: a round count raced the scheduler's grace period when
  a whole node died during a gather.
* A key whose last copy died is computed again by the scheduler, which says so
  (``lost-data``: the future is pending again); ``gather`` then waits for its new result
  instead of fetching, rather than declaring it lost.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from shoal._types import Address, Key
from shoal.client.core import ClientCore
from shoal.client.future import Future
from shoal.client.future_state import ErrorInfo, FutureState
from shoal.errors import CommError, FutureLostError, ShoalTimeoutError
from shoal.graph.spec import find_refs, substitute
from shoal.protocol.rpc_scheduler import (
    SchedulerSchedulerInfo,
    SchedulerUpdateData,
    SchedulerWhoHas,
)
from shoal.protocol.rpc_workers import WorkerGetData, WorkerRun, WorkerUpdateData
from shoal.protocol.serialize import Serialized, deserialize, serialize

logger = logging.getLogger("shoal.client")

#: rounds of who_has + get_data that found no reachable copy before keys are declared lost
FETCH_ATTEMPTS = 8
#: seconds to keep retrying keys whose named holders cannot be reached: longer than the
#: scheduler's default worker-ttl (60 s), so the scheduler removes a silent holder first
UNREACHABLE_PATIENCE = 75.0
#: the longest pause between two rounds, in seconds
MAX_PAUSE = 1.0


async def wait_for_states(states: Sequence[FutureState], stop_on_error: bool = False) -> None:
    """Wait until every state is done (or, with ``stop_on_error``, one is not finished)."""
    pending = [s for s in states if not s.done()]
    if not pending:
        return
    if stop_on_error and any(s.done() and s.status != "finished" for s in states):
        return
    event = asyncio.Event()
    remaining = len(pending)

    def listener(state: FutureState) -> None:
        nonlocal remaining
        remaining -= 1
        if remaining == 0 or (stop_on_error and state.status != "finished"):
            event.set()

    for state in pending:
        state.add_listener(listener)
    try:
        await event.wait()
    finally:
        for state in pending:
            state.remove_listener(listener)


async def gather(core: ClientCore, obj: Any, errors: Literal["raise", "skip"] = "raise") -> Any:
    """``obj`` with every future in it replaced by its value."""
    if errors not in ("raise", "skip"):
        raise ValueError(f"errors must be 'raise' or 'skip', not {errors!r}")
    found: dict[Key, Any] = {}
    packed = find_refs(obj, found)
    states = [f._state for f in found.values() if isinstance(f, Future)]
    if not states:
        return obj
    by_key = {s.key: s for s in states}
    data: dict[Key, Any] = {}
    waiting = states
    while waiting:
        await wait_for_states(waiting, stop_on_error=errors == "raise")
        good = []
        for state in waiting:
            if state.status == "finished":
                good.append(state.key)
            elif errors == "raise" and state.done():
                assert state.error is not None
                raise state.error.rebuild()
        data.update(await fetch(core, good, by_key))
        # a key whose last copy died meanwhile is computed again (``lost-data`` made its
        # future pending): wait for its new result
        waiting = [s for s in waiting if s.key not in data and s.status == "pending"]
    return substitute(packed, data, skip_missing=errors == "skip")


async def fetch(
    core: ClientCore, keys: Sequence[Key], states: dict[Key, FutureState] | None = None
) -> dict[Key, Any]:
    """The values of ``keys``, fetched from the workers that hold them.

    The first round goes straight to the holders ``key-in-memory`` named (one rpc per
    worker, no ``who_has``); what that misses, and every later round, asks the scheduler.
    """
    data: dict[Key, Any] = {}
    missing = list(dict.fromkeys(keys))
    if states:
        missing = _take_inline(missing, states, data)
    hinted = _hinted_holders(missing, states)
    give_up_at = time.monotonic() + UNREACHABLE_PATIENCE
    fruitless = 0  # rounds in which some key had no reachable holder to blame
    for attempt in itertools.count(1):
        if not missing:
            return data
        from_hints = bool(hinted)
        if hinted:
            who_has, hinted = hinted, {}
            unknown = [k for k in missing if k not in who_has]
            if unknown:
                who_has.update(await _ask_who_has(core, unknown) or {})
        else:
            who_has = await _ask_who_has(core, missing)
        unreachable = await _fetch_round(core, _plan(missing, who_has or {}), data)
        missing = [k for k in missing if k not in data and not _computed_again(k, states)]
        if any(k not in unreachable for k in missing):
            fruitless += 1
        if missing and (fruitless >= FETCH_ATTEMPTS or time.monotonic() > give_up_at):
            for key in missing:
                if states and key in states:
                    states[key].lose("no worker holds it")
            raise FutureLostError(f"no worker holds the data of {missing[:5]!r}")
        if missing and not from_hints:  # a stale hint: ask the scheduler at once
            if unreachable and attempt % 4 == 0:
                logger.warning(
                    "client %s: the holders of %s cannot be reached; waiting for them or "
                    "for the scheduler to find them dead", core.id, missing[:3],
                )  # fmt: skip
            await asyncio.sleep(min(0.02 * 2**attempt, MAX_PAUSE))
    raise AssertionError("unreachable")


def _take_inline(
    keys: list[Key], states: dict[Key, FutureState], data: dict[Key, Any]
) -> list[Key]:
    """Deserialize the values that came with ``key-in-memory`` into ``data`` (anew on each
    call, like a fetch: the caller gets its own object); the keys left to fetch."""
    left = []
    for key in keys:
        state = states.get(key)
        blob = None if state is None else state.value
        if blob is None:
            left.append(key)
        else:
            data[key] = deserialize(blob)
    return left


def _computed_again(key: Key, states: dict[Key, FutureState] | None) -> bool:
    """The scheduler said the key's data was lost and is being recomputed (its future is
    pending again): fetching it now cannot succeed; the caller waits for it instead."""
    state = states.get(key) if states else None
    return state is not None and state.status == "pending"


def _hinted_holders(
    keys: Sequence[Key], states: dict[Key, FutureState] | None
) -> dict[Key, Iterable[Address]]:
    """The holders the scheduler named when each key finished (keys it named none for
    are left out)."""
    if not states:
        return {}
    hinted: dict[Key, Iterable[Address]] = {}
    for key in keys:
        state = states.get(key)
        if state is not None and state.holders:
            hinted[key] = state.holders
    return hinted


async def _ask_who_has(core: ClientCore, keys: Sequence[Key]) -> Any:
    return await core.transport.call(core.transport.scheduler_address, SchedulerWhoHas(keys=keys))


def _plan(keys: Sequence[Key], who_has: dict[Key, Iterable[Address]]) -> dict[Address, list[Key]]:
    """Keys per worker: a random holder for each key, so load spreads over replicas."""
    plan: dict[Address, list[Key]] = {}
    for key in keys:
        holders = list(who_has.get(key) or ())
        if holders:
            plan.setdefault(random.choice(holders), []).append(key)
    return plan


def _rebuilt(error: dict[str, Any]) -> BaseException:
    info = ErrorInfo(
        error.get("exception"),
        error.get("traceback"),
        str(error.get("exception_text", "")),
        str(error.get("traceback_text", "")),
    )
    return info.rebuild()


async def _fetch_round(
    core: ClientCore, plan: dict[Address, list[Key]], data: dict[Key, Any]
) -> set[Key]:
    """Fetch ``plan`` into ``data``; the keys whose worker could not be reached or was busy
    (still there, as far as anyone knows: worth asking again)."""
    unreachable: set[Key] = set()

    async def one(worker: Address, keys: list[Key]) -> None:
        try:
            reply = await core.transport.call(worker, WorkerGetData(keys=keys, who=core.id))
        except (CommError, ShoalTimeoutError) as exc:
            logger.info("client %s: get_data from %s failed: %s", core.id, worker, exc)
            unreachable.update(keys)
            return
        if not isinstance(reply, dict) or reply.get("status") == "busy":
            unreachable.update(keys)
            return
        for key, blob in (reply.get("data") or {}).items():
            data[key] = deserialize(blob)
        for error in (reply.get("unsendable") or {}).values():
            raise _rebuilt(error)  # the value exists but cannot travel: say so, with why

    if len(plan) == 1:  # one holder (a single result): no task for gather to wrap it in
        [(worker, keys)] = plan.items()
        await one(worker, keys)
    else:
        await asyncio.gather(*(one(w, ks) for w, ks in plan.items()))
    return unreachable


# -- scatter -----------------------------------------------------------------------------------


async def scatter(
    core: ClientCore,
    keys: Sequence[Key],
    blobs: dict[Key, Serialized],
    tokens: dict[Key, str],
    workers: Sequence[str] | None,
    broadcast: bool,
) -> list[FutureState]:
    """Put serialized values on workers, tell the scheduler, take references on them.

    ``keys`` may repeat a key (the same value twice in a list): one state per entry.
    """
    core.check_running()
    live = set(core.refuse_scatter_conflicts(tokens))
    to_send = {k: v for k, v in blobs.items() if k not in live}
    type_names: dict[Key, str] = {}
    if to_send:
        targets = await worker_addresses(core, workers)
        assignment = _assign(list(to_send), targets, broadcast)
        who_has, nbytes = await _push(core, to_send, assignment, type_names)
        update = SchedulerUpdateData(
            client=core.id, who_has=who_has, nbytes=nbytes, type_names=type_names
        )
        await core.transport.call(core.transport.scheduler_address, update)
    return core.register_scattered(keys, [tokens[k] for k in keys], type_names)


def _assign(keys: list[Key], targets: list[Address], broadcast: bool) -> dict[Address, list[Key]]:
    if broadcast:
        return {w: list(keys) for w in targets}
    plan: dict[Address, list[Key]] = {}
    start = random.randrange(len(targets))
    for i, key in enumerate(keys):
        plan.setdefault(targets[(start + i) % len(targets)], []).append(key)
    return plan


async def _push(
    core: ClientCore,
    blobs: dict[Key, Serialized],
    assignment: dict[Address, list[Key]],
    type_names: dict[Key, str],
) -> tuple[dict[Key, list[Address]], dict[Key, int]]:
    workers = list(assignment)
    replies = await asyncio.gather(
        *(
            core.transport.call(w, WorkerUpdateData(data={k: blobs[k] for k in assignment[w]}))
            for w in workers
        )
    )
    who_has: dict[Key, list[Address]] = {}
    nbytes: dict[Key, int] = {}
    for worker, reply in zip(workers, replies, strict=True):
        for key in assignment[worker]:
            who_has.setdefault(key, []).append(worker)
        nbytes.update((reply or {}).get("nbytes") or {})
        type_names.update((reply or {}).get("type_names") or {})
    return who_has, nbytes


# -- workers and run -----------------------------------------------------------------------------


async def worker_addresses(core: ClientCore, wanted: Sequence[str] | None) -> list[Address]:
    """The addresses of the workers named in ``wanted`` (addresses or names), or all."""
    info = await core.transport.call(core.transport.scheduler_address, SchedulerSchedulerInfo())
    workers: dict[Address, dict[str, Any]] = dict(info.get("workers") or {})
    if wanted is None:
        if not workers:
            raise ValueError(f"no workers are connected to {core.transport.scheduler_address}")
        return sorted(workers)
    by_name = {str(w.get("name")): address for address, w in workers.items()}
    out = []
    for name in wanted:
        address = name if name in workers else by_name.get(str(name))
        if address is None:
            raise ValueError(f"no worker {name!r} (workers: {sorted(workers)})")
        out.append(address)
    return out


async def run(
    core: ClientCore,
    function: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    workers: Sequence[str] | None,
) -> dict[Address, Any]:
    """Run ``function(*args, **kwargs)`` on each worker; results by worker address."""
    targets = await worker_addresses(core, workers)
    rpc = WorkerRun(function=serialize(function), args=serialize(args), kwargs=serialize(kwargs))
    # user code of any length: no reply deadline (a dead worker still breaks the comm)
    calls = (core.transport.call(w, rpc, reply_timeout=None) for w in targets)
    results = await asyncio.gather(*calls)
    return {
        w: deserialize(r) if isinstance(r, Serialized) else r
        for w, r in zip(targets, results, strict=True)
    }
