"""The worker's side of actors: making them, and answering calls on them.

Rules of this file:

* An actor lives in ``worker.actors`` (key -> object), never in ``worker.data``: it is
  not spilled or copied; ``worker.data`` holds only its small ``Actor`` proxy.
* Synchronous methods run one at a time on the worker's single actor thread (as in
  dask); ``async def`` methods run on the worker's loop.
* A call on an actor that is gone raises ``KeyError`` naming the key and the worker.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from shoal._types import Key
from shoal.comm import Comm
from shoal.protocol.rpc_workers import WorkerActorAttribute, WorkerActorExecute
from shoal.protocol.serialize import Serialized, deserialize, serialize
from shoal.worker.execute import thread_state

if TYPE_CHECKING:
    from shoal.client.actor import Actor
    from shoal.worker.server import Worker

_executors: weakref.WeakKeyDictionary[Worker, ThreadPoolExecutor] = weakref.WeakKeyDictionary()


def create_actor(cls: Callable[..., Any], *args: Any, **kwargs: Any) -> Actor:
    """The task ``submit(cls, ..., actor=True)`` runs: make the object, keep it here."""
    from shoal.client.actor import Actor
    from shoal.worker.context import get_worker

    worker = get_worker()
    key = worker.get_current_task()
    worker.actors[key] = cls(*args, **kwargs)
    return Actor(cls, worker.address, key)  # type: ignore[arg-type]


def _executor(worker: Worker) -> ThreadPoolExecutor:
    executor = _executors.get(worker)
    if executor is None:
        executor = _executors[worker] = ThreadPoolExecutor(1, thread_name_prefix="shoal-actor")
    return executor


def _lookup(worker: Worker, key: Key) -> Any:
    try:
        return worker.actors[key]
    except KeyError:
        raise KeyError(f"no actor {key!r} on worker {worker.address} (released?)") from None


def _in_actor_thread(worker: Worker, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    thread_state.worker = worker  # get_worker() and get_client() work in a method
    return fn(*args, **kwargs)


def actor_handlers(worker: Worker) -> dict[str, Callable[..., Any]]:
    """The worker's rpc handlers for actors."""

    async def actor_execute(comm: Comm, actor: Key, function: str, args: Serialized) -> Serialized:
        method = getattr(_lookup(worker, actor), function)
        call_args, call_kwargs = deserialize(args)
        if inspect.iscoroutinefunction(method):
            result = await method(*call_args, **call_kwargs)
        else:
            loop = asyncio.get_running_loop()
            run = functools.partial(_in_actor_thread, worker, method, call_args, call_kwargs)
            result = await loop.run_in_executor(_executor(worker), run)
            if inspect.isawaitable(result):
                result = await result
        return serialize(result)

    def actor_attribute(comm: Comm, actor: Key, attribute: str) -> Serialized:
        return serialize(getattr(_lookup(worker, actor), attribute))

    return {WorkerActorExecute.rpc: actor_execute, WorkerActorAttribute.rpc: actor_attribute}


def drop_actor(worker: Worker, key: Key) -> None:
    """The actor's key was released here: the object goes too."""
    worker.actors.pop(key, None)


def shutdown_actors(worker: Worker) -> None:
    worker.actors.clear()
    executor = _executors.pop(worker, None)
    if executor is not None:
        executor.shutdown(wait=False, cancel_futures=True)
