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
* ``run_soon(..., ahead=True)`` queues a call behind the busy threads: it claims no idle
  thread and starts none; a thread that finishes a call takes the oldest such call before
  it counts as idle (the worker's quick tasks run ahead, ``state_run_ahead``). A thread
  whose call seceded (``leave``) no longer counts as busy; when no busy thread is left, a
  call queued behind them is handed out as an ordinary one, so it never waits for a
  seceded task (which may be waiting for it).
* A call that raises in a thread is logged there; the thread goes on.
* Threads are daemons: a worker process may exit while a task still runs (the nanny or
  scheduler decides about that task, not interpreter shutdown). ``shutdown`` stops them
  once the queue is drained (``cancel_futures`` drops what has not started).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
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
        #: calls queued behind busy threads (``run_soon(ahead=True)``), oldest first
        self._ahead: deque[_Item] = deque()
        #: threads whose call seceded and has not rejoined (``leave``, ``come_back``)
        self._away = 0
        #: per thread: ``member`` (one of ours), ``away`` (its call seceded)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._shutdown = False

    @property
    def threads(self) -> tuple[threading.Thread, ...]:
        return tuple(self._threads)

    def run_soon(
        self,
        fn: Callable[..., Any],
        /,
        *args: Any,
        then: Callable[[Any], None] | None = None,
        ahead: bool = False,
    ) -> None:
        """Call ``fn(*args)`` in a task thread, then ``then(result)`` there once the thread
        counts as idle (not if ``fn`` raised: that is logged). ``ahead``: after a busy
        thread's call, if any thread is busy; else at once, as without it."""
        item = (fn, args, None, then)
        with self._lock:
            if ahead and self._busy() > 0 and not self._shutdown:
                self._ahead.append(item)
            else:
                self._put_locked(item)

    def _busy(self) -> int:
        """Threads running a call that has not seceded (or claimed to run one)."""
        return len(self._threads) - self._idle - self._away

    def _put(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        future: Future[Any] | None,
        then: Callable[[Any], None] | None = None,
    ) -> None:
        with self._lock:
            self._put_locked((fn, args, future, then))

    def _put_locked(self, item: _Item) -> None:
        if self._shutdown:
            raise RuntimeError("cannot schedule new tasks after shutdown")
        self._queue.put(item)
        if self._idle:
            self._idle -= 1  # that thread takes this item
        elif len(self._threads) < self.max_workers:
            self._start_thread()

    def leave(self) -> None:
        """From a call of this pool that seceded: its thread no longer counts as busy. If
        no busy thread is left, the oldest call queued behind them is handed out now (it
        might be what the seceded call waits for)."""
        local = self._local
        if not getattr(local, "member", False) or local.away:
            return  # another executor's thread, or already away
        with self._lock:
            local.away = True
            self._away += 1
            if self._ahead and self._busy() <= 0 and not self._shutdown:
                self._put_locked(self._ahead.popleft())

    def come_back(self) -> None:
        """From a call that left and rejoined (it was granted a thread): busy again."""
        local = self._local
        if getattr(local, "away", False):
            with self._lock:
                local.away = False
                self._away -= 1

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
                self._ahead.clear()
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
        local = self._local
        local.member = True
        local.away = False
        ahead = self._ahead
        item = get()
        while item is not None:
            fn, args, _, then = item
            del item
            try:
                result = fn(*args)
            except BaseException:
                logger.exception("a call in %s failed", threading.current_thread().name)
                then = result = None
            del fn, args
            with lock:
                if local.away:  # the call seceded and never rejoined: its thread is back
                    local.away = False
                    self._away -= 1
                item = ahead.popleft() if ahead else None
                if item is None:
                    self._idle += 1
            if then is not None:
                try:
                    then(result)
                except BaseException:
                    logger.exception("a report in %s failed", threading.current_thread().name)
            del then, result  # no reference to the last call's values while idle
            if item is None:
                item = get()
