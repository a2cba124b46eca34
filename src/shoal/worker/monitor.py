"""The memory monitor: process memory against the spill and pause thresholds.

Rules of this file:

* ``decide`` is a pure function of the thresholds and one reading; it is what the unit
  tests exercise. ``MemoryMonitor`` is the thin IO side: it measures RSS, asks the spill
  buffer to evict, keeps time and writes the logs. The worker's
  shell calls ``MemoryMonitor.check`` every ``MONITOR_INTERVAL`` seconds and acts on the
  pause changes it returns (a state event and a message to the scheduler).
* Past the spill threshold the monitor evicts until process memory would be under the
  target (or, with the target off, under the spill threshold), counting bytes already
  queued for disk as good as gone, so a slow disk is not asked for more every tick.
* Past the pause threshold the worker pauses; it resumes once under it again. Short
  pauses are routine while the disk catches up (info); a pause longer than
  ``PAUSED_LONG`` is a warning, repeated every ``WARN_EVERY`` seconds.
* A fraction that is None, False or 0 is off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import psutil

from shoal._types import Key
from shoal.config import WorkerConfig
from shoal.sizes import format_bytes, format_time
from shoal.worker.spill import SpillBuffer

logger = logging.getLogger("shoal.worker")

#: seconds between two memory checks
MONITOR_INTERVAL = 0.1
#: a worker paused longer than this is reported as stuck (heartbeat metric and a warning)
PAUSED_LONG = 10.0
#: seconds between two repeats of the same warning
WARN_EVERY = 60.0


@dataclass(frozen=True, slots=True)
class MemoryThresholds:
    """The memory limit and the thresholds derived from it, in bytes (None: off)."""

    limit: int
    target: int | None
    spill: int | None
    pause: int | None

    @classmethod
    def from_config(cls, config: WorkerConfig) -> MemoryThresholds:
        limit = config.memory_limit

        def part(fraction: float | None) -> int | None:
            return int(limit * fraction) if limit and fraction else None

        return cls(
            limit=limit,
            target=part(config.memory_target_fraction),
            spill=part(config.memory_spill_fraction),
            pause=part(config.memory_pause_fraction),
        )

    @property
    def write_behind(self) -> int:
        """How many bytes the spill writer may lag while tasks run: the room between the
        target and the spill threshold (0 when either is off)."""
        if self.target is None or self.spill is None:
            return 0
        return max(0, self.spill - self.target)

    @property
    def monitored(self) -> bool:
        """Whether a monitor has anything to do."""
        return self.spill is not None or self.pause is not None


@dataclass(frozen=True, slots=True)
class MemoryReading:
    """One measurement."""

    #: resident memory of the process
    rss: int
    #: bytes of values queued for disk but not written yet
    pending: int
    #: bytes of in-memory values that could still be evicted
    spillable: int


@dataclass(frozen=True, slots=True)
class MemoryDecision:
    """What to do about one reading."""

    #: bytes of least-recently-used values to queue for disk now
    evict: int
    #: whether the worker should be paused after this reading
    paused: bool
    #: over the spill threshold with nothing left to spill: unmanaged memory is the problem
    unmanaged_high: bool


def decide(th: MemoryThresholds, reading: MemoryReading) -> MemoryDecision:
    """Pure: how much to evict, whether to be paused."""
    evict = 0
    unmanaged_high = False
    if th.spill is not None and reading.rss > th.spill:
        goal = th.target if th.target is not None else th.spill
        excess = reading.rss - goal - reading.pending
        evict = max(0, min(excess, reading.spillable))
        unmanaged_high = excess > reading.spillable
    now_paused = th.pause is not None and reading.rss > th.pause
    return MemoryDecision(evict=evict, paused=now_paused, unmanaged_high=unmanaged_high)


class MemoryMonitor:
    """Measures, evicts and logs; returns pause changes for the shell to carry out."""

    def __init__(
        self,
        thresholds: MemoryThresholds,
        data: object,
        measure: Callable[[], int] | None = None,
    ) -> None:
        self.thresholds = thresholds
        self._buffer = data if isinstance(data, SpillBuffer) else None
        process = psutil.Process()
        self._measure = measure or (lambda: int(process.memory_info().rss))
        #: last measured resident memory
        self.rss = 0
        #: when the current pause began (None: running)
        self.paused_since: float | None = None
        self._last_warning: dict[str, float] = {}
        self._check_scheduled = False

    @property
    def paused(self) -> bool:
        return self.paused_since is not None

    def paused_for(self, now: float) -> float:
        return 0.0 if self.paused_since is None else now - self.paused_since

    def check_soon(self) -> bool:
        """After a store: True when the shell should check now, not at the next tick.

        That is while values wait to be written: tasks may then fill memory faster than
        one tick notices, and pausing early is what lets the writer catch up.
        """
        buffer = self._buffer
        if self._check_scheduled or buffer is None or not buffer.pending_weight:
            return False
        self._check_scheduled = self.thresholds.monitored
        return self._check_scheduled

    def check(self, now: float, drop_replicas: Callable[[int], int] | None = None) -> bool | None:
        """Measure and act; True to pause, False to resume, None for no change.

        ``drop_replicas(nbytes)`` frees copies held elsewhere and says how many bytes it
        freed; only what it could not free is spilled."""
        self._check_scheduled = False
        self.rss = self._measure()
        buffer = self._buffer
        reading = MemoryReading(
            rss=self.rss,
            pending=buffer.pending_weight if buffer else 0,
            spillable=self._spillable(buffer),
        )
        decision = decide(self.thresholds, reading)
        evict = decision.evict
        if evict and drop_replicas is not None:
            evict -= drop_replicas(evict)
        if evict > 0 and buffer is not None:
            buffer.evict(evict)
        if decision.unmanaged_high:
            self._unmanaged_high(now, buffer)
        return self._pause_change(decision.paused, now)

    def _spillable(self, buffer: SpillBuffer | None) -> int:
        """What ``evict`` could move; summed only past the spill threshold, where ``decide``
        reads it: the sum walks every key held, which on each tick cost a worker holding
        many small results a fifth of its CPU."""
        spill = self.thresholds.spill
        if buffer is None or spill is None or self.rss <= spill:
            return 0
        return buffer.spillable_weight

    def report(
        self, data: Mapping[Key, Any], nbytes: Mapping[Key, int], now: float
    ) -> dict[str, Any]:
        """Heartbeat metrics: process memory, managed (in memory), spilled and unmanaged bytes."""
        rss = self._measure()
        if isinstance(data, SpillBuffer):
            managed = data.fast_weight + data.pending_weight
            spilled, spilled_disk, n_disk = data.slow_weight, data.disk_bytes, len(data.disk)
        else:
            managed = sum(nbytes.get(key, 0) for key in data)
            spilled = spilled_disk = n_disk = 0
        return {
            "memory": rss,
            "memory_limit": self.thresholds.limit,
            "managed_bytes": managed,
            "spilled_bytes": spilled,
            "spilled_disk_bytes": spilled_disk,
            "spilled_keys": n_disk,
            "unmanaged_bytes": max(0, rss - managed),
            "paused": self.paused,
            "paused_for": self.paused_for(now),
            "paused_long": self.paused_for(now) > PAUSED_LONG,
        }

    def _pause_change(self, paused: bool, now: float) -> bool | None:
        if paused and self.paused_since is None:
            self.paused_since = now
            logger.info(
                "worker paused: process memory %s is above %s (pause fraction of %s)",
                format_bytes(self.rss),
                format_bytes(self.thresholds.pause or 0),
                format_bytes(self.thresholds.limit),
            )
            return True
        if not paused and self.paused_since is not None:
            logger.info(
                "worker resumed after %s paused: process memory %s",
                format_time(now - self.paused_since),
                format_bytes(self.rss),
            )
            self.paused_since = None
            return False
        if paused and self.paused_for(now) > PAUSED_LONG and self._may_warn("paused", now):
            logger.warning(
                "worker paused for %s: process memory %s stays above %s; tasks here wait",
                format_time(self.paused_for(now)),
                format_bytes(self.rss),
                format_bytes(self.thresholds.pause or 0),
            )
        return None

    def _unmanaged_high(self, now: float, buffer: SpillBuffer | None) -> None:
        if buffer is not None and buffer.pending_weight:
            return  # writes are under way; memory falls when they finish
        if self._may_warn("unmanaged", now):
            managed = buffer.fast_weight if buffer else 0
            logger.warning(
                "unmanaged memory is high: process %s, values in memory %s, limit %s; "
                "nothing left to spill (memory held by running tasks, libraries or the "
                "allocator)",
                format_bytes(self.rss),
                format_bytes(managed),
                format_bytes(self.thresholds.limit),
            )

    def _may_warn(self, what: str, now: float) -> bool:
        last = self._last_warning.get(what)
        if last is not None and now - last < WARN_EVERY:
            return False
        self._last_warning[what] = now
        return True


__all__ = ["MemoryDecision", "MemoryMonitor", "MemoryReading", "MemoryThresholds", "decide"]
