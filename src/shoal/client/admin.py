"""The rest of dask's ``Client`` API: plugins and code shipping, ``run`` with dask's
options, cluster questions, events, metadata, versions and the default-client helpers.

``ClientAdmin`` is a mixin of ``Client``: its methods use the facade's plumbing
(``_running_core``, ``_run``, ``_ask_scheduler``) and, like every client method, block
on a synchronous client and return awaitables on an asynchronous one.

Rules of this file:

* What goes to the scheduler is pickled here; the scheduler keeps it opaque. Code for
  the scheduler itself is refused there unless it allows client code (its error says so).
* dask's keywords are consumed here, never forwarded to the user's function.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable, Coroutine, Generator, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from shoal._types import Address, Key
from shoal.client import data
from shoal.client.future import Future, futures_of
from shoal.client.modes import M, Maybe, Moded, by_mode, by_mode_returning
from shoal.plugins import (
    NannyPlugin,
    SchedulerPlugin,
    UploadFile,
    WorkerPlugin,
    plugin_name,
)
from shoal.protocol.rpc_base import Rpc
from shoal.protocol.rpc_scheduler import (
    SchedulerGetEvents,
    SchedulerGetLogs,
    SchedulerGetMetadata,
    SchedulerGetTaskStream,
    SchedulerGetWorkerPluginNames,
    SchedulerLogEvent,
    SchedulerNbytes,
    SchedulerNthreads,
    SchedulerProcessing,
    SchedulerRegisterNannyPlugin,
    SchedulerRegisterSchedulerPlugin,
    SchedulerRegisterWorkerPlugin,
    SchedulerReplicate,
    SchedulerRunOnScheduler,
    SchedulerSchedulerInfo,
    SchedulerSetMetadata,
    SchedulerSubscribeTopic,
    SchedulerUnregisterNannyPlugin,
    SchedulerUnregisterSchedulerPlugin,
    SchedulerUnregisterWorkerPlugin,
    SchedulerUnsubscribeTopic,
    SchedulerVersions,
)
from shoal.protocol.rpc_workers import (
    NannyRestart,
    NannyRun,
    WorkerCallStack,
    WorkerGetLogs,
    WorkerProfile,
    WorkerRun,
    WorkerVersions,
)
from shoal.protocol.serialize import Serialized, deserialize, serialize

if TYPE_CHECKING:
    from shoal.client.client import Client
    from shoal.client.core import ClientCore
    from shoal.client.executor import ClientExecutor

T = TypeVar("T")
#: the reply an rpc struct declares
R = TypeVar("R")
_NO_DEFAULT = object()
OnError = Literal["raise", "return", "ignore"]


class PluginSetupError(RuntimeError):
    """A plugin failed to set up on some workers; the message names them and why."""


class _CallbackPlugin(WorkerPlugin):
    """``register_worker_callbacks(setup)``: run ``setup`` (with ``dask_worker=``) on each
    worker, now and when a worker joins."""

    def __init__(self, setup: Callable[..., Any]) -> None:
        self.setup_function = setup
        self.name = f"worker-callback-{getattr(setup, '__name__', 'setup')}-{id(setup):x}"

    async def setup(self, worker: Any) -> None:
        import inspect

        func = self.setup_function
        try:
            wants_worker = "dask_worker" in inspect.signature(func).parameters
        except (TypeError, ValueError):
            wants_worker = False
        result = func(dask_worker=worker) if wants_worker else func()
        if inspect.isawaitable(result):
            await result


class ClientAdmin(Moded[M]):
    """Mixin of ``Client`` (see the module docstring)."""

    # provided by Client
    _running_core: Callable[[], ClientCore]
    if TYPE_CHECKING:

        def _run(self, coro: Coroutine[Any, Any, T]) -> Maybe[T]: ...
        def _ask_scheduler(self, rpc: Rpc[R]) -> Maybe[R]: ...

    status: str

    # -- plugins and code ------------------------------------------------------------------
    @by_mode_returning[dict[Address, Any] | str]()
    def register_plugin(
        self, /, plugin: Any, name: str | None = None, idempotent: bool | None = None
    ) -> Maybe[dict[Address, Any] | str]:
        """Register a ``WorkerPlugin`` (every worker, now and later), a ``NannyPlugin``
        (every nanny) or a ``SchedulerPlugin`` (refused unless the scheduler was started
        with ``--allow-client-code``); ``{worker: {"status": "OK"}}`` for worker plugins.
        ``idempotent=True``: do nothing when a plugin of that name is registered."""
        name = name or plugin_name(plugin)
        return self._run(self._register_plugin(plugin, name, bool(idempotent)))

    async def _register_plugin(self, plugin: Any, name: str, idempotent: bool) -> Any:
        core = self._running_core()
        call, scheduler = core.transport.call, core.transport.scheduler_address
        blob = serialize(plugin)
        if _is(plugin, SchedulerPlugin, "SchedulerPlugin"):
            return await call(scheduler, SchedulerRegisterSchedulerPlugin(plugin=blob, name=name))
        if _is(plugin, NannyPlugin, "NannyPlugin"):
            replies = await call(scheduler, SchedulerRegisterNannyPlugin(plugin=blob, name=name))
            return _checked(replies, name)
        if idempotent and name in await call(scheduler, SchedulerGetWorkerPluginNames()):
            return {}
        replies = await call(scheduler, SchedulerRegisterWorkerPlugin(plugin=blob, name=name))
        return _checked(replies, name)

    @by_mode_returning[dict[Address, Any] | str]()
    def register_worker_plugin(
        self, /, plugin: Any, name: str | None = None, **_: Any
    ) -> Maybe[dict[Address, Any] | str]:
        """dask's older name for ``register_plugin`` (worker or nanny plugins)."""
        return self.register_plugin(plugin, name)

    @by_mode_returning[dict[Address, Any] | str]()
    def register_scheduler_plugin(
        self, /, plugin: Any, name: str | None = None, **_: Any
    ) -> Maybe[dict[Address, Any] | str]:
        """dask's older name for ``register_plugin(SchedulerPlugin)``."""
        return self.register_plugin(plugin, name)

    @by_mode
    def unregister_worker_plugin(
        self, /, name: str, nanny: bool | None = None
    ) -> Maybe[dict[Address, Any]]:
        """Remove a worker plugin (``nanny=True``: a nanny plugin) from every worker (or
        nanny); its ``teardown`` runs there."""
        if nanny:
            return self._ask_scheduler(SchedulerUnregisterNannyPlugin(name=name))
        return self._ask_scheduler(SchedulerUnregisterWorkerPlugin(name=name))

    @by_mode_returning[dict[Address, Any] | str]()
    def register_worker_callbacks(
        self, /, setup: Callable[..., Any] | None = None
    ) -> Maybe[dict[Address, Any] | str]:
        """Run ``setup()`` (or ``setup(dask_worker=worker)``) on every worker, now and on
        each worker that joins later."""
        if setup is None:
            raise TypeError("register_worker_callbacks needs a setup function")
        return self.register_plugin(_CallbackPlugin(setup))

    @by_mode_returning[dict[Address, Any] | str]()
    def upload_file(
        self, /, filename: str | os.PathLike[str], load: bool = True
    ) -> Maybe[dict[Address, Any] | str]:
        """Send a ``.py``, ``.zip`` or ``.egg`` file to every worker (also those that join
        or restart later) and make it importable there at once."""
        path = Path(filename)
        if not path.is_file():
            raise FileNotFoundError(f"upload_file: no file {str(path)!r}")
        return self.register_plugin(UploadFile(path, load=load))

    @by_mode
    def run_on_scheduler(
        self, /, function: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Maybe[Any]:
        """Run ``function`` in the scheduler process (``dask_scheduler=`` gets the
        scheduler). Refused unless the scheduler was started with ``--allow-client-code``."""
        return self._run(self._run_on_scheduler(function, args, kwargs))

    async def _run_on_scheduler(self, function: Any, args: Any, kwargs: Any) -> Any:
        core = self._running_core()
        run = SchedulerRunOnScheduler(
            function=serialize(function), args=serialize(args), kwargs=serialize(kwargs)
        )
        reply = await core.transport.call(core.transport.scheduler_address, run)
        return deserialize(reply) if isinstance(reply, Serialized) else reply

    # -- run on workers ----------------------------------------------------------------------
    def _run_with_options(
        self,
        function: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        workers: str | Iterable[str] | None,
        wait: bool,
        nanny: bool,
        on_error: OnError,
    ) -> Maybe[dict[Address, Any] | None]:
        if on_error not in ("raise", "return", "ignore"):
            raise ValueError(f"on_error must be 'raise', 'return' or 'ignore', not {on_error!r}")
        targets = [workers] if isinstance(workers, str) else workers
        wanted = None if targets is None else list(targets)
        coro = _run_everywhere(
            self._running_core(), function, args, kwargs, wanted, nanny, on_error
        )
        if wait:
            return self._run(coro)
        core = self._running_core()
        assert core.loop is not None
        future = asyncio.run_coroutine_threadsafe(_quietly(coro), core.loop)
        del future  # wait=False: the calls go out; nobody waits for their results
        return self._done()

    def _done(self) -> Maybe[None]:
        if not self.asynchronous:
            return None
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    # -- cluster questions ---------------------------------------------------------------------
    @by_mode
    def wait_for_workers(self, /, n_workers: int = 0, timeout: float | None = None) -> Maybe[None]:
        """Return once at least ``n_workers`` workers are connected; ``TimeoutError`` naming
        how many joined when ``timeout`` seconds pass first."""
        if not isinstance(n_workers, int) or n_workers < 0:
            raise ValueError(f"n_workers must be an int >= 0, not {n_workers!r}")
        return self._run(self._wait_for_workers(n_workers, timeout))

    async def _wait_for_workers(self, n: int, timeout: float | None) -> None:
        core = self._running_core()
        deadline = None if timeout is None else time.monotonic() + float(timeout)
        while True:
            info = await core.transport.call(
                core.transport.scheduler_address, SchedulerSchedulerInfo()
            )
            running = [w for w in info["workers"].values() if w.get("status") == "running"]
            if len(running) >= n:
                return
            if deadline is not None and time.monotonic() > deadline:
                from shoal.errors import ShoalTimeoutError

                raise ShoalTimeoutError(
                    f"only {len(running)} of {n} workers joined "
                    f"{core.transport.scheduler_address} within {timeout}s"
                )
            await asyncio.sleep(0.05)

    @by_mode
    def ncores(self, /, workers: Any = None, **_: Any) -> Maybe[dict[Address, int]]:
        """``{worker address: threads}`` (dask's older name for ``nthreads``)."""
        return self._ask_scheduler(SchedulerNthreads())

    @by_mode
    def processing(
        self, /, workers: str | Iterable[str] | None = None
    ) -> Maybe[dict[Address, list[Key]]]:
        """``{worker address: [keys assigned to it]}``."""
        targets = [workers] if isinstance(workers, str) else workers
        wanted = None if targets is None else list(targets)
        return self._ask_scheduler(SchedulerProcessing(workers=wanted))

    @by_mode
    def nbytes(self, /, keys: Any = None, summary: bool = True, **_: Any) -> Maybe[dict[Key, int]]:
        """Bytes held per key (``summary=True``: per key prefix)."""
        wanted = None if keys is None else [getattr(k, "key", k) for k in keys]
        return self._ask_scheduler(SchedulerNbytes(keys=wanted, summary=summary))

    @by_mode
    def call_stack(self, /, futures: Any = None, keys: Any = None) -> Maybe[dict[Address, Any]]:
        """``{worker: {key: [stack lines]}}`` of the tasks running now (of ``futures`` or
        ``keys``, or all)."""
        wanted: list[Any] | None = None
        if futures is not None or keys is not None:
            wanted = [f.key for f in futures_of(futures or [])] + list(keys or [])
        return self._run(self._on_each_worker(WorkerCallStack(keys=wanted)))

    async def _on_each_worker(
        self, rpc: Rpc[R], workers: Sequence[str] | None = None
    ) -> dict[Address, R]:
        core = self._running_core()
        targets = await data.worker_addresses(core, workers)
        replies = await asyncio.gather(*(core.transport.call(w, rpc) for w in targets))
        return dict(zip(targets, replies, strict=True))

    @by_mode
    def profile(
        self,
        /,
        key: Any = None,
        start: float | None = None,
        stop: float | None = None,
        workers: Any = None,
        merge_workers: bool = True,
        plot: bool = False,
        filename: str | None = None,
        server: bool = False,
        scheduler: bool = False,
    ) -> Maybe[dict[str, Any]]:
        """The workers' sampling profile (dask's tree: ``count``, ``children``,
        ``description``), of the tasks with ``key``'s prefix (``"inc"``) or of all.
        Sampling starts at the first ask and runs ~2 minutes after the last. ``plot``,
        ``server`` and ``scheduler`` profiles are not offered: refused."""
        if plot or filename or server or scheduler:
            raise NotImplementedError(
                "profile(plot=/filename=/server=/scheduler=) is not offered by shoal; "
                "use performance_report(filename=...) for an HTML profile"
            )
        wanted = [workers] if isinstance(workers, str) else workers
        return self._run(self._profile(key, start, stop, wanted, merge_workers))

    async def _profile(
        self, key: Any, start: float | None, stop: float | None, workers: Any, merge_workers: bool
    ) -> Any:
        from shoal.worker.profile import merge

        trees = await self._on_each_worker(WorkerProfile(start=start, stop=stop, key=key), workers)
        return merge(*trees.values()) if merge_workers else trees

    @by_mode
    def get_task_stream(
        self,
        /,
        start: float | None = None,
        stop: float | None = None,
        count: int | None = None,
        plot: bool = False,
        filename: str = "task-stream.html",
        bokeh_resources: Any = None,
    ) -> Maybe[list[dict[str, Any]]]:
        """Finished tasks and transfers: dicts with ``key``, ``worker``, ``startstops``."""
        if plot:
            raise NotImplementedError("get_task_stream(plot=True) needs bokeh: not offered")
        return self._ask_scheduler(SchedulerGetTaskStream(start=start, stop=stop, count=count or 0))

    @by_mode
    def get_versions(
        self, /, check: bool = False, packages: Sequence[str] | None = None
    ) -> Maybe[dict[str, Any]]:
        """``{"client", "scheduler", "workers"}`` versions; ``check=True`` raises
        ``ValueError`` listing every package whose version differs from the client's."""
        return self._run(self._get_versions(check, list(packages or [])))

    async def _get_versions(self, check: bool, packages: list[str]) -> dict[str, Any]:
        from shoal.versions import get_versions, mismatches

        core = self._running_core()
        scheduler = await core.transport.call(core.transport.scheduler_address, SchedulerVersions())
        workers = await self._on_each_worker(WorkerVersions(packages=packages or None))
        result = {"client": get_versions(packages), "scheduler": scheduler, "workers": workers}
        if check:
            problems = mismatches(result)
            if problems:
                raise ValueError("mismatched versions:\n  " + "\n  ".join(problems))
        return result

    @by_mode
    def restart_workers(
        self, /, workers: list[str], timeout: float = 120, raise_for_error: bool = True
    ) -> Maybe[dict[str, str]]:
        """Restart the given workers through their nannies; ``{worker: "OK"}``. A worker
        without a nanny cannot be restarted: it raises (or is reported)."""
        return self._run(self._restart_workers(list(workers), timeout, raise_for_error))

    async def _restart_workers(
        self, workers: list[str], timeout: float, raise_for_error: bool
    ) -> dict[str, str]:
        core = self._running_core()
        info = await core.transport.call(core.transport.scheduler_address, SchedulerSchedulerInfo())
        targets = await data.worker_addresses(core, workers)
        out: dict[str, str] = {}
        calls = {}
        for address in targets:
            nanny = info["workers"][address].get("nanny")
            if nanny:
                calls[address] = core.transport.call(nanny, NannyRestart())
            else:
                out[address] = f"worker {address} has no nanny: it cannot be restarted"
        replies = await asyncio.wait_for(
            asyncio.gather(*calls.values(), return_exceptions=True), timeout
        )
        for address, reply in zip(calls, replies, strict=True):
            out[address] = "OK" if not isinstance(reply, BaseException) else repr(reply)
        failed = {w: r for w, r in out.items() if r != "OK"}
        if failed and raise_for_error:
            raise RuntimeError(f"could not restart workers: {failed}")
        return out

    # -- events and metadata -------------------------------------------------------------------
    @by_mode
    def log_event(self, /, topic: str | list[str], msg: Any) -> Maybe[None]:
        """Record ``msg`` (msgpack data: dicts, lists, strings, numbers) under ``topic``."""
        return self._ask_scheduler(SchedulerLogEvent(topic=topic, msg=msg))

    @by_mode_returning[tuple[tuple[float, Any], ...] | dict[str, tuple[tuple[float, Any], ...]]]()
    def get_events(
        self, /, topic: str | None = None
    ) -> Maybe[tuple[tuple[float, Any], ...] | dict[str, tuple[tuple[float, Any], ...]]]:
        """``[(time, msg), ...]`` of a topic (oldest first), or ``{topic: [...]}``."""
        return self._run(self._get_events(topic))

    async def _get_events(self, topic: str | None) -> Any:
        core = self._running_core()
        reply = await core.transport.call(
            core.transport.scheduler_address, SchedulerGetEvents(topic=topic)
        )
        if topic is not None:
            return tuple((t, _lists(msg)) for t, msg in reply)
        return {
            name: tuple((t, _lists(msg)) for t, msg in events) for name, events in reply.items()
        }

    @by_mode
    def set_metadata(self, /, key: str | list[str], value: Any) -> Maybe[None]:
        """Store ``value`` (msgpack data) in the scheduler under ``key`` (a list: a path)."""
        return self._ask_scheduler(SchedulerSetMetadata(keys=_path(key), value=value))

    @by_mode
    def get_metadata(self, /, key: str | list[str], default: Any = _NO_DEFAULT) -> Maybe[Any]:
        """The value stored under ``key``; ``KeyError`` when missing and no ``default``."""
        return self._run(self._get_metadata(_path(key), default))

    async def _get_metadata(self, keys: list[str], default: Any) -> Any:
        core = self._running_core()
        reply = await core.transport.call(
            core.transport.scheduler_address, SchedulerGetMetadata(keys=keys)
        )
        if reply["found"]:
            return _lists(reply["value"])
        if default is _NO_DEFAULT:
            raise KeyError(keys[0] if len(keys) == 1 else keys)
        return default

    @by_mode
    def subscribe_topic(self, /, topic: str, handler: Callable[[Any], Any]) -> Maybe[None]:
        """Call ``handler((time, msg))`` on this client's loop for each event logged to
        ``topic`` from now on (by any client, or by tasks through ``log_event``)."""
        core = self._running_core()
        core.topic_handlers[topic] = handler
        return self._ask_scheduler(SchedulerSubscribeTopic(topic=topic, client=core.id))

    @by_mode
    def unsubscribe_topic(self, /, topic: str) -> Maybe[None]:
        """Stop calling the handler of ``topic``."""
        core = self._running_core()
        core.topic_handlers.pop(topic, None)
        return self._ask_scheduler(SchedulerUnsubscribeTopic(topic=topic, client=core.id))

    @by_mode
    def replicate(
        self, /, futures: Any, n: int | None = None, workers: Any = None, branching_factor: int = 2
    ) -> Maybe[None]:
        """Copy the futures' data to ``n`` workers (of ``workers``; all by default) and
        return once they hold it. ``branching_factor`` has no effect: every new copy is
        fetched from the holders directly."""
        keys = [f.key for f in futures_of(futures)]
        targets = [workers] if isinstance(workers, str) else workers
        return self._run(self._replicate(keys, n, None if targets is None else list(targets)))

    async def _replicate(self, keys: list[Any], n: int | None, workers: Any) -> None:
        core = self._running_core()
        wanted = None if workers is None else await data.worker_addresses(core, workers)
        await core.transport.call(
            core.transport.scheduler_address, SchedulerReplicate(keys=keys, n=n, workers=wanted)
        )

    @by_mode
    def unregister_scheduler_plugin(self, /, name: str) -> Maybe[str]:
        """Remove a scheduler plugin (needs ``--allow-client-code``, like adding one)."""
        return self._ask_scheduler(SchedulerUnregisterSchedulerPlugin(name=name))

    def futures_of(self, futures: Any) -> list[Future]:
        """The futures inside ``futures`` (nested lists, dicts, dask collections)."""
        return futures_of(futures)

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop this client's core runs on."""
        return self._running_core().loop if self.status == "running" else None

    @by_mode
    def sync(
        self,
        /,
        func: Callable[..., Any],
        *args: Any,
        asynchronous: bool | None = None,
        callback_timeout: float | None = None,
        **kwargs: Any,
    ) -> Maybe[Any]:
        """Call the coroutine function ``func(*args, **kwargs)`` on the client's loop: its
        result on a synchronous client, the awaitable on an asynchronous one."""
        coro = func(*args, **kwargs)
        if self.asynchronous if asynchronous is None else asynchronous:
            return coro
        loop = self._running_core().loop
        assert loop is not None
        return asyncio.run_coroutine_threadsafe(coro, loop).result(callback_timeout)

    # -- default client, executor, files ---------------------------------------------------
    @contextlib.contextmanager
    def as_current(self) -> Generator[Any, None, None]:
        """Make this client the default one inside the ``with`` block."""
        from shoal.client import default
        from shoal.client.dask_config import use_as_dask_scheduler

        with default._lock:
            before = list(default._defaults)
        default.set_default_client(self)  # type: ignore[arg-type]
        try:
            yield self
        finally:
            with default._lock:
                default._defaults[:] = before
            use_as_dask_scheduler(before[-1] if before else None)

    @classmethod
    def current(cls, allow_global: bool = True) -> Client[Any]:
        """The default client (``ValueError`` if there is none)."""
        from shoal.client.default import default_client

        return default_client()

    def get_executor(self, **kwargs: Any) -> ClientExecutor:
        """A ``concurrent.futures.Executor`` running calls on the cluster; ``kwargs``
        (``workers``, ``retries``, ``resources``, ``pure``...) go to every ``submit``."""
        from shoal.client.executor import ClientExecutor

        return ClientExecutor(self, **kwargs)

    def write_scheduler_file(self, scheduler_file: str | os.PathLike[str]) -> None:
        """Write a scheduler file other clients can connect with (address and token,
        the token in a ``<file>.token`` file; both readable by the owner only)."""
        core = self._running_core()
        path = Path(scheduler_file)
        token = getattr(getattr(self, "_target", None), "security", None)
        token_value = getattr(token, "token", None)
        token_path = None
        if token_value:
            token_path = path.with_name(path.name + ".token")
            fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(token_value)
        info = {"address": core.transport.scheduler_address, "token_file": str(token_path or "")}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({k: v or None for k, v in info.items()}, f)

    @by_mode
    def dump_cluster_state(
        self,
        /,
        filename: str = "cluster_dump",
        write_from_scheduler: bool | None = None,
        exclude: Sequence[str] = (),
        format: Literal["msgpack", "yaml"] = "msgpack",
        **storage_options: Any,
    ) -> Maybe[str]:
        """Write the scheduler's and every worker's state (info, stories, logs) to
        ``filename`` + ``.msgpack.gz`` (or ``.yaml``) for offline debugging."""
        return self._run(self._dump_cluster_state(filename, exclude, format))

    async def _dump_cluster_state(self, filename: str, exclude: Sequence[str], fmt: str) -> str:
        from shoal.client.dump import write_dump

        core = self._running_core()
        call, scheduler = core.transport.call, core.transport.scheduler_address
        state = {
            "scheduler": await call(scheduler, SchedulerSchedulerInfo()),
            "scheduler_logs": await call(scheduler, SchedulerGetLogs()),
            "workers": await self._on_each_worker(WorkerGetLogs()),
            "versions": await self._get_versions(False, []),
        }
        for name in exclude:
            state.pop(name, None)
        return await asyncio.to_thread(write_dump, state, filename, fmt)


# -- helpers ---------------------------------------------------------------------------------


def _is(plugin: object, cls: type, name: str) -> bool:
    """An instance of shoal's class, or of dask's class of that name (same meaning)."""
    return isinstance(plugin, cls) or any(
        base.__name__ == name and base.__module__.startswith("distributed")
        for base in type(plugin).__mro__
    )


def _checked(replies: dict[Address, Any], name: str) -> dict[Address, Any]:
    failed = {w: r.get("text") for w, r in replies.items() if r.get("status") != "OK"}
    if failed:
        detail = "; ".join(f"{w}: {text}" for w, text in sorted(failed.items()))
        raise PluginSetupError(f"plugin {name!r} failed on {len(failed)} worker(s): {detail}")
    return replies


def _lists(value: Any) -> Any:
    """msgpack data as dask gives it back: sequences as lists (the wire makes tuples)."""
    if isinstance(value, tuple | list):
        return [_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    return value


def _path(key: str | list[str] | tuple[str, ...]) -> list[str]:
    keys = [key] if isinstance(key, str) else list(key)
    if not keys:
        raise ValueError("metadata needs a key (or a non-empty list of keys)")
    return keys


async def _quietly(coro: Any) -> None:
    import logging

    try:
        await coro
    except Exception:
        logging.getLogger("shoal.client").info("run(wait=False) failed", exc_info=True)


async def _run_everywhere(
    core: ClientCore,
    function: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    workers: Sequence[str] | None,
    nanny: bool,
    on_error: OnError,
) -> dict[Address, Any]:
    """``Client.run``: call the function on each worker (or its nanny)."""
    targets = await data.worker_addresses(core, workers)
    if nanny:
        info = await core.transport.call(core.transport.scheduler_address, SchedulerSchedulerInfo())
        where = {w: info["workers"][w].get("nanny") for w in targets}
        missing = [w for w, n in where.items() if not n]
        if missing:
            raise ValueError(f"run(nanny=True): workers without a nanny: {missing}")
    else:
        where = {w: w for w in targets}
    blobs = {"function": serialize(function), "args": serialize(args), "kwargs": serialize(kwargs)}
    rpc = NannyRun(**blobs) if nanny else WorkerRun(**blobs)
    replies = await asyncio.gather(
        *(core.transport.call(where[w], rpc) for w in targets), return_exceptions=True
    )
    out: dict[Address, Any] = {}
    for worker, reply in zip(targets, replies, strict=True):
        if isinstance(reply, BaseException):
            if on_error == "raise":
                raise reply
            if on_error == "return":
                out[worker] = reply
            continue
        out[worker] = deserialize(reply) if isinstance(reply, Serialized) else reply
    return out
