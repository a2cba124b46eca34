"""What a running task can reach: its worker, a client, ``secede`` and ``rejoin``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from shoal.stimulus import new_stimulus_id
from shoal.worker.events import TaskRejoined, TaskSeceded
from shoal.worker.execute import thread_state

if TYPE_CHECKING:
    from shoal.worker.server import Worker


def get_worker() -> Worker:
    """The worker running the current task; ``ValueError`` outside a task."""
    worker = getattr(thread_state, "worker", None)
    if worker is None:
        raise ValueError("get_worker() called outside a task running on a shoal worker")
    return worker  # type: ignore[no-any-return]


def _current_key() -> Any:
    key = getattr(thread_state, "key", None)
    if key is None:
        raise ValueError("secede() and rejoin() must be called from inside a task")
    return key


def secede() -> None:
    """Leave the worker's thread count: the task goes on, another task may start.

    The worker reports the task as long-running, and the scheduler stops counting it as
    occupying a thread. A second call before ``rejoin()`` does nothing.
    """
    worker = get_worker()
    key = _current_key()
    if getattr(thread_state, "seceded", False):
        return
    thread_state.seceded = True
    worker.runner.leave_thread()  # tasks queued behind this thread go elsewhere
    now = time.time()
    worker.runner.push(TaskSeceded(key=key, stimulus_id=new_stimulus_id(f"secede-{key}"), now=now))


def rejoin() -> None:
    """After ``secede()``: wait until one of the worker's threads is free and take it.

    Returns at once if the task has not seceded. Rejoining tasks get a thread before any
    new task starts on the worker.
    """
    worker = get_worker()
    key = _current_key()
    if not getattr(thread_state, "seceded", False):
        return
    thread_state.seceded = False
    now = time.time()
    event = TaskRejoined(key=key, stimulus_id=new_stimulus_id(f"rejoin-{key}"), now=now)
    worker.runner.wait_for_slot(key, event)
    worker.runner.back_in_thread()


def get_client(**kwargs: Any) -> Any:
    """A client connected to the scheduler of the worker running this task."""
    return get_worker().get_client(**kwargs)


@contextmanager
def worker_client(**kwargs: Any) -> Iterator[Any]:
    """``with worker_client() as client:`` submit and gather subtasks from a task.

    The task secedes on entry (its thread no longer counts, so the subtasks can run even on
    a worker with one thread) and rejoins on exit.
    """
    client = get_client(**kwargs)
    secede()
    try:
        yield client
    finally:
        rejoin()
