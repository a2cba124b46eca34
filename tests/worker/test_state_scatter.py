"""Data scattered onto a worker by a client: in memory at once, not announced by the worker."""

from __future__ import annotations

from shoal.worker.events import DataReceived
from shoal.worker.instructions import AddKeysMsg, DeleteValue, StoreValue

from .state_helpers import assign, done, freed, new_state, of, sid, state_of


def test_scattered_value_is_in_memory_and_not_reported() -> None:
    ws = new_state()
    out = ws.handle_stimulus(DataReceived(data={"x": 41}, nbytes={"x": 28}, stimulus_id=sid()))
    assert [(i.key, i.value) for i in of(out, StoreValue)] == [("x", 41)]
    assert of(out, AddKeysMsg) == []  # the client tells the scheduler, in order
    assert state_of(ws, "x") == "memory"
    assert ws.nbytes["x"] == 28


def test_scattered_value_feeds_a_task_and_is_released_when_freed() -> None:
    ws = new_state()
    ws.handle_stimulus(DataReceived(data={"x": 41}, nbytes={"x": 28}, stimulus_id=sid()))
    out = ws.handle_stimulus(assign("y", deps={"x": ()}))
    assert state_of(ws, "y") == "executing"
    ws.handle_stimulus(done("y"))
    out = ws.handle_stimulus(freed("y", "x"))
    assert sorted(i.key for i in of(out, DeleteValue)) == ["x", "y"]
    assert "x" not in ws.tasks


def test_scatter_of_a_key_already_in_memory_keeps_the_first_value() -> None:
    ws = new_state()
    ws.handle_stimulus(DataReceived(data={"x": 1}, nbytes={"x": 28}, stimulus_id=sid()))
    out = ws.handle_stimulus(DataReceived(data={"x": 2}, nbytes={"x": 28}, stimulus_id=sid()))
    assert of(out, StoreValue) == []
    assert state_of(ws, "x") == "memory"
