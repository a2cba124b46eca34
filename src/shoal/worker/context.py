"""What a running task can reach: its worker, a client, and ``secede``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shoal.worker.events import TaskSeceded
from shoal.worker.execute import thread_state

if TYPE_CHECKING:
    from shoal.worker.server import Worker


def get_worker() -> Worker:
    """The worker running the current task; ``ValueError`` outside a task."""
    worker = getattr(thread_state, "worker", None)
    if worker is None:
        raise ValueError("get_worker() called outside a task running on a shoal worker")
    return worker  # type: ignore[no-any-return]


def secede() -> None:
    """Leave the worker's thread count: the task goes on, another task may start."""
    worker = get_worker()
    key = thread_state.key
    worker.runner.push(TaskSeceded(key=key, stimulus_id=f"secede-{key}"))


def get_client(**kwargs: Any) -> Any:
    """A client connected to the scheduler of the worker running this task."""
    return get_worker().get_client(**kwargs)
