"""The scheduler's side of the client API beyond tasks: worker plugins kept as bytes,
events, metadata, questions (processing, nbytes, task stream, versions), and the
client-code gate.

Rules of this file:

* The scheduler never unpickles what a client sends, unless it was started with
  ``allow_client_code`` (``--allow-client-code``): worker plugins stay opaque bytes,
  handed to every worker, now and at registration. Refusals say why and name the flag.
* Events and metadata are msgpack data (dicts, lists, strings, numbers), stored as is.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from shoal._types import Address, Key
from shoal.plugins import call_hook, plugin_name
from shoal.protocol import ops, rpc_scheduler
from shoal.protocol.rpc_base import Rpc
from shoal.protocol.rpc_workers import (
    NannyPluginAdd,
    NannyPluginRemove,
    WorkerPluginAdd,
    WorkerPluginRemove,
)
from shoal.protocol.serialize import Serialized, deserialize, serialize
from shoal.stimulus import new_stimulus_id

if TYPE_CHECKING:
    from shoal.scheduler.server import Scheduler

logger = logging.getLogger("shoal.scheduler")

#: events kept per topic
EVENTS_PER_TOPIC = 10_000

CLIENT_CODE_REFUSED = (
    "this scheduler does not run code sent by clients ({what}): that would let any "
    "client with the token run arbitrary code in the scheduler process. Load scheduler "
    "code by import path with `shoal scheduler --preload module` (its "
    "shoal_setup(scheduler) may call scheduler.add_plugin), or start the scheduler with "
    "--allow-client-code (Scheduler(allow_client_code=True)) to allow this"
)


class ClientCodeRefused(PermissionError):
    """A client asked the scheduler to run its code without ``--allow-client-code``."""


class SchedulerExtras:
    """Plugins, events and metadata of one scheduler; ``handlers()`` joins its rpc table."""

    def __init__(self, scheduler: Scheduler, allow_client_code: bool = False) -> None:
        self.scheduler = scheduler
        self.allow_client_code = allow_client_code
        #: worker plugins by name, pickled by the client; never unpickled here
        self.worker_plugins: dict[str, Serialized] = {}
        #: worker plugins unregistered here (not adopted again from a rejoining worker)
        self._unregistered: set[str] = set()
        #: nanny plugins by name, likewise; and which nannies were sent which of them
        self.nanny_plugins: dict[str, Serialized] = {}
        self._nanny_has: defaultdict[Address, set[str]] = defaultdict(set)
        #: scheduler plugins by name (preloaded, or sent with allow_client_code)
        self.plugins: dict[str, Any] = {}
        self.events: defaultdict[str, deque[tuple[float, Any]]] = defaultdict(
            lambda: deque(maxlen=EVENTS_PER_TOPIC)
        )
        self.metadata: dict[str, Any] = {}
        #: topic -> ids of the clients that subscribed to it
        self.subscribers: defaultdict[str, set[str]] = defaultdict(set)
        #: when the scheduler started (``scheduler_info()["started"]``)
        self.started = time.time()

    def handlers(self) -> dict[str, Callable[..., Any]]:
        return {
            rpc_scheduler.SchedulerRegisterWorkerPlugin.rpc: self.register_worker_plugin,
            rpc_scheduler.SchedulerUnregisterWorkerPlugin.rpc: self.unregister_worker_plugin,
            rpc_scheduler.SchedulerGetWorkerPluginNames.rpc: self.get_worker_plugin_names,
            rpc_scheduler.SchedulerRegisterNannyPlugin.rpc: self.register_nanny_plugin,
            rpc_scheduler.SchedulerUnregisterNannyPlugin.rpc: self.unregister_nanny_plugin,
            rpc_scheduler.SchedulerRegisterSchedulerPlugin.rpc: self.register_scheduler_plugin,
            rpc_scheduler.SchedulerRunOnScheduler.rpc: self.run_on_scheduler,
            rpc_scheduler.SchedulerLogEvent.rpc: self.log_event,
            rpc_scheduler.SchedulerGetEvents.rpc: self.get_events,
            rpc_scheduler.SchedulerSetMetadata.rpc: self.set_metadata,
            rpc_scheduler.SchedulerGetMetadata.rpc: self.get_metadata,
            rpc_scheduler.SchedulerProcessing.rpc: self.processing,
            rpc_scheduler.SchedulerNbytes.rpc: self.nbytes,
            rpc_scheduler.SchedulerGetTaskStream.rpc: self.get_task_stream,
            rpc_scheduler.SchedulerVersions.rpc: self.versions,
            rpc_scheduler.SchedulerReplicate.rpc: self.replicate,
            rpc_scheduler.SchedulerUnregisterSchedulerPlugin.rpc: self.unregister_scheduler_plugin,
            rpc_scheduler.SchedulerSubscribeTopic.rpc: self.subscribe_topic,
            rpc_scheduler.SchedulerUnsubscribeTopic.rpc: self.unsubscribe_topic,
        }

    def registration_reply(self) -> dict[str, Any]:
        """What a registering worker gets besides OK: the worker plugins."""
        return {"worker_plugins": dict(self.worker_plugins)}

    # -- worker and nanny plugins ------------------------------------------------------------
    def adopt_worker_plugins(self, worker: Address, plugins: Mapping[str, Serialized]) -> None:
        """A registering worker's plugins that we do not know (we restarted since they
        were registered): keep them, so that workers joining later get them too."""
        for name, plugin in plugins.items():
            if name not in self.worker_plugins and name not in self._unregistered:
                logger.info("worker plugin %r learnt again from worker %s", name, worker)
                self.worker_plugins[name] = plugin

    async def _to_workers(
        self, rpc: Rpc[Any], workers: Iterable[Address] | None = None
    ) -> dict[Address, Any]:
        targets = list(workers) if workers is not None else list(self.scheduler.worker_streams)
        pool = self.scheduler.pool
        replies = await asyncio.gather(
            *(pool.call(w, rpc) for w in targets), return_exceptions=True
        )
        out: dict[Address, Any] = {}
        for worker, reply in zip(targets, replies, strict=True):
            if isinstance(reply, BaseException):
                out[worker] = {"status": "error", "text": f"{type(reply).__name__}: {reply}"}
            else:
                out[worker] = reply
        return out

    async def register_worker_plugin(
        self, comm: Any, plugin: Serialized, name: str
    ) -> dict[Address, Any]:
        self.worker_plugins[name] = plugin
        self._unregistered.discard(name)
        return await self._to_workers(WorkerPluginAdd(plugin=plugin, name=name))

    def get_worker_plugin_names(self, comm: Any) -> list[str]:
        return list(self.worker_plugins)

    async def unregister_worker_plugin(self, comm: Any, name: str) -> dict[Address, Any]:
        if self.worker_plugins.pop(name, None) is None:
            raise ValueError(f"no worker plugin named {name!r} is registered")
        self._unregistered.add(name)  # a worker away meanwhile must not bring it back
        return await self._to_workers(WorkerPluginRemove(name=name))

    def _nannies(self) -> list[Address]:
        return [w.nanny for w in self.scheduler.state.workers.values() if w.nanny]

    async def register_nanny_plugin(
        self, comm: Any, plugin: Serialized, name: str
    ) -> dict[Address, Any]:
        self.nanny_plugins[name] = plugin
        nannies = self._nannies()
        for nanny in nannies:
            self._nanny_has[nanny].add(name)
        return await self._to_workers(NannyPluginAdd(plugin=plugin, name=name), nannies)

    async def unregister_nanny_plugin(self, comm: Any, name: str) -> dict[Address, Any]:
        if self.nanny_plugins.pop(name, None) is None:
            raise ValueError(f"no nanny plugin named {name!r} is registered")
        for names in self._nanny_has.values():
            names.discard(name)
        return await self._to_workers(NannyPluginRemove(name=name), self._nannies())

    def worker_registered(self, nanny: Address | None) -> None:
        """A worker registered: a nanny that joined after a nanny plugin was registered
        gets it now (once: its later workers re-register without a second setup)."""
        if nanny is None:
            return
        missing = {n: p for n, p in self.nanny_plugins.items() if n not in self._nanny_has[nanny]}
        if missing:
            self._nanny_has[nanny].update(missing)
            self.scheduler.background(self._add_nanny_plugins(nanny, missing), "nanny-plugins")

    async def _add_nanny_plugins(self, nanny: Address, plugins: dict[str, Serialized]) -> None:
        pool = self.scheduler.pool
        for name, plugin in plugins.items():
            try:
                reply = await pool.call(nanny, NannyPluginAdd(plugin=plugin, name=name))
            except Exception as exc:  # the nanny went away: nothing to set up there
                reply = {"status": "error", "text": f"{type(exc).__name__}: {exc}"}
            if reply.get("status") != "OK":
                logger.warning("nanny plugin %r failed on %s: %s", name, nanny, reply.get("text"))

    # -- scheduler code --------------------------------------------------------------------
    def _check_client_code(self, what: str) -> None:
        if not self.allow_client_code:
            raise ClientCodeRefused(CLIENT_CODE_REFUSED.format(what=what))

    async def add_plugin(self, plugin: Any, name: str | None = None) -> None:
        """Add a scheduler plugin (from a preload module, or an allowed client)."""
        name = name or plugin_name(plugin)
        self.plugins[name] = plugin
        await call_hook(plugin, "start", self.scheduler)

    async def register_scheduler_plugin(self, comm: Any, plugin: Serialized, name: str) -> str:
        self._check_client_code("register_plugin(SchedulerPlugin)")
        await self.add_plugin(deserialize(plugin), name)
        return "OK"

    async def run_on_scheduler(
        self, comm: Any, function: Serialized, args: Serialized, kwargs: Serialized
    ) -> Serialized:
        self._check_client_code("Client.run_on_scheduler")
        func = deserialize(function)
        call_kwargs = dict(deserialize(kwargs))
        try:
            accepts = "dask_scheduler" in inspect.signature(func).parameters
        except (TypeError, ValueError):
            accepts = False
        if accepts:
            call_kwargs["dask_scheduler"] = self.scheduler
        result = func(*deserialize(args), **call_kwargs)
        if inspect.isawaitable(result):
            result = await result
        return serialize(result)

    async def unregister_scheduler_plugin(self, comm: Any, name: str) -> str:
        self._check_client_code("Client.unregister_scheduler_plugin")
        plugin = self.plugins.pop(name, None)
        if plugin is None:
            raise ValueError(f"no scheduler plugin named {name!r}")
        await call_hook(plugin, "close")
        return "OK"

    async def close(self) -> None:
        for name, plugin in list(self.plugins.items()):
            try:
                await call_hook(plugin, "close")
            except Exception:
                logger.exception("scheduler plugin %r failed in close", name)

    # -- events and metadata -------------------------------------------------------------
    def log_event(self, comm: Any, topic: str | list[str], msg: Any) -> None:
        now = time.time()
        for name in [topic] if isinstance(topic, str) else topic:
            self.events[name].append((now, msg))
            for client in list(self.subscribers.get(name, ())):
                stream = self.scheduler.client_streams.get(client)
                if stream is None or stream.closed:
                    self.subscribers[name].discard(client)
                else:
                    stream.send(ops.to_msg(ops.TopicEvent(topic=name, event=(now, msg))))

    def subscribe_topic(self, comm: Any, topic: str, client: str) -> None:
        self.subscribers[topic].add(client)

    def unsubscribe_topic(self, comm: Any, topic: str, client: str) -> None:
        self.subscribers[topic].discard(client)

    def get_events(self, comm: Any, topic: str | None = None) -> Any:
        if topic is not None:
            return [list(e) for e in self.events.get(topic, ())]
        return {name: [list(e) for e in events] for name, events in self.events.items()}

    def set_metadata(self, comm: Any, keys: list[str], value: Any) -> None:
        node = self.metadata
        for key in keys[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        node[keys[-1]] = value

    def get_metadata(self, comm: Any, keys: list[str], default: Any = None) -> Any:
        node: Any = self.metadata
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                return {"found": False, "value": default}
            node = node[key]
        return {"found": True, "value": node}

    # -- questions ---------------------------------------------------------------------------
    def processing(self, comm: Any, workers: list[Address] | None = None) -> dict[str, list[Key]]:
        state = self.scheduler.state.workers
        wanted = workers if workers is not None else list(state)
        return {w: [ts.key for ts in state[w].processing] for w in wanted if w in state}

    def nbytes(
        self, comm: Any, keys: list[Key] | None = None, summary: bool = True
    ) -> dict[Any, int]:
        tasks = self.scheduler.state.tasks
        chosen = [tasks[k] for k in keys if k in tasks] if keys is not None else tasks.values()
        sizes = {ts.key: ts.nbytes for ts in chosen if ts.state == "memory" and ts.nbytes >= 0}
        if not summary:
            return sizes
        out: dict[Any, int] = defaultdict(int)
        for key, size in sizes.items():
            out[_prefix(key)] += size
        return dict(out)

    def get_task_stream(
        self, comm: Any, start: float | None = None, stop: float | None = None, count: int = 0
    ) -> list[dict[str, Any]]:
        stream = self.scheduler.task_stream
        spans = list(stream.tasks)
        records: list[dict[str, Any]] = [
            {
                "key": key,
                "worker": worker,
                "status": "OK",
                "startstops": [{"action": "compute", "start": begin, "stop": end}],
            }
            for key, worker, begin, end in spans
            if (start is None or end >= start) and (stop is None or begin <= stop)
        ]
        for worker, sender, nkeys, nbytes, begin, end in list(stream.transfers):
            if (start is None or end >= start) and (stop is None or begin <= stop):
                records.append(
                    {
                        "key": f"transfer-{sender}",
                        "worker": worker,
                        "status": "OK",
                        "nbytes": nbytes,
                        "nkeys": nkeys,
                        "startstops": [
                            {"action": "transfer", "start": begin, "stop": end, "source": sender}
                        ],
                    }
                )
        return records[-count:] if count else records

    async def replicate(
        self,
        comm: Any,
        keys: list[Key],
        n: int | None = None,
        workers: list[Address] | None = None,
        timeout: float = 60.0,
    ) -> dict[Key, int]:
        """Copy each key to ``n`` of ``workers`` (all running ones by default); returns
        the number of copies each key has on them once done."""
        state = self.scheduler.state
        pool = [
            w
            for w in (workers if workers is not None else list(state.workers))
            if w in state.workers and state.workers[w].status == "running"
        ]
        if not pool:
            raise ValueError(f"replicate: none of {workers} is a running worker")
        want = min(n if n is not None else len(pool), len(pool))
        for key in keys:
            ts = state.tasks.get(key)
            if ts is None or ts.state != "memory":
                raise ValueError(f"replicate: key {key!r} is not in memory")
            holders = [ws.address for ws in ts.who_has]
            lacking = sorted((w for w in pool if w not in holders), key=_load(state))
            for address in lacking[: max(want - (len(pool) - len(lacking)), 0)]:
                acquire = ops.AcquireReplicas(
                    who_has={key: tuple(holders)},
                    nbytes={key: max(ts.nbytes, 0)},
                    stimulus_id=new_stimulus_id("replicate"),
                )
                self.scheduler.worker_streams[address].send(ops.to_msg(acquire))
        deadline = time.monotonic() + timeout
        while True:
            counts = {k: _copies(state, k, pool) for k in keys}
            if all(c >= want for c in counts.values()) or time.monotonic() > deadline:
                return counts
            await asyncio.sleep(0.02)

    def versions(self, comm: Any) -> dict[str, Any]:
        from shoal.versions import get_versions

        return get_versions()


def _load(state: Any) -> Callable[[Address], int]:
    return lambda address: int(state.workers[address].nbytes)


def _copies(state: Any, key: Key, pool: list[Address]) -> int:
    ts = state.tasks.get(key)
    return 0 if ts is None else sum(ws.address in pool for ws in ts.who_has)


def _prefix(key: Key) -> str:
    name = key[0] if isinstance(key, tuple) else key
    return str(name).rsplit("-", 1)[0]


def dask_info_fields(
    workers: dict[Address, dict[str, Any]], extra: dict[Address, dict[str, Any]], started: float
) -> dict[str, Any]:
    """The fields dask's ``scheduler_info()`` has besides shoal's; adds each worker's
    ``host``, ``id``, ``last_seen`` (wall clock) and ``type`` in place."""
    now, mono = time.time(), time.monotonic()
    for address, info in workers.items():
        seen = extra.get(address, {}).get("last_seen")
        info["host"] = address.split("://")[-1].rsplit(":", 1)[0]
        info["id"] = info.get("name")
        info["type"] = "Worker"
        info["last_seen"] = now - (mono - seen) if isinstance(seen, float) else now
    return {
        "n_workers": len(workers),
        "total_threads": sum(int(w.get("nthreads") or 0) for w in workers.values()),
        "total_memory": sum(int(w.get("memory_limit") or 0) for w in workers.values()),
        "started": started,
    }
