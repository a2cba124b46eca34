"""WorkerStateView: the seed's worker attributes that live in the state machine.

################################################################################
# Rules of this file
################################################################################
#
# Rule 1: read-only. Each name the seed (``worker-description.txt``) gives ``Worker``
# whose value is owned by ``WorkerState`` is one property here that returns the state's
# own value; there are no setters. Change them by feeding events to ``state``.
#
# Rule 2: pure. Like ``state.py``: no IO; it only reads ``self.state``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Set
from typing import Any

from shoal._types import Address, Key
from shoal.worker.state import WorkerState
from shoal.worker.state_task import KeyHeap, WorkerTask

__all__ = ["WorkerStateView"]


class WorkerStateView:
    """Mixin for ``Worker``: the state machine's seed attributes, read-only."""

    __slots__ = ()

    state: WorkerState

    @property
    def tasks(self) -> Mapping[Key, WorkerTask]:
        """Every task the worker knows of, by key."""
        return self.state.tasks

    @property
    def data_needed(self) -> KeyHeap:
        """Keys to fetch from peers, by priority."""
        return self.state.data_needed

    @property
    def ready(self) -> KeyHeap:
        """Keys ready to run, by priority."""
        return self.state.ready

    @property
    def constrained(self) -> deque[Key]:
        """Keys waiting for resources, first come first (a snapshot)."""
        return self.state.constrained

    @property
    def executing_count(self) -> int:
        """Tasks occupying a thread now."""
        return self.state.executing_count

    @property
    def executed_count(self) -> int:
        """Tasks that finished running here."""
        return self.state.executed_count

    @property
    def long_running(self) -> Set[Key]:
        """Keys that seceded from their thread."""
        return self.state.long_running

    @property
    def has_what(self) -> Mapping[Address, set[Key]]:
        """Per peer: the keys we care about that we think it holds."""
        return self.state.has_what

    @property
    def pending_data_per_worker(self) -> Mapping[Address, KeyHeap]:
        """Per peer: the keys to fetch that it holds, by priority."""
        return self.state.pending_data_per_worker

    @property
    def in_flight_tasks(self) -> int:
        """Keys being fetched now."""
        return self.state.in_flight_tasks

    @property
    def in_flight_workers(self) -> Mapping[Address, set[Key]]:
        """Per peer: the keys of the transfer in flight from it."""
        return self.state.in_flight_workers

    @property
    def comm_bytes(self) -> int:
        """Bytes being fetched now."""
        return self.state.comm_bytes

    @property
    def nbytes(self) -> Mapping[Key, int]:
        """Size of each key in memory."""
        return self.state.nbytes

    @property
    def waiting_for_data_count(self) -> int:
        """Tasks waiting for inputs to arrive."""
        return self.state.waiting_for_data_count

    @property
    def log(self) -> deque[tuple[Any, ...]]:
        """The state machine's bounded record of events, transitions and instructions."""
        return self.state.log

    @property
    def available_resources(self) -> Mapping[str, float]:
        """What running tasks leave of the worker's resources."""
        return self.state.available_resources
