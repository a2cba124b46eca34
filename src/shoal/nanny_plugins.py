"""A nanny's side of ``NannyPlugin``s and ``Client.run(nanny=True)``.

Rules of this file:

* A plugin whose class says ``restart = True`` restarts the worker after its setup, so
  the new worker process sees what the plugin changed (``Environ``'s variables).
* A failing hook is reported to the caller; the nanny keeps supervising.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shoal.plugins import call_hook
from shoal.protocol.rpc_workers import NannyPluginAdd, NannyPluginRemove, NannyRun
from shoal.protocol.serialize import Serialized, deserialize, serialize

if TYPE_CHECKING:
    from shoal.nanny import Nanny

logger = logging.getLogger("shoal.nanny")


class NannyExtras:
    def __init__(self, nanny: Nanny) -> None:
        self.nanny = nanny
        self.plugins: dict[str, Any] = {}

    def handlers(self) -> dict[str, Callable[..., Any]]:
        return {
            NannyPluginAdd.rpc: self.plugin_add,
            NannyPluginRemove.rpc: self.plugin_remove,
            NannyRun.rpc: self.run,
        }

    async def plugin_add(self, comm: Any, plugin: Serialized, name: str) -> dict[str, Any]:
        try:
            obj = deserialize(plugin)
            self.plugins[name] = obj
            await call_hook(obj, "setup", self.nanny)
            if getattr(obj, "restart", False):
                await self.nanny.restart()
        except Exception as exc:
            logger.exception("nanny plugin %r failed in setup", name)
            return {"status": "error", "text": f"{type(exc).__name__}: {exc}"}
        return {"status": "OK"}

    async def plugin_remove(self, comm: Any, name: str) -> dict[str, Any]:
        plugin = self.plugins.pop(name, None)
        if plugin is not None:
            await call_hook(plugin, "teardown", self.nanny)
        return {"status": "OK", "removed": plugin is not None}

    async def run(
        self, comm: Any, function: Serialized, args: Serialized, kwargs: Serialized
    ) -> Serialized:
        func = deserialize(function)
        call_kwargs = dict(deserialize(kwargs))
        try:
            if "dask_worker" in inspect.signature(func).parameters:
                call_kwargs["dask_worker"] = self.nanny
        except (TypeError, ValueError):
            pass
        result = func(*deserialize(args), **call_kwargs)
        if inspect.isawaitable(result):
            result = await result
        return serialize(result)
