"""What a client needs to ask again after its scheduler connection was lost.

Rules of this file:

* ``SpecStore`` keeps every ``update-graph`` row the client sent (key, run spec, deps,
  priority, token) and its restrictions, so that after a scheduler restart the client can
  declare again every key it still holds a future for, with the rows those keys need.
  It is pruned to what live keys need whenever it grows past twice what they need.
* A key with no row (scattered data, a future made from a key) is declared with no run
  spec: the scheduler finds it on a worker that reported it, or says it is lost.
* Re-declaring never computes what a worker still holds: the scheduler finishes such keys
  from the workers' reports (see ``scheduler/state_recovery.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from shoal._types import Key
from shoal.client import wire
from shoal.protocol import ops
from shoal.stimulus import new_stimulus_id

logger = logging.getLogger(__name__)

#: first and longest pause between two tries to reach the scheduler again (seconds)
RETRY_FIRST, RETRY_MAX = 0.1, 1.0
#: after reconnecting to a new scheduler, wait at most SETTLE_MAX s for its workers to
#: rejoin (they report what they hold), until none joined for SETTLE_STABLE s
SETTLE_STABLE, SETTLE_MAX = 2.0, 10.0
#: rows kept before pruning, beyond twice what live keys need
PRUNE_SLACK = 1000


class SpecStore:
    """The rows and restrictions of every task this client sent, by key."""

    def __init__(self) -> None:
        self.rows: dict[Key, Any] = {}
        self.restrictions: dict[Key, Any] = {}
        self._needed_at_last_prune = 0

    def record(self, op: ops.UpdateGraph, live: Callable[[], Iterable[Key]]) -> None:
        """Keep the rows of an ``update-graph`` about to be sent."""
        restrictions = op.restrictions
        for row in op.tasks:
            key = row[0]
            self.rows[key] = row
            if key in restrictions:
                self.restrictions[key] = restrictions[key]
        if len(self.rows) > 2 * self._needed_at_last_prune + PRUNE_SLACK:
            self.prune(live())

    def needed(self, live: Iterable[Key]) -> list[Key]:
        """``live`` keys and every key their rows depend on, transitively; dependencies
        come before their dependents (the order they were first sent in)."""
        seen: dict[Key, None] = {}
        order: list[Key] = []
        for root in live:
            stack: list[tuple[Key, bool]] = [(root, False)]
            while stack:
                key, expanded = stack.pop()
                if expanded:
                    order.append(key)
                    continue
                if key in seen:
                    continue
                seen[key] = None
                stack.append((key, True))
                row = self.rows.get(key)
                if row is not None:
                    stack.extend((dep, False) for dep in reversed(row[2]) if dep not in seen)
        return order

    def prune(self, live: Iterable[Key]) -> None:
        keep = self.needed(live)
        self.rows = {k: self.rows[k] for k in keep if k in self.rows}
        self.restrictions = {k: v for k, v in self.restrictions.items() if k in self.rows}
        self._needed_at_last_prune = len(self.rows)

    def redeclare(self, live: Iterable[Key]) -> ops.UpdateGraph:
        """One ``update-graph`` declaring ``live`` keys again, with their rows."""
        wanted = list(live)
        keys = self.needed(wanted)
        rows = [self.rows.get(key) or (key, None, (), (), None) for key in keys]
        restrictions = {k: self.restrictions[k] for k in keys if k in self.restrictions}
        return wire.update_graph(
            rows, wanted, restrictions, stimulus_id=new_stimulus_id("client-reconnect")
        )


async def retry_until(
    attempt: Callable[[], Awaitable[dict[str, Any]]], timeout: float
) -> dict[str, Any] | None:
    """Call ``attempt`` with growing pauses until it succeeds (its reply) or ``timeout``
    seconds have passed (None)."""
    deadline = time.monotonic() + timeout
    delay = RETRY_FIRST
    while True:
        try:
            return await attempt()
        except Exception:  # CommError, OSError, TimeoutError: the scheduler is not back yet
            pass
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 2, RETRY_MAX)


async def settle(wait_for_workers: Callable[[int, float], Awaitable[int]], expected: int) -> int:
    """Wait, at most ``SETTLE_MAX`` s, until the new scheduler has the ``expected`` workers
    the old one had when we registered, and then until no further worker has joined for
    ``SETTLE_STABLE`` s (``expected`` may be stale: more workers may have joined since), so
    rejoining workers report their results before we re-declare keys. The scheduler
    answers when its state changes (no polling here); past the deadline this logs why and
    goes on: results reported later are still used, only some work may run twice.
    Returns the workers registered (-1: unknown)."""
    deadline = time.monotonic() + SETTLE_MAX
    count = 0
    if expected > 0:
        try:
            count = await wait_for_workers(expected, SETTLE_MAX)
        except Exception as exc:  # TimeoutError from the scheduler, or it went away again
            logger.warning("reconnected before every worker rejoined: %s", exc)
            return -1
    while (left := deadline - time.monotonic()) > 0:
        try:  # one more worker within the window, or the count is stable
            count = await wait_for_workers(count + 1, min(SETTLE_STABLE, left))
        except Exception:  # stable (a timeout), or gone again: the stream will say so
            return count
    return count


__all__ = ["SpecStore", "retry_until", "settle"]
