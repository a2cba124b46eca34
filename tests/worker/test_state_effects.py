"""Effects: the one interface transition steps have to the event being handled."""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path
from typing import Any

import shoal.worker.state_replicas as replicas
import shoal.worker.state_transitions as transitions
from shoal.worker.instructions import GrantThread
from shoal.worker.state_effects import Effects
from shoal.worker.state_task import WorkerTask


def private_uses_of_ws(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "ws"
            and node.attr.startswith("_")
        ):
            found.append(f"{path.name}:{node.lineno}: ws.{node.attr}")
    return found


def test_steps_touch_no_private_member_of_the_worker_state() -> None:
    for module in (transitions, replicas):
        assert module.__file__ is not None
        assert private_uses_of_ws(Path(module.__file__)) == []


def test_emit_logs_under_the_events_stimulus_and_move_is_the_callback() -> None:
    log: deque[tuple[Any, ...]] = deque()
    moves: list[tuple[object, str, object]] = []
    fx = Effects(log, lambda task, finish, payload: moves.append((task.key, finish, payload)))
    fx.begin("s-1", 2.5)
    fx.emit(GrantThread(key="x", stimulus_id=fx.stimulus_id), "x")
    assert fx.out == [GrantThread(key="x", stimulus_id="s-1")]
    assert list(log) == [("instruction", "GrantThread", "x", "s-1", 2.5)]
    task = WorkerTask("y", 0)
    fx.fetch_or_missing(task)
    task.who_has.add("tcp://peer:1")
    fx.fetch_or_missing(task)
    fx.move(task, "released")
    assert moves == [("y", "missing", None), ("y", "fetch", None), ("y", "released", None)]
