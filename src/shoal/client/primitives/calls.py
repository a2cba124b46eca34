"""What every primitive needs: the client to use, values as opaque bytes plus the keys of
the futures in them, and scheduler calls that wait (each one bounded on the scheduler).

Rules of this file:

* A primitive made without ``client=`` uses the worker's client inside a task and the
  default client elsewhere, found when first used (so primitives pickle by name).
* A value read back is unpickled with its futures bound to the client that read it.
* A call that carries or returns keys first sends a claim on the client's stream (after
  applying dropped futures, so their releases go first) and names it: the scheduler
  answers only once everything this client sent before the claim is applied.
* Keys read back are claimed for this client by the scheduler; those no future here took
  are released at once.
* A wait is a sequence of scheduler-side waits, each at most ``MAX_WAIT`` seconds, until
  the caller's deadline: no polling, and nothing waits without a bound per call.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from shoal._types import Key
from shoal.client.default import get_client, rebinding_to
from shoal.client.future import Future, futures_of
from shoal.client.modes import Maybe
from shoal.protocol import ops
from shoal.protocol.rpc_base import Claiming, Rpc
from shoal.protocol.serialize import Serialized, deserialize, serialize

if TYPE_CHECKING:
    from shoal.client.client import Client

T = TypeVar("T")
#: the reply an rpc struct declares
R = TypeVar("R")

#: the longest one call waits on the scheduler (its own bound is shorter: it answers first)
MAX_WAIT = 10.0
#: extra seconds a call may take beyond its wait before the client gives up on it
CALL_MARGIN = 30.0


def resolve_client(client: Client | None) -> Client:
    """``client``, or the worker's client inside a task, or the default client."""
    if client is not None:
        return client
    from shoal.worker.execute import thread_state

    worker = getattr(thread_state, "worker", None)
    if worker is not None:
        return worker.get_client()  # type: ignore[no-any-return]
    return get_client()


def new_name(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex}"


def dask_futures_of(value: Any) -> list[Future]:
    """Futures in ``value``: in lists, tuples, sets and dicts, and in dask collections."""
    found = futures_of(value)
    try:
        from dask.base import is_dask_collection

        if is_dask_collection(value):
            graph = value.__dask_graph__()
            found += [v for v in graph.values() if isinstance(v, Future)]
    except Exception:  # not a collection we can look into: its plain futures are enough
        pass
    return list({f.key: f for f in found}.values())


def pack_value(value: Any) -> tuple[Serialized, list[Key]]:
    """``value`` pickled (its futures pickle as keys) and the keys of its futures."""
    return serialize(value), [f.key for f in dask_futures_of(value)]


def unpack_value(client: Client, packed: Serialized) -> Any:
    """The value, its futures bound to ``client``."""
    with rebinding_to(client):
        return deserialize(packed)


def unpack_claimed(client: Client, items: list[list[Any]]) -> list[Any]:
    """The values of ``[[value, keys], ...]`` read back; the scheduler claimed their keys
    for this client, so keys that no future here holds (unpickling failed, or the value
    hid them) are released now rather than kept until the client closes."""
    core = client._running_core()
    try:
        return [unpack_value(client, value) for value, _keys in items]
    finally:
        unheld = [k for _v, keys in items for k in keys if k not in core.table.states]
        if unheld:
            core.send_releases(list(dict.fromkeys(unheld)))


async def call(client: Client, rpc: Rpc[R], wait: float = 0.0) -> R:
    """One rpc to the scheduler on ``client``'s loop; it may wait ``wait`` seconds there.

    The client's stream is flushed first, so tasks just submitted (whose futures may be
    in ``rpc``) reach the scheduler ahead of this call. A ``Claiming`` rpc (it carries or
    returns keys) is ordered after a claim sent on the client's stream."""
    import asyncio

    core = client._running_core()
    if isinstance(rpc, Claiming):
        core.table.flush()  # dropped futures: their releases go ahead of the claim
        claim = uuid.uuid4().hex
        rpc = msgspec.structs.replace(rpc, claim=claim)
        core.send(ops.Claim(claim=claim))
    stream = getattr(core.transport, "_stream", None)
    if stream is not None:
        stream.flush_now()
    coro = core.transport.call(core.transport.scheduler_address, rpc)
    return await asyncio.wait_for(coro, wait + CALL_MARGIN)


async def call_keeping(client: Client, rpc: Rpc[R], keep: Any) -> R:
    """``call``, holding ``keep`` (the futures sent) until the scheduler holds their keys:
    an asynchronous caller's own references may be gone before the coroutine runs."""
    result = await call(client, rpc)
    del keep
    return result


async def until(attempt: Callable[[float], Awaitable[T | None]], timeout: float | None) -> T | None:
    """``await attempt(wait)`` until it gives a result or ``timeout`` passed (None: never)."""
    deadline = None if timeout is None else time.monotonic() + max(0.0, float(timeout))
    while True:
        wait = MAX_WAIT if deadline is None else min(MAX_WAIT, deadline - time.monotonic())
        result = await attempt(max(0.0, wait))
        if result is not None:
            return result
        if deadline is not None and time.monotonic() >= deadline:
            return None


def run(client: Client, coro: Awaitable[T]) -> Maybe[T]:
    """The result (synchronous client) or an awaitable (asynchronous client)."""
    return client._run(coro)  # type: ignore[arg-type]
