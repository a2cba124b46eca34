"""``Actor`` and ``ActorFuture``: a stateful object living on one worker, called directly.

``client.submit(Cls, *args, actor=True)`` makes the object on a worker (which keeps it in
``worker.actors``, never spilled); the future's result is an ``Actor`` proxy. A method
call on the proxy is one rpc to that worker (not through the scheduler) and returns an
``ActorFuture``; reading an attribute returns its value (an awaitable, with an
asynchronous client), as in dask.

Rules of this file:

* A proxy holds a future for its key while it lives in a client process, so the actor
  lives as long as someone holds a proxy or a future; inside a task it holds none.
* The client a proxy calls through is found at call time: the worker's client inside a
  task, the client it was bound to, or the default client.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from collections.abc import Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any

from shoal._types import Key
from shoal.protocol.rpc_base import Rpc
from shoal.protocol.rpc_workers import WorkerActorAttribute, WorkerActorExecute
from shoal.protocol.serialize import Serialized, deserialize, serialize

if TYPE_CHECKING:
    from shoal.client.client import Client
    from shoal.client.future import Future


class ActorFuture:
    """The pending result of an actor's method call: ``result(timeout=None)``, ``done()``,
    or ``await`` it (asynchronous client)."""

    def __init__(self, future: concurrent.futures.Future[Any] | asyncio.Future[Any]) -> None:
        self._future = future

    def result(self, timeout: float | None = None) -> Any:
        """The method's return value (its exception is raised here)."""
        if isinstance(self._future, asyncio.Future):
            raise TypeError("an ActorFuture of an asynchronous client is awaited, not .result()")
        return self._future.result(timeout)

    def done(self) -> bool:
        return self._future.done()

    def __await__(self) -> Generator[Any, None, Any]:
        if isinstance(self._future, asyncio.Future):
            return self._future.__await__()
        return asyncio.wrap_future(self._future).__await__()

    def __repr__(self) -> str:
        return f"<ActorFuture: {'done' if self.done() else 'pending'}>"


class Actor:
    """A proxy for an object of class ``cls`` living on the worker ``address``."""

    def __init__(
        self,
        cls: type,
        address: str,
        key: Key,
        client: Client | None = None,
        future: Future | None = None,
    ) -> None:
        self._cls = cls
        self._address = address
        self._key = key
        self._client = client
        #: keeps the actor's key (so the actor) alive while this proxy lives
        self._future = future

    @property
    def key(self) -> Key:
        return self._key

    @property
    def worker(self) -> str:
        """The address of the worker the actor lives on."""
        return self._address

    def _resolved_client(self) -> Client:
        from shoal.client.primitives.calls import resolve_client
        from shoal.worker.execute import thread_state

        if getattr(thread_state, "worker", None) is not None:
            return resolve_client(None)
        return resolve_client(self._client)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        attr = getattr(self._cls, name, None)
        if callable(attr):
            return self._method(name)
        client = self._resolved_client()
        attribute = WorkerActorAttribute(actor=self._key, attribute=name)
        return client._run(self._call(client, attribute))

    def _method(self, name: str) -> Callable[..., ActorFuture]:
        def call(*args: Any, **kwargs: Any) -> ActorFuture:
            client = self._resolved_client()
            execute = WorkerActorExecute(
                actor=self._key, function=name, args=serialize((args, kwargs))
            )
            coro = self._call(client, execute)
            core = client._running_core()
            if client.asynchronous:
                return ActorFuture(asyncio.ensure_future(coro))
            assert core.loop is not None
            return ActorFuture(asyncio.run_coroutine_threadsafe(coro, core.loop))

        call.__name__ = name
        return call

    async def _call(self, client: Client, rpc: Rpc[Serialized]) -> Any:
        core = client._running_core()
        return deserialize(await core.transport.call(self._address, rpc))

    def __dir__(self) -> Iterable[str]:
        return sorted(set(dir(type(self))) | {n for n in dir(self._cls) if not n.startswith("_")})

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_actor, (self._cls, self._address, self._key))

    def __repr__(self) -> str:
        return f"<Actor: {self._cls.__name__}, key={self._key}>"


def _rebuild_actor(cls: type, address: str, key: Key) -> Actor:
    """An unpickled proxy: in a client process it holds a future for its key."""
    from shoal.client.default import get_client
    from shoal.client.future import Future
    from shoal.worker.execute import thread_state

    if getattr(thread_state, "worker", None) is not None:
        return Actor(cls, address, key)  # inside a task: the worker's client, no reference
    try:
        client = get_client()
    except ValueError:  # no client here (yet): found when first called
        return Actor(cls, address, key)
    return Actor(cls, address, key, client, Future(key, client))


def actor_submission(
    cls: Callable[..., Any], args: tuple[Any, ...], key: Key | None
) -> tuple[Callable[..., Any], tuple[Any, ...], Key]:
    """What ``submit(cls, *args, actor=True)`` submits: a task making the object."""
    from shoal.worker.actors import create_actor

    return create_actor, (cls, *args), key or _actor_key(cls)


def actor_map(
    cls: Callable[..., Any], iterables: tuple[Iterable[Any], ...], key: Any
) -> tuple[Callable[..., Any], tuple[list[Any], ...], Any]:
    """What ``map(cls, ..., actors=True)`` submits: one actor per tuple of items."""
    from shoal.worker.actors import create_actor

    columns = [list(it) for it in iterables]
    n = min((len(c) for c in columns), default=0)
    keys = key if isinstance(key, list | tuple) else [_actor_key(cls, key) for _ in range(n)]
    return create_actor, ([cls] * n, *columns), list(keys)


def _actor_key(cls: Any, prefix: str | None = None) -> str:
    return f"{prefix or getattr(cls, '__name__', 'actor')}-{uuid.uuid4().hex}"
