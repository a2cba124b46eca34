"""The methods of dask's ``LocalCluster`` that users call on a cluster object:
``get_client``, ``wait_for_workers``, ``get_logs``, ``loop``.

Rules of this file:

* A mixin of ``LocalCluster``: it uses only ``scheduler``, ``workers`` and
  ``_wait_for_workers`` of the cluster, and blocks unless the cluster is asynchronous.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from shoal import loop as shared_loop

if TYPE_CHECKING:
    from shoal.scheduler.server import Scheduler


class ClusterApi:
    """Mixin of ``LocalCluster`` (see the module docstring)."""

    #: the cluster's name (dask's ``name=``); None when not given
    name: str | None = None
    asynchronous: bool = False
    scheduler: Scheduler

    async def _wait_for_workers(self, n: int, timeout: float) -> None:
        raise NotImplementedError

    def _sync(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return coro if self.asynchronous else shared_loop.run_sync(coro)

    def get_client(self) -> Any:
        """A client connected to this cluster (the default client when one is)."""
        from shoal.client import Client

        return Client(self, asynchronous=self.asynchronous)

    def wait_for_workers(self, n_workers: int, timeout: float | None = None) -> Any:
        """Return once ``n_workers`` workers are connected (``TimeoutError`` after
        ``timeout`` seconds, naming how many joined)."""
        return self._sync(self._wait_for_workers(n_workers, 1e9 if timeout is None else timeout))

    def get_logs(self, cluster: bool = True, scheduler: bool = True, workers: bool = True) -> Any:
        """``{"Scheduler": lines, worker address: lines}`` of recent log records."""
        return self._sync(self._get_logs(scheduler, workers))

    async def _get_logs(self, scheduler: bool, workers: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if scheduler:
            out["Scheduler"] = self.scheduler.get_logs()
        if workers:
            addresses = list(self.scheduler.worker_streams)
            replies = await asyncio.gather(
                *(self.scheduler.pool.call(w, "get_logs") for w in addresses)
            )
            out.update(zip(addresses, replies, strict=True))
        return out

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the cluster's scheduler runs on."""
        return shared_loop.get_loop() if not self.asynchronous else None
