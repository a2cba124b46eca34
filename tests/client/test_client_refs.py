"""KeyTable: reference counts go up at once and down in batched flushes."""

from __future__ import annotations

import threading

from shoal._types import Key
from shoal.client.refs import KeyTable


class Recorder:
    def __init__(self, table: KeyTable) -> None:
        self.scheduled = 0
        self.released: list[list[Key]] = []
        table.schedule_flush = self.schedule
        table.on_released = self.released.append

    def schedule(self) -> None:
        self.scheduled += 1


def test_acquire_counts_and_shares_one_state_per_key() -> None:
    table = KeyTable()
    a, new_a = table.acquire("x")
    b, new_b = table.acquire("x")
    assert a is b and (new_a, new_b) == (True, False)
    assert table.count("x") == 2


def test_acquire_many_counts_repeats() -> None:
    table = KeyTable()
    states = table.acquire_many(["x", "y", "x"], ["t1", "t2", "t1"])
    assert states[0] is states[2] and states[0].token == "t1"
    assert (table.count("x"), table.count("y")) == (2, 1)


def test_drops_schedule_one_flush_and_release_at_zero() -> None:
    table = KeyTable()
    recorder = Recorder(table)
    table.acquire_many(["x", "x", "y"], [None, None, None])
    table.drop("x")
    table.drop("y")
    assert recorder.scheduled == 1
    assert table.flush() == ["y"]
    assert recorder.released == [["y"]]
    assert "y" not in table.states and table.count("x") == 1
    table.drop("x")
    assert recorder.scheduled == 2
    assert table.flush() == ["x"]
    assert table.states == {}


def test_a_flush_with_nothing_dropped_releases_nothing() -> None:
    table = KeyTable()
    recorder = Recorder(table)
    assert table.flush() == []
    assert recorder.released == []


def test_drops_from_many_threads_are_all_counted() -> None:
    table = KeyTable()
    Recorder(table)
    n = 2000
    table.acquire_many(["x"] * n, [None] * n)

    def drop_a_quarter() -> None:
        for _ in range(n // 4):
            table.drop("x")

    threads = [threading.Thread(target=drop_a_quarter) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert table.flush() == ["x"]


def test_a_closed_table_ignores_drops() -> None:
    table = KeyTable()
    recorder = Recorder(table)
    table.acquire("x")
    assert [s.key for s in table.clear()] == ["x"]
    table.drop("x")
    assert recorder.scheduled == 0 and table.flush() == []


def test_a_failing_scheduler_does_not_raise_from_drop() -> None:
    table = KeyTable()

    def loop_is_closed() -> None:
        raise RuntimeError("Event loop is closed")

    table.schedule_flush = loop_is_closed
    table.acquire("x")
    table.drop("x")  # from __del__: must never raise
