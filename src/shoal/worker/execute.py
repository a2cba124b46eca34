"""Runs user tasks in threads and hands results back to the event loop in batches.

Rules of this file:

* A finished task appends its event to ``_done``; only the first of a burst wakes the
  loop (one ``call_soon_threadsafe`` drains everything that finished meanwhile), so a
  flood of tiny tasks costs one wake-up per loop turn, not one per task.
* Anything a task raises, ``BaseException`` included, becomes an ``ExecuteFailed`` event:
  it errs that task only.
* ``threads`` (key -> thread id) and ``active_threads`` (thread id -> key) are updated from
  the task's own thread; single dict operations are atomic under the GIL. ``threads``
  keeps a key while the worker knows it (``prune`` drops the others, amortized).
* ``rejoin()`` blocks its task thread on a gate until the state machine grants it a
  thread slot (``grant``); closing opens every gate so no thread waits forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
import traceback as tb_module
from collections.abc import Callable, Mapping
from typing import Any

import tblib

from shoal._types import Key
from shoal.errors import RemoteError, Reschedule
from shoal.graph.spec import run_spec
from shoal.protocol.serialize import Serialized, deserialize, serialize
from shoal.stimulus import new_stimulus_id
from shoal.worker.events import ErrorInfo, ExecuteFailed, ExecuteSucceeded, WorkerEvent
from shoal.worker.options import Executors, make_executors
from shoal.worker.running import RunningFile
from shoal.worker.task_threads import TaskThreads

#: set on a worker's task threads: which worker and key the running task belongs to
thread_state = threading.local()

#: a result a client waits for travels with task-finished (no get_data round trip) when
#: both its ``sizeof`` and its serialized size are at most this
INLINE_RESULT_BYTES = 16 * 1024


def error_info(exc: BaseException) -> ErrorInfo:
    """A failure as data that can cross the wire with its traceback."""
    tb = exc.__traceback__
    exception_text = f"{type(exc).__name__}: {exc}"
    traceback_text = "".join(tb_module.format_exception(type(exc), exc, tb))
    try:
        exception: Serialized = serialize(exc)
        _ = deserialize(exception)  # an exception that cannot come back is replaced below
    except Exception:
        exception = serialize(RemoteError(type(exc).__name__, str(exc), traceback_text))
    try:
        traceback: Serialized | None = serialize(tblib.Traceback(tb)) if tb is not None else None
    except Exception:
        traceback = None
    return ErrorInfo(
        reschedule=isinstance(exc, Reschedule),
        exception=exception,
        traceback=traceback,
        exception_text=exception_text,
        traceback_text=traceback_text,
    )


def inline_copy(value: object, size: int) -> Serialized | None:
    """A serialized copy of a small ``value`` (``size``: its ``sizeof``) to send with its
    task-finished, or None: too big, or it does not serialize (then the ordinary fetch
    reports that, as for any result)."""
    if size > INLINE_RESULT_BYTES:
        return None
    try:
        blob = serialize(value)
    except Exception:
        return None
    return blob if blob.nbytes <= INLINE_RESULT_BYTES else None


def sizeof(value: object) -> int:
    # imported at worker start (shoal.worker.warm_imports), so this is a dict lookup
    from dask.sizeof import sizeof as dask_sizeof

    try:
        return int(dask_sizeof(value))
    except Exception:
        return sys.getsizeof(value)


class TaskRunner:
    """The executor bridge: ``submit`` from the loop, batched events back to the loop."""

    def __init__(
        self,
        nthreads: int,
        loop: asyncio.AbstractEventLoop | None,
        on_events: Callable[[list[WorkerEvent]], None],
        worker: object,
        executors: Executors | None = None,
    ) -> None:
        #: executors by name (``Worker(executor=...)``); tasks pick one by annotation
        self.executors = executors or make_executors(None, nthreads)
        self.executor = self.executors.default
        self.threads: dict[Key, int] = {}
        self.active_threads: dict[int, Key] = {}
        #: the worker's loop; None until ``attach`` (a Worker is made before its loop runs)
        self._loop = loop
        self._on_events = on_events
        self._worker = worker
        self._done: list[WorkerEvent] = []
        self._lock = threading.Lock()
        #: key -> gate of the task thread blocked in ``rejoin()``
        self._rejoin_gates: dict[Key, threading.Event] = {}
        self._closed = False
        #: called in the task's thread before it runs (the spill buffer's backpressure)
        self.before_run: Callable[[], None] | None = None
        #: where each thread records the task it runs, for the nanny (None: no nanny)
        self.running: RunningFile | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver finished tasks to ``loop`` (the worker's, once it starts)."""
        self._loop = loop

    def submit(
        self,
        key: Key,
        run_id: int,
        spec: object,
        deps: Mapping[Key, Any],
        executor: object = None,
        inline_result: bool = False,
        ahead: bool = False,
    ) -> None:
        """Run ``spec`` on the executor named ``executor`` (an annotation; else "default").
        ``inline_result``: the success event carries a small result's serialized copy.
        ``ahead``: queue it behind a busy thread (a quick task run ahead)."""
        chosen = self.executors.by_name.get(executor) if isinstance(executor, str) else None
        pool = chosen or self.executor
        if isinstance(pool, TaskThreads):  # the worker's own threads: no Future per task
            # reported once the thread is idle again: the next task handed out reuses it
            pool.run_soon(
                self._run, key, run_id, spec, deps, inline_result, then=self.push, ahead=ahead
            )
        else:
            pool.submit(self._run_and_push, key, run_id, spec, deps, inline_result)

    def _run_and_push(
        self, key: Key, run_id: int, spec: object, deps: Mapping[Key, Any], inline_result: bool
    ) -> None:
        self.push(self._run(key, run_id, spec, deps, inline_result))

    def _run(
        self,
        key: Key,
        run_id: int,
        spec: object,
        deps: Mapping[Key, Any],
        inline_result: bool = False,
    ) -> WorkerEvent:
        """Run one task in this thread; its outcome as an event (for ``push``).
        ``inline_result``: a small result's serialized copy rides the success event."""
        ident = threading.get_ident()
        self.threads[key] = ident
        self.active_threads[ident] = key
        thread_state.worker = self._worker
        thread_state.key = key
        thread_state.run_id = run_id
        thread_state.seceded = False
        if self.before_run is not None:
            self.before_run()
        running = self.running
        if running is not None:  # before any user code: a crash from here on is this task's
            running.started(key, run_id)
        start = time.time()
        event: WorkerEvent
        try:
            if isinstance(spec, Serialized):
                spec = deserialize(spec)
            value = run_spec(spec, deps)
            stop = time.time()
            nbytes = sizeof(value)
            event = ExecuteSucceeded(
                key=key,
                run_id=run_id,
                value=value,
                nbytes=nbytes,
                type_name=type(value).__name__,
                start=start,
                stop=stop,
                inline=inline_copy(value, nbytes) if inline_result else None,
                stimulus_id=new_stimulus_id("task-finished"),
                now=stop,
            )
        except BaseException as exc:  # a task's failure, whatever it is, errs that task only
            stop = time.time()
            event = ExecuteFailed(
                key=key,
                run_id=run_id,
                error=error_info(exc),
                start=start,
                stop=stop,
                stimulus_id=new_stimulus_id("task-erred"),
                now=stop,
            )
            del exc
        finally:
            if running is not None:
                running.finished()
            self.active_threads.pop(ident, None)
            thread_state.key = None
        return event

    def push(self, event: WorkerEvent) -> None:
        """Hand an event to the loop from any thread; one wake-up per burst."""
        with self._lock:
            self._done.append(event)
            wake = len(self._done) == 1
        if wake:
            # the loop may have closed while the task ran: then there is nobody to tell
            loop = self._loop  # None only before the worker starts, when nothing runs
            with contextlib.suppress(RuntimeError):
                if loop is not None:
                    loop.call_soon_threadsafe(self._drain)

    def leave_thread(self) -> None:
        """From a task that seceded: its thread stops counting as busy in its pool."""
        for pool in self.executors.by_name.values():
            if isinstance(pool, TaskThreads):
                pool.leave()

    def back_in_thread(self) -> None:
        """From a seceded task granted a thread again by ``rejoin()``."""
        for pool in self.executors.by_name.values():
            if isinstance(pool, TaskThreads):
                pool.come_back()

    def wait_for_slot(self, key: Key, event: WorkerEvent) -> None:
        """From ``key``'s task thread: hand ``event`` (TaskRejoined) to the loop and block
        until ``grant(key)`` (or until the runner shuts down)."""
        gate = threading.Event()
        self._rejoin_gates[key] = gate
        if self._closed:
            return
        self.push(event)
        gate.wait()

    def grant(self, key: Key) -> None:
        """Let the thread of ``key`` blocked in ``rejoin()`` go on."""
        gate = self._rejoin_gates.pop(key, None)
        if gate is not None:
            gate.set()

    def prune(self, known: Mapping[Key, object]) -> None:
        """Forget the threads of keys no longer ``known``, once there are many of them."""
        threads = self.threads
        if len(threads) > 2 * len(known) + 64:
            for key in list(threads):
                if key not in known:
                    threads.pop(key, None)

    def _drain(self) -> None:
        with self._lock:
            events, self._done = self._done, []
        if events:
            self._on_events(events)

    def shutdown(self) -> None:
        self._closed = True
        for key in list(self._rejoin_gates):
            self.grant(key)
        self.executors.shutdown()
