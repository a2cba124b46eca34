"""The spill buffer: LRU to disk past the target, off-thread writes, failures keep values."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shoal.worker import spill
from shoal.worker.spill import SpillBuffer, TaskInputs, task_inputs

MB = 10**6


def weight(value: object) -> int:
    return len(value) if isinstance(value, bytes) else 1


@pytest.fixture
def buf(tmp_path: Path) -> Iterator[SpillBuffer]:
    buffer = SpillBuffer(str(tmp_path / "storage"), target=100, weight=weight)
    yield buffer
    buffer.close()


def settle(buffer: SpillBuffer) -> None:
    assert buffer.flush(timeout=30)


def spill_files(buffer: SpillBuffer) -> list[str]:
    return sorted(os.listdir(buffer.directory))


def test_under_the_target_everything_stays_in_memory(buf: SpillBuffer) -> None:
    buf["a"] = b"x" * 40
    buf["b"] = b"y" * 40
    settle(buf)
    assert set(buf.memory) == {"a", "b"} and not buf.disk
    assert buf.fast is buf.memory and buf.slow is buf.disk
    assert buf["a"] == b"x" * 40 and len(buf) == 2 and spill_files(buf) == []


def test_least_recently_used_goes_to_disk(buf: SpillBuffer) -> None:
    buf["a"] = b"a" * 40
    buf["b"] = b"b" * 40
    assert buf["a"] == b"a" * 40  # now b is the least recently used
    buf["c"] = b"c" * 40
    settle(buf)
    assert set(buf.disk) == {"b"}
    assert set(buf.memory) == {"a", "c"}
    assert buf.fast_weight == 80 and buf.slow_weight == 40 and buf.pending_weight == 0
    assert len(spill_files(buf)) == 1
    assert buf["b"] == b"b" * 40 and buf.disk["b"] == b"b" * 40
    assert "b" in buf.disk  # reading does not bring it back into memory
    assert sorted(buf) == ["a", "b", "c"]


def test_a_value_larger_than_the_target_goes_straight_to_disk(buf: SpillBuffer) -> None:
    buf["small"] = b"s" * 10
    buf["big"] = b"B" * 500
    settle(buf)
    assert set(buf.disk) == {"big"} and set(buf.memory) == {"small"}
    assert buf["big"] == b"B" * 500


_GATE = threading.Event()


class SlowToPickle:
    """Pickling waits for _GATE: the value sits in the pending queue meanwhile."""

    def __reduce__(self) -> tuple[Any, ...]:
        _GATE.wait(10)
        return (SlowToPickle, ())


def test_pending_values_are_readable_before_they_are_written(tmp_path: Path) -> None:
    _GATE.clear()
    buffer = SpillBuffer(str(tmp_path / "s"), target=0.5, weight=lambda v: 1)
    try:
        value = SlowToPickle()
        buffer["k"] = value  # over the target: queued for the writer, which waits on the gate
        assert buffer["k"] is value and "k" in buffer.memory and "k" not in buffer.disk
        assert buffer.pending_weight == 1 and buffer.fast_weight == 0
        _GATE.set()
        settle(buffer)
        assert "k" in buffer.disk and buffer.pending_weight == 0
        assert isinstance(buffer["k"], SlowToPickle)
    finally:
        _GATE.set()
        buffer.close()


def test_a_key_freed_while_its_write_is_pending_leaves_no_file(tmp_path: Path) -> None:
    _GATE.clear()
    buffer = SpillBuffer(str(tmp_path / "s"), target=0.5, weight=lambda v: 1)
    try:
        buffer["k"] = SlowToPickle()
        del buffer["k"]
        _GATE.set()
        settle(buffer)
        assert len(buffer) == 0 and spill_files(buffer) == []
    finally:
        _GATE.set()
        buffer.close()


def test_freed_keys_lose_their_files(buf: SpillBuffer) -> None:
    for i in range(5):
        buf[f"k{i}"] = b"v" * 40
    settle(buf)
    assert len(buf.disk) == 3 and len(spill_files(buf)) == 3
    for i in range(5):
        del buf[f"k{i}"]
    settle(buf)
    assert len(buf) == 0 and spill_files(buf) == []
    assert buf.slow_weight == buf.fast_weight == buf.disk_bytes == 0
    with pytest.raises(KeyError):
        del buf["k0"]


def test_overwriting_a_spilled_key_replaces_its_file(buf: SpillBuffer) -> None:
    buf["a"] = b"1" * 200
    settle(buf)
    buf["a"] = b"2" * 30
    settle(buf)
    assert buf["a"] == b"2" * 30 and "a" in buf.memory and spill_files(buf) == []


def test_close_removes_the_spill_directory(tmp_path: Path) -> None:
    buffer = SpillBuffer(str(tmp_path / "storage"), target=10, weight=weight)
    buffer["a"] = b"a" * 100
    settle(buffer)
    assert spill_files(buffer)
    buffer.close()
    assert not os.path.exists(buffer.directory) and len(buffer) == 0


def test_an_unpicklable_value_stays_in_memory_and_is_logged_once(
    buf: SpillBuffer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="shoal.worker"):
        buf["lock1"] = threading.Lock()
        buf["lock2"] = threading.Lock()
        buf.evict(10)
        settle(buf)
    assert set(buf.memory) == {"lock1", "lock2"} and not buf.disk
    assert caplog.text.count("could not spill") == 1
    assert buf.evict(10) == 0  # pinned: never tried again
    assert spill_files(buf) == []


def test_a_full_disk_keeps_values_in_memory(
    buf: SpillBuffer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def disk_full(path: str, blob: object) -> int:
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spill, "write_serialized", disk_full)
    with caplog.at_level(logging.ERROR, logger="shoal.worker"):
        buf["a"] = b"a" * 500
        buf["b"] = b"b" * 500
        settle(buf)
    assert set(buf.memory) == {"a", "b"} and buf["a"] == b"a" * 500
    assert spill_files(buf) == []  # the partial file is gone
    assert caplog.text.count("No space left on device") == 1


def test_evict_moves_least_recently_used_first(buf: SpillBuffer) -> None:
    for key in "abcd":
        buf[key] = b"x" * 20
    assert buf.spillable_weight == 80
    assert buf.evict(30) == 40
    settle(buf)
    assert set(buf.disk) == {"a", "b"}


def test_numpy_arrays_round_trip_writable_and_aligned(tmp_path: Path) -> None:
    buffer = SpillBuffer(str(tmp_path / "s"), target=MB)
    try:
        arrays = {str(i): np.arange(i * 100_000, dtype="f8") for i in range(1, 4)}
        buffer.update(arrays)
        settle(buffer)
        assert len(buffer.disk) >= 2
        for i, expected in arrays.items():
            got = buffer[i]
            np.testing.assert_array_equal(got, expected)
            assert got.flags.writeable and got.flags.aligned
    finally:
        buffer.close()


def test_task_inputs_read_spilled_values_lazily(buf: SpillBuffer) -> None:
    buf["mem"] = b"m" * 10
    buf["disk"] = b"d" * 500
    settle(buf)
    inputs = task_inputs(buf, ["mem", "disk"])
    assert isinstance(inputs, TaskInputs)
    assert inputs._paths and "disk" in inputs._paths  # nothing read yet
    assert inputs["disk"] == b"d" * 500 and inputs["mem"] == b"m" * 10
    assert sorted(inputs) == ["disk", "mem"] and len(inputs) == 2
    assert task_inputs({"a": 1}, ["a"]) == {"a": 1}


def _waiting_thread(wait: Callable[[], None]) -> threading.Thread:
    """A thread that runs ``wait``, given 0.2 s to return (still alive: it is waiting)."""
    thread = threading.Thread(target=wait)
    thread.start()
    thread.join(0.2)
    return thread


def test_a_task_thread_waits_for_pending_writes_before_it_runs(tmp_path: Path) -> None:
    _GATE.clear()
    buffer = SpillBuffer(str(tmp_path / "s"), target=0.5, weight=lambda v: 1)
    wait = spill.wait_for_spill_writes(buffer, timeout=10)
    assert wait is not None and spill.wait_for_spill_writes({}, timeout=10) is None
    try:
        buffer["k"] = SlowToPickle()  # queued; the writer waits on the gate
        assert not buffer.wait_for_writes(0.05), "pending, yet the wait returned at once"
        waited = _waiting_thread(wait)
        assert waited.is_alive(), "the task ran while a value still waited for disk"
        _GATE.set()
        waited.join(10)
        assert not waited.is_alive() and buffer.pending_weight == 0 and "k" in buffer.disk
    finally:
        _GATE.set()
        buffer.close()


def test_a_task_runs_while_the_writer_is_behind_by_less_than_allowed(tmp_path: Path) -> None:
    _GATE.clear()
    buffer = SpillBuffer(str(tmp_path / "s"), target=0.5, weight=lambda v: 1)
    wait = spill.wait_for_spill_writes(buffer, timeout=10, behind=1)
    assert wait is not None
    try:
        buffer["k"] = SlowToPickle()  # 1 byte pending: within what the writer may lag
        ran = threading.Thread(target=wait)
        ran.start()
        ran.join(10)
        assert not ran.is_alive(), "the task waited although the writer was behind by 1 of 1"
        buffer["j"] = b"two"  # 2 bytes pending now: over the allowance
        waited = _waiting_thread(wait)
        assert waited.is_alive(), "the task ran while the writer was further behind than allowed"
        _GATE.set()
        waited.join(10)
        assert not waited.is_alive() and buffer.pending_weight <= 1
    finally:
        _GATE.set()
        buffer.close()


def test_a_stuck_spill_writer_delays_a_task_only_for_the_configured_wait(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _GATE.clear()
    buffer = SpillBuffer(str(tmp_path / "s"), target=0.5, weight=lambda v: 1)
    wait = spill.wait_for_spill_writes(buffer, timeout=0.2)
    assert wait is not None
    try:
        buffer["k"] = SlowToPickle()  # the writer is stuck on the gate
        waited = threading.Thread(target=wait)
        with caplog.at_level("WARNING", logger="shoal.worker"):
            waited.start()
            waited.join(10)
        assert not waited.is_alive(), "the task waited past the configured spill wait"
        assert buffer.pending_weight == 1, "the write finished, so the bound was not tested"
        assert "running the task anyway" in caplog.text
    finally:
        _GATE.set()
        buffer.close()


def test_a_written_value_is_not_kept_alive_by_the_writer(tmp_path: Path) -> None:
    import gc
    import weakref

    buffer = SpillBuffer(str(tmp_path / "s"), target=0.5, weight=lambda v: 1)
    try:
        value = np.ones(1000)
        ref = weakref.ref(value)
        buffer["k"] = value  # over the target: written by the thread
        del value
        assert buffer.wait_for_writes(10) and "k" in buffer.disk
        gc.collect()
        assert ref() is None, "the spilled array is still in memory after its write"
    finally:
        buffer.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_malloc_trim_is_found_without_starting_a_process() -> None:
    """Looking the C library up by name (``ctypes.util.find_library``) runs ``ldconfig``
    at every worker start; the library this process already has is enough."""
    code = (
        "import subprocess\n"
        "def refuse(*args, **kwargs):\n"
        "    raise AssertionError(f'a process was started: {args}')\n"
        "subprocess.Popen = refuse\n"
        "from shoal.worker import spill\n"
        "assert spill._MALLOC_TRIM is not None\n"
        "spill.trim_memory()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
