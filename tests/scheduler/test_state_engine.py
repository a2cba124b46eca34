"""SchedulerState holds a TransitionEngine (composition), and both machines look alike."""

from __future__ import annotations

import inspect

import pytest

from shoal.scheduler.state import SchedulerState
from shoal.scheduler.state_transitions import TransitionEngine
from shoal.worker.state import WorkerState

from .helpers import handle, join, submit, task

VIEWS = ("tasks", "workers", "clients", "prefixes", "queued", "unrunnable", "transition_log")


def test_the_engine_is_held_not_inherited() -> None:
    assert not issubclass(SchedulerState, TransitionEngine)
    state = SchedulerState()
    assert isinstance(state.engine, TransitionEngine)


def test_the_containers_are_the_engines_and_read_only() -> None:
    state = SchedulerState()
    handle(state, join("w1"), submit([task("x")], ["x"]))
    for name in VIEWS:
        assert getattr(state, name) is getattr(state.engine, name), name
        with pytest.raises(AttributeError):
            setattr(state, name, None)
    assert state.tasks["x"].state == "processing"
    assert state.story("x") == state.engine.story("x") != []


def test_both_machines_have_the_same_entry_point() -> None:
    for machine in (SchedulerState, WorkerState):
        params = list(inspect.signature(machine.handle_stimulus).parameters.values())
        assert [p.name for p in params] == ["self", "events"], machine
        assert params[1].kind is inspect.Parameter.VAR_POSITIONAL, machine
