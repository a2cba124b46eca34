"""How long the event loop could not answer anyone, and the garbage collector's part in it.

Rules of this file:

* ``LoopMonitor.tick`` runs every ``interval`` seconds on the loop it watches; how late it
  runs is how long the loop was stuck (a stall). The longest stall and the longest full
  (generation 2) collection are kept until ``reset``; benchmarks and ``/metrics`` read them.
  A stall of ``warn_after`` seconds or more is logged as a warning (as dask does), with
  the full collections that ran during it: a silent stall looks like a hang.
* ``GcPolicy`` keeps full collections short on a scheduler holding a big graph: once
  ``freeze_after`` tasks have arrived since the last freeze, ``gc.freeze()`` moves every
  object alive into the permanent generation, which collections never scan (a full pass
  over a million tasks took 535 ms, 2.7 s while one huge message was decoded). Freezing
  is O(1) (it splices lists), so it is done often: a full pass then only sees what came
  since, about 5,000 tasks' objects (97 ms at 10,000 on a loaded machine). Tuned
  thresholds would only space the passes out, each still over the whole heap. Frozen
  objects are still freed by reference counting (a forgotten task's links to other tasks
  are cut by the scheduler); only cyclic garbage among them waits, so the young
  generations are collected just before each freeze (cheap: they are small) to leave
  little of it. While the scheduler holds at least ``freeze_after`` tasks it also freezes
  once a second (``idle``): running a big graph makes objects too (records of who holds
  what, finished tasks' states), and a full pass over a few minutes of them took 99 ms on
  a 300,000-task graph. When the scheduler holds no tasks, ``gc.unfreeze()`` hands
  everything back to the collector.
* ``collection_paused`` switches automatic collection off while a client builds and
  pickles a dask graph: that graph is millions of young objects, and each full pass the
  collector makes meanwhile scans all of them while holding the GIL (858 ms on a
  100,000-task graph, 3.7 s on a million, every thread of the process stopped, the
  scheduler's loop in a ``LocalCluster`` included). The graph is freed by reference
  counting once it is sent, so nothing is left for a pass to find. Pauses nest and may
  overlap across threads: the last one out switches collection back on, unless it was
  off before the first one came in.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger("shoal.scheduler")

#: new tasks after which the scheduler freezes what is alive
FREEZE_AFTER_TASKS = 5_000
#: seconds of stall from which one is logged
WARN_AFTER_SECONDS = 3.0


class LoopMonitor:
    """The longest event-loop stall and the longest full garbage collection, in seconds."""

    def __init__(
        self,
        interval: float = 0.05,
        name: str = "scheduler",
        warn_after: float = WARN_AFTER_SECONDS,
    ) -> None:
        self.interval = interval
        self.name = name
        self.warn_after = warn_after
        self.max_stall = 0.0
        self.max_full_gc = 0.0
        self.full_gcs = 0
        self._last = time.perf_counter()
        self._gc_started = 0.0
        #: (when it ended, seconds) of recent full collections, for the stall warning
        self._recent_gcs: list[tuple[float, float]] = []
        gc.callbacks.append(self._on_gc)

    def tick(self) -> None:
        """Called every ``interval`` seconds on the watched loop (``Server.periodic``)."""
        now = time.perf_counter()
        stall = now - self._last - self.interval
        self.max_stall = max(self.max_stall, stall)
        if stall >= self.warn_after:
            self._warn(stall, since=self._last)
        self._last = now
        if self._recent_gcs:
            self._recent_gcs.clear()

    def _warn(self, stall: float, since: float) -> None:
        during = [seconds for ended, seconds in self._recent_gcs if ended >= since]
        cause = (
            f"; {len(during)} full garbage collection(s) took {sum(during):.2f}s of it"
            if during
            else "; no garbage collection ran: a long call on the loop or a thread "
            "holding the GIL (py-spy dump shows which)"
        )
        logger.warning("the %s's event loop was unresponsive for %.2fs%s", self.name, stall, cause)

    def reset(self) -> None:
        self.max_stall = self.max_full_gc = 0.0
        self.full_gcs = 0
        self._last = time.perf_counter()

    def close(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            now = time.perf_counter()
            self.full_gcs += 1
            self.max_full_gc = max(self.max_full_gc, now - self._gc_started)
            if len(self._recent_gcs) < 64:  # cleared every tick; bounded if ticks stop
                self._recent_gcs.append((now, now - self._gc_started))

    def stats(self) -> dict[str, float]:
        return {
            "max_stall": self.max_stall,
            "max_full_gc": self.max_full_gc,
            "full_gcs": self.full_gcs,
            "frozen": gc.get_freeze_count(),
        }


class GcPolicy:
    """Freeze the heap after big graphs arrive; unfreeze when the scheduler is empty."""

    def __init__(self, freeze_after: int = FREEZE_AFTER_TASKS) -> None:
        self.freeze_after = freeze_after
        self._since_freeze = 0
        #: this policy froze the heap and has not unfrozen it yet
        self.frozen = False
        self.freezes = 0

    def tasks_added(self, count: int) -> None:
        self._since_freeze += count
        if self._since_freeze >= self.freeze_after:
            self._freeze()

    def idle(self, tasks_held: int) -> None:
        """Called about once a second with how many tasks the scheduler holds."""
        if tasks_held >= self.freeze_after:
            self._freeze()
        elif self.frozen and tasks_held == 0:
            gc.unfreeze()
            self.frozen = False

    def _freeze(self) -> None:
        if gc.isenabled():  # young cyclic garbage would otherwise be frozen with the rest
            # (while collection is off, say paused as a client builds a graph, the young
            # generations are everything made since: a pass over them took 1.6 s)
            gc.collect(1)
        gc.freeze()
        self._since_freeze = 0
        self.frozen = True
        self.freezes += 1


_pause_lock = threading.Lock()
#: pauses now open, in any thread
_pauses = 0
#: whether automatic collection was on when the first open pause began
_was_enabled = False


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """No automatic garbage collection in this process while the block runs."""
    global _pauses, _was_enabled
    with _pause_lock:
        if _pauses == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0 and _was_enabled:
                gc.enable()
