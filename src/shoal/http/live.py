"""The live feed of the dashboard: one compact JSON snapshot per interval, for every viewer.

Rules of this file:

* A snapshot is computed at most once per interval, however many pages are open (and not
  at all while nobody watches). Each computed snapshot goes to every open stream; a
  viewer too slow to read keeps only the newest one.
* A snapshot carries the tasks and transfers that finished since the previous snapshot,
  at most ``MAX_STREAM`` of each (the newest), so its size is bounded however fast the
  cluster runs; a page keeps its own window of recent history.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from shoal.graph.keys import key_split
from shoal.http import views

if TYPE_CHECKING:
    from shoal.scheduler.server import Scheduler

#: seconds between snapshots
INTERVAL = 0.5
#: finished tasks (and transfers) per snapshot, at most
MAX_STREAM = 500


class SnapshotMaker:
    """Turns the scheduler's state into snapshots; remembers what the last one covered."""

    def __init__(self, scheduler: Scheduler, lag: Callable[[], float]) -> None:
        self.scheduler = scheduler
        self.lag = lag
        self._tasks_seen = scheduler.task_stream.n_finished
        self._transfers_seen = scheduler.task_stream.n_transfers

    def __call__(self) -> dict[str, Any]:
        s = self.scheduler
        stream = s.task_stream
        new_tasks = min(stream.n_finished - self._tasks_seen, MAX_STREAM)
        new_transfers = min(stream.n_transfers - self._transfers_seen, MAX_STREAM)
        self._tasks_seen, self._transfers_seen = stream.n_finished, stream.n_transfers
        return {
            "time": time.time(),
            "scheduler": s.address,
            "workers": views.workers(s),
            "progress": views.progress(views.prefix_states(s)),
            "counts": s.state.n_tasks_by_state(),
            "finished_total": stream.n_finished,
            "stream": [
                [key_split(key), w, round(a, 4), round(b, 4)]
                for key, w, a, b in stream.recent_tasks(new_tasks)
            ],
            "transfers": [
                [w, sender, nbytes, round(a, 4), round(b, 4)]
                for w, sender, _, nbytes, a, b in stream.recent_transfers(new_transfers)
            ],
            "loop_lag": round(self.lag(), 4),
        }


class LiveFeed:
    """Computes snapshots (once per interval) and hands each to every subscriber."""

    def __init__(self, make: Callable[[], dict[str, Any]], interval: float = INTERVAL) -> None:
        self._make = make
        self.interval = interval
        #: snapshots computed so far (tests and the benchmark read it)
        self.n_computed = 0
        self._latest = b""
        self._latest_at = -float("inf")
        self._subscribers: set[asyncio.Queue[bytes | None]] = set()
        self._ticker: asyncio.Task[None] | None = None

    def latest(self) -> bytes:
        """The newest snapshot as JSON; computed now if the last is older than the interval."""
        now = time.monotonic()
        if now - self._latest_at >= self.interval:
            self._latest = json.dumps(self._make(), separators=(",", ":")).encode()
            self._latest_at = now
            self.n_computed += 1
            for queue in self._subscribers:
                _put_newest(queue, self._latest)
        return self._latest

    def subscribe(self) -> asyncio.Queue[bytes | None]:
        """A queue that receives each new snapshot (None: the feed closed)."""
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1)
        self._subscribers.add(queue)
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._tick(), name="live-feed")
        return queue

    def unsubscribe(self, queue: asyncio.Queue[bytes | None]) -> None:
        self._subscribers.discard(queue)

    @property
    def n_subscribers(self) -> int:
        return len(self._subscribers)

    async def _tick(self) -> None:
        while self._subscribers:
            self.latest()
            await asyncio.sleep(self.interval)

    async def close(self) -> None:
        """Stop ticking and end every open stream."""
        for queue in self._subscribers:
            _put_newest(queue, None)
        self._subscribers.clear()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker


def _put_newest(queue: asyncio.Queue[bytes | None], item: bytes | None) -> None:
    with contextlib.suppress(asyncio.QueueEmpty):
        if queue.full():
            queue.get_nowait()
    queue.put_nowait(item)


async def event_stream(request: web.Request, feed: LiveFeed) -> web.StreamResponse:
    """Server-sent events: one ``data:`` line of snapshot JSON per interval."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    payload: bytes | None = feed.latest()  # before subscribing: each snapshot is sent once
    queue = feed.subscribe()
    try:
        while payload is not None:
            await response.write(b"data: " + payload + b"\n\n")
            payload = await queue.get()
    except ConnectionResetError:  # the page went away
        pass
    finally:
        feed.unsubscribe(queue)
    return response


__all__ = ["INTERVAL", "LiveFeed", "SnapshotMaker", "event_stream"]
