"""The memory monitor's decisions (pure) and its pause bookkeeping (fake measurements)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.config import WorkerConfig
from shoal.worker.monitor import MemoryMonitor, MemoryReading, MemoryThresholds, decide
from shoal.worker.spill import SpillBuffer

TH = MemoryThresholds(limit=1000, target=600, spill=700, pause=800)


def reading(rss: int, pending: int = 0, spillable: int = 10_000) -> MemoryReading:
    return MemoryReading(rss=rss, pending=pending, spillable=spillable)


def test_thresholds_from_config_and_turning_them_off() -> None:
    th = MemoryThresholds.from_config(WorkerConfig(memory_limit=1000))
    assert th == TH and th.monitored
    off = MemoryThresholds.from_config(
        WorkerConfig(
            memory_limit=1000,
            memory_target_fraction=None,
            memory_spill_fraction=False,
            memory_pause_fraction=0,
        )
    )
    assert (off.target, off.spill, off.pause) == (None, None, None) and not off.monitored
    assert not MemoryThresholds.from_config(WorkerConfig(memory_limit=0)).monitored
    assert th.write_behind == 100 and off.write_behind == 0


def test_below_the_spill_threshold_nothing_happens() -> None:
    assert decide(TH, reading(700)) == decide(TH, reading(0))
    assert decide(TH, reading(700)).evict == 0 and not decide(TH, reading(700)).paused


def test_past_the_spill_threshold_evict_down_to_the_target() -> None:
    d = decide(TH, reading(750))
    assert d.evict == 150 and not d.paused and not d.unmanaged_high


def test_bytes_already_queued_for_disk_count_as_gone() -> None:
    assert decide(TH, reading(750, pending=100)).evict == 50
    assert decide(TH, reading(750, pending=400)).evict == 0


def test_with_the_target_off_evict_down_to_the_spill_threshold() -> None:
    th = MemoryThresholds(limit=1000, target=None, spill=700, pause=None)
    assert decide(th, reading(750)).evict == 50


def test_nothing_left_to_spill_is_unmanaged_memory() -> None:
    d = decide(TH, reading(750, spillable=20))
    assert d.evict == 20 and d.unmanaged_high


def test_pause_past_the_pause_threshold_only() -> None:
    assert decide(TH, reading(801)).paused
    assert not decide(TH, reading(800)).paused
    no_pause = MemoryThresholds(limit=1000, target=600, spill=700, pause=None)
    assert not decide(no_pause, reading(10_000)).paused
    no_spill = MemoryThresholds(limit=1000, target=600, spill=None, pause=800)
    assert decide(no_spill, reading(10_000)).evict == 0


def test_monitor_pauses_resumes_and_reports(tmp_path: Path) -> None:
    rss = [0]
    buffer = SpillBuffer(str(tmp_path / "s"), target=10_000, weight=lambda v: 100)
    try:
        for i in range(5):
            buffer[str(i)] = i
        monitor = MemoryMonitor(TH, buffer, measure=lambda: rss[0])
        rss[0] = 500
        assert monitor.check(now=0.0) is None
        rss[0] = 900  # past pause: evict 300 of 500 spillable bytes, pause
        assert monitor.check(now=1.0) is True
        assert buffer.pending_weight + buffer.slow_weight == 300
        assert monitor.check(now=2.0) is None  # still paused: no second change
        report = monitor.report(buffer, {}, now=20.0)
        assert report["paused"] and report["paused_for"] == pytest.approx(19.0)
        assert report["paused_long"] and report["managed_bytes"] + report["spilled_bytes"] == 500
        assert report["unmanaged_bytes"] == 900 - report["managed_bytes"]
        rss[0] = 400
        assert monitor.check(now=21.0) is False
        assert not monitor.report(buffer, {}, now=22.0)["paused"]
    finally:
        buffer.close()


def test_report_for_a_custom_mapping() -> None:
    monitor = MemoryMonitor(TH, {"a": 1}, measure=lambda: 1000)
    report = monitor.report({"a": 1}, {"a": 300}, now=0.0)
    assert report["managed_bytes"] == 300 and report["spilled_bytes"] == 0
    assert report["unmanaged_bytes"] == 700


class CountingBuffer(SpillBuffer):
    """Counts how often the O(keys) spillable sum is taken."""

    sums = 0

    @property
    def spillable_weight(self) -> int:
        type(self).sums += 1
        return super().spillable_weight


def test_spillable_bytes_are_summed_only_past_the_spill_threshold(tmp_path: Path) -> None:
    rss = [500]
    buffer = CountingBuffer(str(tmp_path / "s"), target=10_000, weight=lambda v: 100)
    try:
        for i in range(5):
            buffer[str(i)] = i
        monitor = MemoryMonitor(TH, buffer, measure=lambda: rss[0])
        for tick in range(10):  # under the spill threshold: no walk over the keys
            assert monitor.check(now=float(tick)) is None
        assert CountingBuffer.sums == 0
        rss[0] = 750  # past spill (700): evict down to the target (600)
        assert monitor.check(now=11.0) is None
        assert CountingBuffer.sums == 1
        assert buffer.pending_weight + buffer.slow_weight == 200
    finally:
        buffer.close()
