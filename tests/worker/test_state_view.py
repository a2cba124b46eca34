"""WorkerStateView: the seed's state attributes of Worker are the state's, read-only."""

from __future__ import annotations

import pytest

from shoal.worker.state import WorkerState
from shoal.worker.state_view import WorkerStateView

from .state_helpers import assign, new_state

SEED_NAMES = (
    "tasks", "data_needed", "ready", "constrained", "executing_count", "executed_count",
    "long_running", "has_what", "pending_data_per_worker", "in_flight_tasks",
    "in_flight_workers", "comm_bytes", "nbytes", "waiting_for_data_count", "log",
    "available_resources",
)  # fmt: skip


class Holder(WorkerStateView):
    __slots__ = ("state",)

    def __init__(self, state: WorkerState) -> None:
        self.state = state


def test_every_name_reads_the_state_machine_and_none_can_be_set() -> None:
    ws = new_state(resources={"GPU": 2})
    ws.handle_stimulus(assign("x", resources={"GPU": 1}))
    view = Holder(ws)
    for name in SEED_NAMES:
        mine, theirs = getattr(view, name), getattr(ws, name)
        if name == "constrained":  # a fresh snapshot each time
            assert list(mine) == list(theirs)
        else:
            assert mine is theirs or mine == theirs, name
        with pytest.raises(AttributeError):
            setattr(view, name, None)
    assert view.tasks["x"].state == "executing" and view.available_resources == {"GPU": 1}


def test_the_worker_class_uses_the_view() -> None:
    from shoal.worker.server import Worker

    assert issubclass(Worker, WorkerStateView)
    for name in SEED_NAMES:
        assert isinstance(getattr(Worker, name), property), name
