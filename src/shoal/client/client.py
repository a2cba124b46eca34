"""``Client``: the user's handle on a cluster. A thin facade over the asynchronous core.

A synchronous client (the default) keeps its core on the process's shared background
loop (``shoal.loop``) and every method blocks until the core answers. An asynchronous
client (``asynchronous=True``) keeps its core on the caller's loop and its methods
return awaitables; ``submit`` and ``map`` return futures right away in both modes.

Rules of this file:

* Work that needs no loop (naming keys, pickling run specs and scattered data) happens in
  the caller's thread; then one hop to the loop per call, whatever the number of tasks.
* Nothing here touches the key table or the stream directly: the core does.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import threading
import uuid
import weakref
from collections.abc import Callable, Coroutine, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from shoal._types import Address, Key
from shoal.client import collections as dask_collections
from shoal.client import data, signatures
from shoal.client.actor import actor_map, actor_submission
from shoal.client.admin import ClientAdmin
from shoal.client.connect import Target, close_cluster, resolve
from shoal.client.core import ClientCore
from shoal.client.default import set_default_client, unset_default_client
from shoal.client.future import Future, futures_of
from shoal.client.future_state import FutureState
from shoal.client.modes import Async, M, Maybe, Mode, Sync, by_mode, run_by_mode
from shoal.client.primitives.datasets import DatasetsMixin
from shoal.client.refs import KeyTable
from shoal.client.scatter_input import ScatterInput
from shoal.client.story import gather_story
from shoal.client.tasks import TaskBatch, TaskOptions, build_map, build_submit
from shoal.client.transport import CommTransport, Transport
from shoal.comm import Security
from shoal.config import CommConfig
from shoal.errors import CommClosedError, ShoalTimeoutError
from shoal.loop import run_sync
from shoal.protocol.rpc_base import Rpc
from shoal.protocol.rpc_scheduler import (
    SchedulerGetLogs,
    SchedulerHasWhat,
    SchedulerNthreads,
    SchedulerRestart,
    SchedulerRetireWorkers,
    SchedulerSchedulerInfo,
    SchedulerWhoHas,
)
from shoal.protocol.rpc_workers import WorkerGetLogs
from shoal.settings import client_settings
from shoal.sizes import format_bytes

if TYPE_CHECKING:
    from typing_extensions import Self

logger = logging.getLogger("shoal.client")
T = TypeVar("T")
#: the reply an rpc struct declares
R = TypeVar("R")

#: synchronous clients still open, closed at interpreter exit
_open_sync_clients: weakref.WeakSet[Client] = weakref.WeakSet()


@dataclass(slots=True)
class _Settings:
    address: Any
    scheduler_file: str | None
    security: Security | None
    timeout: float
    set_as_default: bool
    cluster_kwargs: dict[str, Any] = field(default_factory=dict)
    reconnect_timeout: float = 60.0


class Client(ClientAdmin[M], DatasetsMixin[M]):
    """Connect to a shoal cluster, submit work, and get results back.

    ``address`` is a scheduler address (``"tcp://host:8786"``), a cluster object such as
    a ``LocalCluster``, or None: then a ``LocalCluster(**cluster_kwargs)`` is started on
    127.0.0.1 with a random token and closed with the client. The cluster token is found
    without help (the cluster's, one registered in this process, or the token file
    ``shoal scheduler`` made); ``scheduler_file=`` names address and token, ``security=``
    overrides both. Connecting fails after ``timeout`` seconds with an error naming the
    address. With ``asynchronous=True``, ``await Client(...)`` (or ``async with``) and
    await its methods. A client is a context manager; it becomes the process's default
    client unless ``set_as_default=False``.
    """

    # the mode is in the type: Client() is a Client[Sync], Client(asynchronous=True) a
    # Client[Async] (shoal.client.modes)
    @overload
    def __init__(
        self: Client[Sync],
        address: Any = None,
        *,
        scheduler_file: str | None = None,
        security: Security | None = None,
        asynchronous: Literal[False] = False,
        timeout: float | None = None,
        set_as_default: bool = True,
        name: str | None = None,
        reconnect_timeout: float = 60.0,
        **cluster_kwargs: Any,
    ) -> None: ...
    @overload
    def __init__(
        self: Client[Async],
        address: Any = None,
        *,
        scheduler_file: str | None = None,
        security: Security | None = None,
        asynchronous: Literal[True],
        timeout: float | None = None,
        set_as_default: bool = True,
        name: str | None = None,
        reconnect_timeout: float = 60.0,
        **cluster_kwargs: Any,
    ) -> None: ...
    @overload
    def __init__(
        self: Client[Mode],
        address: Any = None,
        *,
        scheduler_file: str | None = None,
        security: Security | None = None,
        asynchronous: bool = False,
        timeout: float | None = None,
        set_as_default: bool = True,
        name: str | None = None,
        reconnect_timeout: float = 60.0,
        **cluster_kwargs: Any,
    ) -> None: ...
    def __init__(
        self,
        address: Any = None,
        *,
        scheduler_file: str | None = None,
        security: Security | None = None,
        asynchronous: bool = False,
        timeout: float | None = None,
        set_as_default: bool = True,
        name: str | None = None,
        reconnect_timeout: float = 60.0,
        **cluster_kwargs: Any,
    ) -> None:
        self.id = f"Client-{uuid.uuid4().hex[:16]}"
        self.name = name or self.id
        self.asynchronous = asynchronous
        #: "created" -> "connecting" -> "running" -> "closing" -> "closed"
        self.status = "created"
        if timeout is None:  # shoal.client.connect-timeout in dask.config (10s)
            timeout = client_settings()["timeout"]
        self._settings = _Settings(
            address, scheduler_file, security, float(timeout), set_as_default, cluster_kwargs
        )
        #: seconds to keep reconnecting to a lost scheduler (futures wait meanwhile); 0: off
        self._settings.reconnect_timeout = float(reconnect_timeout)
        self._core: ClientCore | None = None
        self._target: Target | None = None
        self._info: dict[str, Any] | None = None
        self._given_transport: Transport | None = None
        if not asynchronous:
            run_sync(self._start())

    @classmethod
    def _from_transport(
        cls, transport: Transport, *, asynchronous: bool = False, set_as_default: bool = False
    ) -> Client:
        """A client over a given transport (tests use a fake one); await it if asynchronous."""
        client = cls.__new__(cls)
        cls.__init__(client, asynchronous=True, set_as_default=set_as_default, reconnect_timeout=0)
        client.asynchronous = asynchronous
        client._given_transport = transport
        if not asynchronous:
            run_sync(client._start())
        return client

    # -- life ------------------------------------------------------------------------------------
    async def _start(self) -> Self:
        if self.status != "created":
            return self
        self.status = "connecting"
        settings = self._settings
        try:
            transport = await self._transport()
            core = ClientCore(transport, self.id, settings.reconnect_timeout)
            try:
                await asyncio.wait_for(core.start(), settings.timeout)
            except TimeoutError as exc:
                detail = f": {exc}" if str(exc) else ""
                raise ShoalTimeoutError(
                    f"could not connect to the scheduler at {transport.scheduler_address} "
                    f"within {settings.timeout}s{detail}"
                ) from None
        except BaseException:
            self.status = "closed"
            if self._target is not None and self._target.owns_cluster:
                await close_cluster(self._target.cluster)
            raise
        self._core = core
        self.status = "running"
        with contextlib.suppress(Exception):  # only for the repr: it must not fail a start
            await asyncio.wait_for(self._scheduler_info(), settings.timeout)
        if settings.set_as_default:
            set_default_client(self)
        if not self.asynchronous:
            _open_sync_clients.add(self)
        return self

    async def _transport(self) -> Transport:
        if self._given_transport is not None:
            return self._given_transport
        s = self._settings
        self._target = await resolve(s.address, s.scheduler_file, s.security, s.cluster_kwargs)
        config = CommConfig(connect_timeout=s.timeout)
        target = self._target
        return CommTransport(
            target.address, target.security, self.name, config, target.local_address
        )

    @by_mode
    def start(self, /, **kwargs: Any) -> Maybe[Client[Any]]:
        """Connect (an asynchronous client: await it); a started client is left as is."""
        return self._start() if self.asynchronous else self

    def __await__(self) -> Generator[Any, None, Self]:
        return self._start().__await__()

    async def __aenter__(self) -> Self:
        if not self.asynchronous:
            return self
        return await self._start()

    async def __aexit__(self, *exc: object) -> None:
        if self.asynchronous:
            await self._close()
        else:
            await asyncio.to_thread(self.close)

    def __enter__(self) -> Self:
        if self.asynchronous:
            raise TypeError("an asynchronous client is used with 'async with', not 'with'")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @by_mode
    def close(self, /, timeout: float | None = None) -> Maybe[None]:
        """Close the client (and the cluster it started). Pending futures are cancelled."""
        if self.asynchronous:
            return self._close()
        if self.status != "closed":
            run_sync(self._close(), timeout)
        return None

    @by_mode
    def shutdown(self) -> Maybe[None]:
        """Close the client and the cluster it is connected to (when it has the cluster)."""
        if self.asynchronous:
            return self._shutdown_async()
        cluster = self._target.cluster if self._target is not None else None
        owned = self._target is not None and self._target.owns_cluster
        self.close()
        if cluster is not None and not owned:
            result = cluster.close()
            if asyncio.iscoroutine(result):
                run_sync(result)
        elif cluster is None:
            logger.warning("shutdown(): %s has no cluster object; only the client closed", self)
        return None

    async def _shutdown_async(self) -> None:
        cluster = self._target.cluster if self._target is not None else None
        owned = self._target is not None and self._target.owns_cluster
        await self._close()
        if cluster is not None and not owned:
            result = cluster.close()
            if asyncio.iscoroutine(result):
                await result

    async def _close(self) -> None:
        if self.status in ("closing", "closed"):
            return
        self.status = "closing"
        unset_default_client(self)
        _open_sync_clients.discard(self)
        try:
            if self._core is not None:
                await self._core.close()
        finally:
            if self._target is not None and self._target.owns_cluster:
                await close_cluster(self._target.cluster)
            self.status = "closed"

    # -- plumbing --------------------------------------------------------------------------------
    def _running_core(self) -> ClientCore:
        core = self._core
        if core is None or self.status != "running":
            hint = " (await an asynchronous client first)" if self.status == "created" else ""
            raise CommClosedError(f"client {self.id} is {self.status}, not running{hint}")
        return core

    @property
    def _table(self) -> KeyTable:
        if self._core is None:
            raise CommClosedError(f"client {self.id} never connected")
        return self._core.table

    def _run(self, coro: Coroutine[Any, Any, T]) -> Maybe[T]:
        """An awaitable for an asynchronous client; the result, for a synchronous one."""
        if self.asynchronous:
            return coro
        return run_sync(coro)

    def _on_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """Call ``fn(*args)`` on the core's loop and return its result here."""
        core = self._running_core()
        if threading.get_ident() == core.loop_thread:
            return fn(*args)

        async def call() -> T:
            return fn(*args)

        assert core.loop is not None
        return asyncio.run_coroutine_threadsafe(call(), core.loop).result()

    def _submit(self, batch: TaskBatch) -> list[FutureState]:
        """The batch's futures; from the caller's thread without a loop round trip when
        its keys are all new (``ClientCore.submit_soon``)."""
        core = self._running_core()
        if threading.get_ident() != core.loop_thread:
            states = core.submit_soon(batch)
            if states is not None:
                return states
        return self._on_loop(core.submit, batch)

    def _done_awaitable(self) -> Maybe[None]:
        """What an asynchronous client returns from actions that completed already."""
        if not self.asynchronous:
            return None
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def _acquire(self, key: Key) -> FutureState:
        core = self._running_core()
        state, new = core.table.acquire(key)
        if new:
            assert core.loop is not None
            core.loop.call_soon_threadsafe(core.desire, [key])
        return state

    # -- tasks -------------------------------------------------------------------------------------
    def submit(
        self,
        func: Callable[..., Any],
        *args: Any,
        key: Key | None = None,
        workers: str | Iterable[str] | None = None,
        resources: Mapping[str, float] | None = None,
        retries: int | None = 0,
        priority: float = 0,
        fifo_timeout: Any = signatures.FIFO_TIMEOUT,
        allow_other_workers: bool = False,
        actor: bool = False,
        actors: bool = False,
        pure: bool = True,
        **kwargs: Any,
    ) -> Future:
        """Run ``func(*args, **kwargs)`` on a worker; a ``Future`` for its result.

        Futures among the arguments (also inside lists, tuples, sets and dicts) are
        replaced by their values on the worker. ``key`` names the task (default: the
        function's name and a hash of the call when ``pure``, else a random one); a live
        key submitted again with the same call reuses its result, with another call it
        is refused (``ValueError``). ``workers`` restricts where it runs (addresses or
        names), loosely if ``allow_other_workers``; ``retries`` reruns it on failure;
        higher ``priority`` runs first; ``resources`` such as ``{"GPU": 1}`` are held
        while it runs. An argument that cannot be pickled raises ``SerializationError``.
        ``actor=True`` (or ``actors=True``): ``func`` is a class; the object lives on one
        worker and the future's result is an ``Actor`` proxy (``shoal.client.actor``).
        ``fifo_timeout`` is accepted and has no effect (see ``shoal.client.signatures``).
        """
        if actor or actors:
            func, args, key = actor_submission(func, args, key)
            pure = False
        options = TaskOptions.make(workers, allow_other_workers, retries, priority, resources)
        batch = build_submit(func, args, kwargs, key=key, pure=pure, options=options)
        [state] = self._submit(batch)
        return Future._adopt(state, self)

    def map(
        self,
        func: Callable[..., Any],
        *iterables: Iterable[Any],
        key: str | Sequence[Key] | None = None,
        workers: str | Iterable[str] | None = None,
        retries: int | None = 0,
        resources: Mapping[str, float] | None = None,
        priority: float = 0,
        allow_other_workers: bool = False,
        fifo_timeout: Any = signatures.FIFO_TIMEOUT,
        actor: bool = False,
        actors: bool = False,
        pure: bool = True,
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> list[Future]:
        """``submit`` for each tuple of items of ``iterables``; a list of futures.

        The function is pickled once and all tasks go to the scheduler in one message.
        ``key`` is a prefix for the keys, or a list with one key per task; the other
        options are those of ``submit``, applied to every task; ``actors=True`` (or
        ``actor=True``) makes one actor per task. ``batch_size`` is accepted and has no
        effect: every task already goes in one message.
        """
        if actor or actors:
            func, iterables, key = actor_map(func, iterables, key)
            pure = False
        options = TaskOptions.make(workers, allow_other_workers, retries, priority, resources)
        batch = build_map(func, iterables, kwargs, key=key, pure=pure, options=options)
        if not batch.keys:
            return []
        states = self._submit(batch)
        return [Future._adopt(state, self) for state in states]

    @by_mode
    def cancel(
        self,
        /,
        futures: Any,
        asynchronous: bool | None = None,
        force: bool = False,
        reason: str | None = None,
        msg: str | None = None,
    ) -> Maybe[None]:
        """Cancel the futures in ``futures`` (``force``: even if other clients want them).
        ``reason``/``msg`` are accepted; the futures' reason stays "cancelled by the client"."""
        keys = [f.key for f in futures_of(futures)]
        if keys:
            self._on_loop(self._running_core().cancel, keys, force)
        return self._done_awaitable()

    @by_mode
    def retry(self, /, futures: Any) -> Maybe[None]:
        """Run the erred futures in ``futures`` again."""
        keys = [f.key for f in futures_of(futures)]
        if keys:
            self._on_loop(self._running_core().retry, keys)
        return self._done_awaitable()

    # -- dask collections (shoal.client.collections) -----------------------------------------------
    @by_mode
    def get(self, /, dsk: Any, keys: Any, **kwargs: Any) -> Maybe[Any]:
        """Run a dask graph (dict, ``HighLevelGraph`` or expression) and return the values
        of ``keys`` in their nesting: a drop-in dask scheduler, as in
        ``dask.compute(x, scheduler=client.get)``. Options: ``priority``, ``retries``,
        ``workers``, ``resources``, ``allow_other_workers`` (``dask.annotate`` wins)."""
        return dask_collections.get(self, dsk, keys, **kwargs)

    @by_mode
    def compute(
        self,
        /,
        collections: Any,
        sync: bool = False,
        optimize_graph: bool = True,
        workers: str | Iterable[str] | None = None,
        allow_other_workers: bool = False,
        resources: Mapping[str, float] | None = None,
        retries: int | None = 0,
        priority: float = 0,
        fifo_timeout: Any = signatures.FIFO_TIMEOUT,
        actors: Any = None,
        traverse: bool = True,
        **kwargs: Any,
    ) -> Maybe[Any]:
        """Start computing dask collections; a ``Future`` per collection (a list for a list).

        ``sync=True`` returns the values instead. On an asynchronous client the result is
        awaited: ``await client.compute(x)`` gives the value, as in dask. Options as for
        ``get``; ``fifo_timeout`` has no effect; other keywords are dask optimizer options."""
        options = signatures.collection_options(
            workers, allow_other_workers, resources, retries, priority, actors
        )
        result = dask_collections.compute(self, collections, optimize_graph, **options)
        return signatures.compute_result(self, result, sync)

    @by_mode
    def persist(
        self,
        /,
        collections: Any,
        optimize_graph: bool = True,
        workers: str | Iterable[str] | None = None,
        allow_other_workers: bool | None = None,
        resources: Mapping[str, float] | None = None,
        retries: int | None = None,
        priority: float = 0,
        fifo_timeout: Any = signatures.FIFO_TIMEOUT,
        actors: Any = None,
        **kwargs: Any,
    ) -> Maybe[Any]:
        """Start computing dask collections; the same collections, backed by futures.

        ``dask.persist`` delegates here when this client is the scheduler. Options as for
        ``get``; ``fifo_timeout`` has no effect; other keywords are dask optimizer options."""
        options = signatures.collection_options(
            workers, allow_other_workers, resources, retries, priority, actors
        )
        return dask_collections.persist(self, collections, optimize_graph, **options)

    # -- data ------------------------------------------------------------------------------------
    @by_mode
    def gather(
        self,
        /,
        futures: Any,
        errors: Literal["raise", "skip"] = "raise",
        direct: bool | None = None,
        asynchronous: bool | None = None,
    ) -> Maybe[Any]:
        """``futures`` (a future, or lists, tuples, sets and dicts of them) with values.

        Values come straight from the workers holding them (``direct`` has no effect: it
        is always direct). A failed task raises its exception (``errors="raise"``) or is
        left out (``errors="skip"``). ``asynchronous=True`` returns an awaitable.
        """
        coro = data.gather(self._running_core(), futures, errors)
        return coro if asynchronous and self.asynchronous else self._run(coro)

    @by_mode
    def scatter(
        self,
        /,
        data: Any,
        workers: str | Iterable[str] | None = None,
        broadcast: bool = False,
        direct: bool | None = None,
        hash: bool = True,
        timeout: Any = None,
        asynchronous: bool | None = None,
    ) -> Maybe[Any]:
        """Put local data on workers; futures in the same shape (an object, list or dict).

        A dict's keys become the keys; otherwise keys are the type name and a hash of the
        value (``hash=False``: a random suffix). Values go round-robin to ``workers`` (all
        by default), or to each of them with ``broadcast=True``. ``direct`` has no effect
        (data always goes straight to workers); ``timeout`` (seconds) bounds the call.
        """
        scattered = ScatterInput.make(data, hash)  # pickled here, off the loop
        targets = [workers] if isinstance(workers, str) else workers
        coro = self._scatter(scattered, None if targets is None else list(targets), broadcast)
        seconds = signatures.seconds_or_none(timeout)
        return self._run(coro if seconds is None else asyncio.wait_for(coro, seconds))

    async def _scatter(
        self, scattered: ScatterInput, workers: list[str] | None, broadcast: bool
    ) -> Any:
        core = self._running_core()
        states = await data.scatter(
            core, scattered.keys, scattered.blobs, scattered.tokens, workers, broadcast
        )
        return scattered.rebuild([Future._adopt(state, self) for state in states])

    @run_by_mode
    def run(
        self,
        /,
        function: Callable[..., Any],
        *args: Any,
        workers: str | Iterable[str] | None = None,
        wait: bool = True,
        nanny: bool = False,
        on_error: Literal["raise", "return", "ignore"] = "raise",
        **kwargs: Any,
    ) -> Maybe[dict[Address, Any] | None]:
        """Run ``function(*args, **kwargs)`` on every worker (or ``workers``), now, outside
        the task graph; ``{worker address: result}``. A function with a ``dask_worker``
        parameter gets the worker; an ``async def`` one is awaited on the worker's loop.
        ``wait=False`` returns None at once; ``nanny=True`` runs it in the nannies; a
        failure raises (``on_error="raise"``), is returned as the value ("return") or
        is left out ("ignore")."""
        return self._run_with_options(function, args, kwargs, workers, wait, nanny, on_error)

    # -- questions for the scheduler ---------------------------------------------------------------
    def _ask_scheduler(self, rpc: Rpc[R]) -> Maybe[R]:
        core = self._running_core()
        return self._run(core.transport.call(core.transport.scheduler_address, rpc))

    @by_mode
    def who_has(self, /, futures: Any = None) -> Maybe[dict[Key, tuple[Address, ...]]]:
        """``{key: (worker addresses)}`` for the futures given (all keys by default)."""
        keys = None if futures is None else [f.key for f in futures_of(futures)]
        return self._ask_scheduler(SchedulerWhoHas(keys=keys))

    @by_mode
    def has_what(
        self, /, workers: str | Iterable[Address] | None = None
    ) -> Maybe[dict[Address, list[Key]]]:
        """``{worker address: [keys]}`` for the workers given (all by default)."""
        targets = [workers] if isinstance(workers, str) else workers
        wanted = None if targets is None else list(targets)
        return self._ask_scheduler(SchedulerHasWhat(workers=wanted))

    @by_mode
    def nthreads(self) -> Maybe[dict[Address, int]]:
        """``{worker address: number of threads}``."""
        return self._ask_scheduler(SchedulerNthreads())

    @by_mode
    def restart(
        self, /, timeout: Any = 120.0, wait_for_workers: bool = True
    ) -> Maybe[dict[str, int]]:
        """Restart every worker through its nanny and clear the cluster's tasks; pending
        futures raise ``CancelledError`` saying the cluster was restarted. With
        ``wait_for_workers`` (the default) it returns once as many workers are back."""
        return self._run(self._restart(signatures.seconds(timeout, 120.0), wait_for_workers))

    async def _restart(self, timeout: float, wait_for_workers: bool) -> dict[str, int]:
        core = self._running_core()
        before = len((await self._scheduler_info())["workers"])
        call = core.transport.call(core.transport.scheduler_address, SchedulerRestart())
        result = await asyncio.wait_for(call, timeout)
        if wait_for_workers:
            await self._wait_for_workers(before, timeout)
        return result

    @by_mode
    def retire_workers(
        self,
        /,
        workers: Iterable[str] | None = None,
        close_workers: bool = True,
        timeout: float = 120.0,
        **kwargs: Any,
    ) -> Maybe[dict[str, list[str]]]:
        """Retire ``workers`` (addresses) gracefully: they get no new tasks, every result
        only they hold is copied to another worker, then they close (with their nannies).
        Returns ``{"retired": [...], "refused": [...]}`` once they are gone; a worker is
        refused when it is unknown or no other running worker could keep its data.
        ``close_workers=False`` is refused: a retired shoal worker always closes."""
        if workers is None or not close_workers or kwargs:
            signatures.refuse_retire_options(workers, close_workers, kwargs)
        assert workers is not None
        return self._run(self._retire_workers(list(workers), timeout))

    async def _retire_workers(self, workers: list[str], timeout: float) -> dict[str, list[str]]:
        core = self._running_core()
        retire = SchedulerRetireWorkers(workers=workers, timeout=timeout)
        call = core.transport.call(core.transport.scheduler_address, retire)
        result = await asyncio.wait_for(call, timeout + 10)
        return {name: list(addresses) for name, addresses in result.items()}

    @by_mode
    def scheduler_info(self) -> Maybe[dict[str, Any]]:
        """The scheduler's address and id, and each worker's name, threads, memory, status."""
        return self._run(self._scheduler_info())

    async def _scheduler_info(self) -> dict[str, Any]:
        core = self._running_core()
        info = await core.transport.call(core.transport.scheduler_address, SchedulerSchedulerInfo())
        self._info = info
        return info

    @by_mode
    def story(self, /, *keys: Any) -> Maybe[list[tuple[Any, ...]]]:
        """What happened to these keys (or futures), on the scheduler and on every worker:
        records ``(*record, where)`` sorted by time, where ``record[-2]`` is the stimulus id,
        ``record[-1]`` the timestamp, and ``where`` "scheduler" or a worker address."""
        wanted = [k.key if isinstance(k, Future) else k for k in keys]
        return self._run(gather_story(self._running_core().transport, wanted))

    # -- description -------------------------------------------------------------------------------
    @property
    def scheduler_address(self) -> str | None:
        """The address of the scheduler (None before connecting)."""
        core = self._core
        return core.transport.scheduler_address if core is not None else None

    @property
    def cluster(self) -> Any:
        """The cluster object given or started, if any."""
        return self._target.cluster if self._target is not None else None

    @property
    def dashboard_link(self) -> str | None:
        """The dashboard's address (None: no dashboard).

        For a cluster started in this process (``Client()``, a ``LocalCluster``) the link
        carries the token, so opening it logs the browser in, as a notebook server's
        start-up link does. For a remote cluster it stays bare: the page it opens asks
        for the token.
        """
        login = getattr(self.cluster, "dashboard_login_link", None)
        if isinstance(login, str):
            return login
        core = self._core
        link = core.scheduler_reply.get("dashboard") if core is not None else None
        return link if isinstance(link, str) else getattr(self.cluster, "dashboard_link", None)

    # -- logs --------------------------------------------------------------------------------------
    @by_mode
    def get_scheduler_logs(self, /, n: int | None = None) -> Maybe[list[tuple[Any, ...]]]:
        """The scheduler's latest log records (all kept, or the last ``n``), oldest first:
        ``[(time, level, component, message), ...]``."""
        return self._run(self._get_logs(None, n, None))

    @by_mode
    def get_worker_logs(
        self, /, n: int | None = None, workers: str | Iterable[Address] | None = None
    ) -> Maybe[dict[Address, list[tuple[Any, ...]]]]:
        """``{worker address: [(time, level, component, message), ...]}``, oldest first,
        from every worker (or ``workers``); the last ``n`` of each (default 1000)."""
        targets = [workers] if isinstance(workers, str) else workers
        return self._run(self._get_logs("workers", n, None if targets is None else list(targets)))

    async def _get_logs(self, where: str | None, n: int | None, workers: list[str] | None) -> Any:
        core = self._running_core()
        call, scheduler = core.transport.call, core.transport.scheduler_address
        if where is None:
            records = await call(scheduler, SchedulerGetLogs(n=n))
            return [tuple(r) for r in records]
        rpc = WorkerGetLogs() if n is None else WorkerGetLogs(n=n)
        targets = await data.worker_addresses(core, workers)
        replies = await asyncio.gather(*(call(w, rpc) for w in targets))
        return {w: [tuple(r) for r in records] for w, records in zip(targets, replies, strict=True)}

    def __repr__(self) -> str:
        address = self.scheduler_address
        if self.status != "running":
            return f"<Client: {address!r} {self.status}>"
        # no network here: what the last scheduler_info() (or connecting) told us
        workers = (self._info or {}).get("workers", {})
        threads = sum(int(w.get("nthreads") or 0) for w in workers.values())
        memory = sum(int(w.get("memory_limit") or 0) for w in workers.values())
        return (
            f"<Client: {address!r} processes={len(workers)} threads={threads}, "
            f"memory={format_bytes(memory)}"
            + (f", dashboard: {self.dashboard_link}>" if self.dashboard_link else ">")
        )


@atexit.register
def _close_clients_at_exit() -> None:
    for client in list(_open_sync_clients):
        try:
            client.close(timeout=5)
        except Exception:  # exiting anyway
            logger.debug("could not close %s at exit", client.id, exc_info=True)
