"""The worker's task threads: a thread pool whose hand-off costs one queue put per task.

Rules of this file:

* ``TaskThreads`` is a ``concurrent.futures.Executor`` (``submit`` returns a Future, as
  users of ``worker.executor`` expect), and has ``run_soon``: the worker's own path, which
  makes no Future, no Condition and no work item object per task (the task reports its
  outcome itself), only a tuple on a ``SimpleQueue``.
* Threads are made on demand, like ``ThreadPoolExecutor``: a new one only when no thread
  is idle, up to ``max_workers``; a thread that finished an item counts as idle until a
  later hand-off claims it.
* ``run_soon(fn, ..., then=report)`` calls ``report(result)`` in the thread once it counts
  as idle: a report that makes the loop hand out the next call (a worker's finished task)
  then finds this thread idle and reuses it, instead of racing it and starting a new one
  (which made a 1-thread worker run on up to a dozen threads, taking turns).
* A call that raises in a thread is logged there; the thread goes on.
* Threads are daemons: a worker process may exit while a task still runs (the nanny or
  scheduler decides about that task, not interpreter shutdown). ``shutdown`` stops them
  once the queue is drained (``cancel_futures`` drops what has not started).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

logger = logging.getLogger("shoal.worker")

T = TypeVar("T")

#: what travels on the queue: a call (with the Future of a ``submit``), or None (one
#: thread stops)
_Item = (
    tuple[Callable[..., Any], tuple[Any, ...], Future[Any] | None, Callable[[Any], None] | None]
    | None
)


class TaskThreads(Executor):
    """Task threads fed from one queue; ``run_soon`` is the cheap, Future-less hand-off."""

    def __init__(self, max_workers: int, thread_name_prefix: str = "shoal-task") -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self.thread_name_prefix = thread_name_prefix
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        #: threads that finished an item and were not claimed by a later hand-off yet
        self._idle = 0
        self._lock = threading.Lock()
        self._shutdown = False

    @property
    def threads(self) -> tuple[threading.Thread, ...]:
        return tuple(self._threads)

    def run_soon(
        self, fn: Callable[..., Any], /, *args: Any, then: Callable[[Any], None] | None = None
    ) -> None:
        """Call ``fn(*args)`` in a task thread, then ``then(result)`` there once the thread
        counts as idle (not if ``fn`` raised: that is logged)."""
        self._put(fn, args, None, then)

    def _put(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        future: Future[Any] | None,
        then: Callable[[Any], None] | None = None,
    ) -> None:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new tasks after shutdown")
            self._queue.put((fn, args, future, then))
            if self._idle:
                self._idle -= 1  # that thread takes this item
            elif len(self._threads) < self.max_workers:
                self._start_thread()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()

        def call() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)

        self._put(call, (), future)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            if cancel_futures:  # drop what has not started (a submit()'s Future: cancelled)
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None and item[2] is not None:
                        item[2].cancel()
            if not self._shutdown:
                self._shutdown = True
                for _ in self._threads:
                    self._queue.put(None)
            threads = list(self._threads)
        if wait:
            current = threading.current_thread()
            for thread in threads:
                if thread is not current:
                    thread.join()

    def _start_thread(self) -> None:
        name = f"{self.thread_name_prefix}_{len(self._threads)}"
        thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _serve(self) -> None:
        get = self._queue.get
        lock = self._lock
        while True:
            item = get()
            if item is None:
                return
            fn, args, _, then = item
            del item
            try:
                result = fn(*args)
            except BaseException:
                logger.exception("a call in %s failed", threading.current_thread().name)
                then = result = None
            del fn, args
            with lock:
                self._idle += 1
            if then is not None:
                try:
                    then(result)
                except BaseException:
                    logger.exception("a report in %s failed", threading.current_thread().name)
            del then, result  # no reference to the last call's values while idle
