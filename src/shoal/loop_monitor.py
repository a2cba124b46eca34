"""How long the event loop could not answer anyone, and the garbage collector's part in it.

Rules of this file:

* ``LoopMonitor.tick`` runs every ``interval`` seconds on the loop it watches; how late it
  runs is how long the loop was stuck (a stall). The longest stall and the longest full
  (generation 2) collection are kept until ``reset``; benchmarks and ``/metrics`` read them.
  A stall of ``warn_after`` seconds or more is logged as a warning (as dask does), with
  the full collections that ran during it: a silent stall looks like a hang.
* ``watch`` starts a thread that, while the watched loop is ``sample_after`` seconds or
  more overdue, samples where that loop's thread is (its innermost frames) every
  ``interval``: the warning and ``max_stall_where`` then say what the loop was doing,
  which py-spy could only tell if someone had run it at that moment. A stall inside one
  C call that holds the GIL is sampled just after it, in the Python frame that made it.
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
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger("shoal.scheduler")

#: new tasks after which the scheduler freezes what is alive
FREEZE_AFTER_TASKS = 5_000
#: seconds of stall from which one is logged
WARN_AFTER_SECONDS = 3.0
#: seconds overdue from which the watchdog samples where the loop is
SAMPLE_AFTER_SECONDS = 0.1
#: samples kept of one stall (a stall of minutes must not grow a list without end)
MAX_SAMPLES = 64
#: innermost frames in one sample
SAMPLE_DEPTH = 6


class LoopMonitor:
    """The longest event-loop stall and the longest full garbage collection, in seconds."""

    def __init__(
        self,
        interval: float = 0.05,
        name: str = "scheduler",
        warn_after: float = WARN_AFTER_SECONDS,
        sample_after: float = SAMPLE_AFTER_SECONDS,
    ) -> None:
        self.interval = interval
        self.name = name
        self.warn_after = warn_after
        self.sample_after = sample_after
        self.max_stall = 0.0
        #: where the loop was during the longest stall: (frames, samples), most seen first
        self.max_stall_where: list[tuple[str, int]] = []
        #: samples of the stall now going on (the watchdog appends, ``tick`` takes them)
        self._samples: list[str] = []
        self._watchdog: threading.Thread | None = None
        self._stop = threading.Event()
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
        samples, self._samples = self._samples, []
        where = Counter(samples).most_common()
        if stall > self.max_stall:
            self.max_stall = stall
            self.max_stall_where = where
        if stall >= self.warn_after:
            self._warn(stall, since=self._last, where=where)
        self._last = now
        if self._recent_gcs:
            self._recent_gcs.clear()

    def _warn(self, stall: float, since: float, where: list[tuple[str, int]]) -> None:
        during = [seconds for ended, seconds in self._recent_gcs if ended >= since]
        if during:
            cause = f"; {len(during)} full garbage collection(s) took {sum(during):.2f}s of it"
        elif where:
            cause = f"; no garbage collection ran; the loop was in {where[0][0]}"
        else:
            cause = (
                "; no garbage collection ran: a long call on the loop or a thread "
                "holding the GIL (py-spy dump shows which)"
            )
        logger.warning("the %s's event loop was unresponsive for %.2fs%s", self.name, stall, cause)

    def watch(self, thread_id: int | None = None) -> None:
        """Sample where the thread ``thread_id`` (this one if None), which runs the
        watched loop, is whenever it is ``sample_after`` overdue: see the module's rules."""
        if self._watchdog is not None:
            return
        loop_thread = threading.get_ident() if thread_id is None else thread_id
        self._watchdog = threading.Thread(
            target=self._watch, args=(loop_thread,), name=f"{self.name}-loop-watchdog", daemon=True
        )
        self._watchdog.start()

    def _watch(self, loop_thread: int) -> None:
        while not self._stop.wait(self.interval):
            overdue = time.perf_counter() - self._last - self.interval
            if overdue < self.sample_after or len(self._samples) >= MAX_SAMPLES:
                continue
            frame = sys._current_frames().get(loop_thread)
            if frame is None:
                return  # the loop's thread has ended
            self._samples.append(_innermost(frame))

    def reset(self) -> None:
        self.max_stall = self.max_full_gc = 0.0
        self.max_stall_where = []
        self.full_gcs = 0
        self._last = time.perf_counter()

    def close(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        self._stop.set()
        if self._watchdog is not None and self._watchdog is not threading.current_thread():
            self._watchdog.join(timeout=1.0)

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
        # not gc.get_freeze_count(): it walks every frozen object (214 ms on the loop
        # with a million tasks' objects frozen, found by the watchdog)
        return {
            "max_stall": self.max_stall,
            "max_full_gc": self.max_full_gc,
            "full_gcs": self.full_gcs,
        }


def _innermost(frame: Any) -> str:
    """``file:line function`` of the ``SAMPLE_DEPTH`` innermost frames, innermost first."""
    parts: list[str] = []
    while frame is not None and len(parts) < SAMPLE_DEPTH:
        code = frame.f_code
        parts.append(f"{code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno} {code.co_name}")
        frame = frame.f_back
    return " < ".join(parts)


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
