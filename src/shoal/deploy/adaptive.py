"""``Adaptive``: a loop that sizes a cluster to the scheduler's target.

Rules of this file:

* The scheduler computes the target (``shoal.scheduler.adaptive``, over rpc
  ``adaptive_target``); ``decide`` there says when to act. This loop only asks and acts.
* Scaling down goes through ``Cluster._scale`` and so through graceful retirement.
* A failed round is logged and retried next interval; the loop never dies of it, and
  ``stop()`` ends it at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
from typing import TYPE_CHECKING

from shoal.protocol.rpc_scheduler import SchedulerAdaptiveTarget
from shoal.scheduler.adaptive import decide

if TYPE_CHECKING:
    from shoal.deploy.cluster import Cluster

logger = logging.getLogger("shoal.deploy.adaptive")


class Adaptive:
    """Every ``interval`` seconds: ask for a target, scale up at once, down after
    ``wait_count`` consecutive lower targets."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        minimum: int,
        maximum: float,
        target_duration: float,
        wait_count: int,
        interval: float,
    ) -> None:
        if minimum < 0 or maximum < minimum:
            raise ValueError(f"need 0 <= minimum <= maximum, not {minimum!r} and {maximum!r}")
        if wait_count < 1 or interval <= 0 or target_duration <= 0:
            raise ValueError("wait_count, interval and target_duration must be positive")
        self.cluster = cluster
        self.minimum = minimum
        self.maximum = maximum
        self.target_duration = target_duration
        self.wait_count = wait_count
        self.interval = interval
        #: consecutive suggestions below the current size
        self.down_count = 0
        #: (target, size scaled to or None) of every round, latest last (bounded)
        self.history: list[tuple[int, int | None]] = []
        self._task: asyncio.Task[None] | concurrent.futures.Future[None] | None = None

    def start(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Run on ``loop`` (from another thread), or on the running loop when None."""
        if loop is None:
            self._task = asyncio.ensure_future(self._run())
        else:
            self._task = asyncio.run_coroutine_threadsafe(self._run(), loop)

    def stop(self) -> None:
        """End the loop (a round in flight is cancelled); safe from any thread."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        while True:
            try:
                await self.adapt_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the scheduler may be busy or restarting; try next round
                logger.exception("adaptive round failed")
            await asyncio.sleep(self.interval)

    async def adapt_once(self) -> int | None:
        """One round; returns the size scaled to (workers), or None."""
        cluster = self.cluster
        ask = SchedulerAdaptiveTarget(
            target_duration=self.target_duration,
            minimum=self.minimum,
            maximum=self.maximum,
            threads_per_worker=cluster.threads_per_worker or None,
        )
        target = await cluster.scheduler_call(ask)
        current = len(cluster.jobs) * cluster.processes
        decision = decide(current, target, self.down_count, self.wait_count)
        self.down_count = decision.down_count
        self.history = [*self.history[-999:], (target, decision.scale_to)]
        if decision.scale_to is not None:
            logger.info("adaptive: %d -> %d workers", current, decision.scale_to)
            # down: only idle workers go (a running task would start again elsewhere)
            await cluster._scale(math.ceil(decision.scale_to / cluster.processes), idle_only=True)
        return decision.scale_to
