"""The running-keys file: what a worker's threads run, as its nanny reads it."""

from __future__ import annotations

import threading
from pathlib import Path

from shoal.worker.running import SLOT_BYTES, SLOTS, RunningFile, RunningReader


def test_each_thread_records_its_task_and_clears_it(tmp_path: Path) -> None:
    path = str(tmp_path / "running")
    records = RunningFile(path)
    reader = RunningReader(path)
    assert reader.running() == []
    records.started(("x", 1), 3)
    other = threading.Thread(target=records.started, args=("y", 5))
    other.start()
    other.join()
    assert set(reader.running() or []) == {(("x", 1), 3), ("y", 5)}
    records.finished()  # this thread's task is done; the other thread's is not
    assert reader.running() == [("y", 5)]
    records.started("z", 1)  # the same slot again
    assert set(reader.running() or []) == {("y", 5), ("z", 1)}


def test_the_reader_still_reads_after_the_file_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "running"
    records = RunningFile(str(path))
    reader = RunningReader(str(path))
    path.unlink()  # the worker's folder is removed once it died
    records.started("x", 2)
    assert reader.running() == [("x", 2)]


def test_a_key_that_does_not_fit_makes_the_reading_unknown(tmp_path: Path) -> None:
    path = str(tmp_path / "running")
    records = RunningFile(path)
    reader = RunningReader(path)
    records.started("k" * SLOT_BYTES, 1)
    assert reader.running() is None
    records.finished()
    records.started(object(), 1)  # type: ignore[arg-type]  # msgpack cannot encode it
    assert reader.running() is None
    records.finished()
    assert reader.running() == []


def test_threads_beyond_the_slots_make_the_reading_unknown(tmp_path: Path) -> None:
    path = str(tmp_path / "running")
    records = RunningFile(path)
    reader = RunningReader(path)
    recorded = threading.Barrier(SLOTS + 1)
    release = threading.Event()

    def run(i: int) -> None:  # all alive at once: each its own thread, its own slot
        records.started(f"t-{i}", 1)
        recorded.wait(10)
        release.wait(10)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(SLOTS)]
    for t in threads:
        t.start()
    recorded.wait(10)
    assert reader.running() is None
    release.set()
    for t in threads:
        t.join()
