"""TaskRunner: a task's outcome as the event its thread hands back to the loop."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest

from shoal.protocol.serialize import Serialized, deserialize
from shoal.worker.events import ExecuteSucceeded, WorkerEvent
from shoal.worker.execute import INLINE_RESULT_BYTES, TaskRunner


def run_one(value_of: Any, inline_result: bool) -> ExecuteSucceeded:
    """Run one task on a real TaskRunner; its event, as the loop receives it."""

    async def main() -> WorkerEvent:
        loop = asyncio.get_running_loop()
        got: asyncio.Future[WorkerEvent] = loop.create_future()
        runner = TaskRunner(1, loop, lambda events: got.set_result(events[0]), worker=None)
        try:
            runner.submit("x", 1, lambda data: value_of(), {}, None, inline_result)
            return await asyncio.wait_for(got, 30)
        finally:
            runner.shutdown()

    event = asyncio.run(main())
    assert isinstance(event, ExecuteSucceeded), event
    return event


def test_a_small_result_asked_for_comes_with_its_serialized_copy() -> None:
    event = run_one(lambda: {"answer": 42}, inline_result=True)
    assert event.value == {"answer": 42}
    assert isinstance(event.inline, Serialized) and deserialize(event.inline) == {"answer": 42}


def test_no_copy_unless_asked() -> None:
    assert run_one(lambda: 42, inline_result=False).inline is None


@pytest.mark.parametrize(
    "make",
    [
        lambda: np.zeros(INLINE_RESULT_BYTES // 8 + 1),  # sizeof just above the bound
        lambda: b"x" * (INLINE_RESULT_BYTES + 1),
        lambda: threading.Lock(),  # does not pickle: the ordinary fetch reports that
    ],
    ids=["array-over-16KiB", "bytes-over-16KiB", "unpicklable"],
)
def test_no_copy_of_a_large_or_unpicklable_result(make: Any) -> None:
    event = run_one(make, inline_result=True)
    assert event.inline is None
    assert event.value is not None  # the worker keeps the value as always


def test_a_result_just_at_the_bound_is_copied() -> None:
    event = run_one(lambda: b"x" * (INLINE_RESULT_BYTES - 64), inline_result=True)
    assert isinstance(event.inline, Serialized) and event.inline.nbytes <= INLINE_RESULT_BYTES
