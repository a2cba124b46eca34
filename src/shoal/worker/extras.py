"""A worker's side of the client API beyond tasks: plugins, ``run`` with dask's options,
call stacks, profiles and package versions.

Rules of this file:

* A plugin's hook that fails is logged and reported to the caller; it never stops the
  worker or the task state machine (transition hooks swallow their errors).
* Plugins the scheduler hands over at registration are set up before the worker says
  it is running, so a worker that joins later (or restarts) has them before any task.
* A worker keeps each plugin's bytes and reports them when it registers: a scheduler
  that restarted learns the plugins again from its workers (and hands them to workers
  that join later); a plugin already set up here with the same bytes is not set up twice.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from shoal._types import Key
from shoal.plugins import call_hook
from shoal.protocol.rpc_workers import (
    WorkerCallStack,
    WorkerPluginAdd,
    WorkerPluginRemove,
    WorkerProfile,
    WorkerRun,
    WorkerVersions,
)
from shoal.protocol.serialize import Serialized, deserialize, serialize
from shoal.worker.execute import thread_state
from shoal.worker.profile import Sampler

if TYPE_CHECKING:
    from shoal.worker.server import Worker

logger = logging.getLogger("shoal.worker")


class WorkerExtras:
    """Plugins and introspection of one worker; ``handlers()`` joins its rpc table."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        #: plugins by name, in the order they were added
        self.plugins: dict[str, Any] = {}
        #: the pickled form each plugin came in, by name (reported at registration)
        self.plugin_blobs: dict[str, Serialized] = {}
        self.sampler = Sampler(worker)

    def handlers(self) -> dict[str, Callable[..., Any]]:
        return {
            WorkerPluginAdd.rpc: self.plugin_add,
            WorkerPluginRemove.rpc: self.plugin_remove,
            WorkerRun.rpc: self.run,
            WorkerCallStack.rpc: self.call_stack,
            WorkerProfile.rpc: self.profile,
            WorkerVersions.rpc: self.versions,
        }

    # -- plugins ---------------------------------------------------------------------------
    async def setup_registered(self, plugins: Mapping[str, Serialized]) -> None:
        """Set up the plugins the scheduler handed over when we registered, but those set
        up here already from the same bytes (we rejoined a scheduler that learnt them from
        us)."""
        for name, blob in plugins.items():
            if name in self.plugins and _same_bytes(self.plugin_blobs.get(name), blob):
                continue
            reply = await self.plugin_add(None, blob, name)
            if reply["status"] != "OK":
                logger.error("worker plugin %r failed to set up: %s", name, reply["text"])

    async def plugin_add(self, comm: Any, plugin: Serialized, name: str) -> dict[str, Any]:
        try:
            obj = deserialize(plugin)
            if name in self.plugins:
                await self.plugin_remove(None, name)
            self.plugins[name] = obj
            self.plugin_blobs[name] = plugin
            self._update_transition_hook()
            await call_hook(obj, "setup", self.worker)
        except Exception as exc:
            logger.exception("worker plugin %r failed in setup", name)
            return {"status": "error", "text": f"{type(exc).__name__}: {exc}"}
        return {"status": "OK"}

    async def plugin_remove(self, comm: Any, name: str) -> dict[str, Any]:
        plugin = self.plugins.pop(name, None)
        self.plugin_blobs.pop(name, None)
        self._update_transition_hook()
        if plugin is None:
            return {"status": "OK", "removed": False}
        try:
            await call_hook(plugin, "teardown", self.worker)
        except Exception as exc:
            logger.exception("worker plugin %r failed in teardown", name)
            return {"status": "error", "text": f"{type(exc).__name__}: {exc}"}
        return {"status": "OK", "removed": True}

    async def teardown_all(self) -> None:
        for name in list(self.plugins):
            await self.plugin_remove(None, name)

    def _update_transition_hook(self) -> None:
        state = getattr(self.worker, "state", None)
        if state is None:
            return
        watching = [p for p in self.plugins.values() if _overrides(p, "transition")]
        state.transition_hook = self._make_hook(watching) if watching else None

    def _make_hook(self, plugins: list[Any]) -> Callable[[Key, str, str], None]:
        def hook(key: Key, start: str, finish: str) -> None:
            for plugin in plugins:
                try:
                    plugin.transition(key, start, finish)
                except Exception:
                    logger.exception("worker plugin %r failed in transition", plugin)

        return hook

    # -- run ---------------------------------------------------------------------------------
    async def run(
        self, comm: Any, function: Serialized, args: Serialized, kwargs: Serialized
    ) -> Serialized:
        """``Client.run``: call the function here; ``dask_worker=`` gets this worker; an
        ``async def`` function is awaited on the worker's loop."""
        func = deserialize(function)
        call_kwargs = dict(deserialize(kwargs))
        if _accepts(func, "dask_worker"):
            call_kwargs["dask_worker"] = self.worker
        previous = getattr(thread_state, "worker", None)
        thread_state.worker = self.worker  # so that get_worker() works inside the function
        try:
            result = func(*deserialize(args), **call_kwargs)
        finally:
            thread_state.worker = previous
        if inspect.isawaitable(result):
            result = await result
        return serialize(result)

    # -- introspection -------------------------------------------------------------------------
    def call_stack(self, comm: Any, keys: list[Key] | None = None) -> dict[Key, list[str]]:
        """The formatted stack of each running task (of ``keys``, or all)."""
        frames = sys._current_frames()
        out: dict[Key, list[str]] = {}
        for ident, key in list(self.worker.active_threads.items()):
            if keys is not None and key not in keys:
                continue
            frame = frames.get(ident)
            if frame is not None:
                import traceback

                out[key] = traceback.format_stack(frame)
        return out

    async def profile(
        self, comm: Any, start: float | None = None, stop: float | None = None, key: Any = None
    ) -> dict[str, Any]:
        """The sampling profile between ``start`` and ``stop`` (all kept, by default)."""
        return self.sampler.tree(start, stop, key)

    def versions(self, comm: Any, packages: list[str] | None = None) -> dict[str, Any]:
        from shoal.versions import get_versions

        return get_versions(packages)


def _accepts(func: Any, name: str) -> bool:
    try:
        parameters = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters


def _overrides(plugin: object, hook: str) -> bool:
    from shoal.plugins import WorkerPlugin

    method = getattr(type(plugin), hook, None)
    return method is not None and method is not getattr(WorkerPlugin, hook, None)


def _same_bytes(a: Serialized | None, b: Serialized) -> bool:
    if a is None or bytes(a.header) != bytes(b.header) or len(a.buffers) != len(b.buffers):
        return False
    return all(bytes(x) == bytes(y) for x, y in zip(a.buffers, b.buffers, strict=True))
